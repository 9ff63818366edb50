"""One error path for every ``hoprank`` command.

Why one place: each command used to fail its own way (a traceback from a missing path, 41
lines for a bad ``--retriever``, a validation dump that named a config key instead of the
flag). Here every failure becomes one line on stderr that names the cause and what to do,
with an exit code that scripts can test:

* 0 success; 1 the work failed (LLM unreachable, every eval question failed, a bug);
* 2 bad input (a flag value, a missing file, a dataset that is not UTF-8 or not valid);
* 130 interrupted (Ctrl-C).

The traceback is printed only with ``--debug`` (anywhere on the command line) or
``HOPRANK_DEBUG=1``; so are the tracebacks that library code logs for failures it handled
and reported (a question that failed is in the answer, the eval rows, the exit code).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import typer

from hoprank.tools.errors import (
    DatasetFormatError,
    HoprankError,
    IndexNotFoundError,
    InvalidQueryError,
    LLMError,
    UsageError,
)

DEBUG_FLAG = "--debug"
DEBUG_ENV = "HOPRANK_DEBUG"
EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED = 1, 2, 130
LLM_HINT = "check that the LLM endpoint is up and reachable (llm.base_url or OPENAI_BASE_URL)"
DEBUG_HINT = f"rerun with {DEBUG_FLAG} (or {DEBUG_ENV}=1) for the traceback"


def debug_enabled(argv: Sequence[str] = ()) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def pop_debug(argv: list[str]) -> bool:
    """Remove ``--debug`` wherever it stands (before ``--``), so it works after any sub-command."""
    end = argv.index("--") if "--" in argv else len(argv)
    found = DEBUG_FLAG in argv[:end]
    argv[:end] = [a for a in argv[:end] if a != DEBUG_FLAG]
    return found


class _HandledFailures(logging.Filter):
    """Without --debug, drop log records that carry a traceback: library code logs those for
    failures it has already turned into a result (a failed answer, a failed eval row), which
    the command reports in its own words."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.exc_info


def configure_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not debug:
        handler.addFilter(_HandledFailures())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug and os.environ.get(DEBUG_ENV) == "2" else logging.WARNING)


def one_line(text: str, limit: int = 600) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def with_hint(error: str) -> str:
    """An error carried as text (``Answer.error`` is ``"Type: message"``) plus what to do,
    unless the message already says it."""
    if "start the server" in error:
        return error
    if error.startswith("LLMError") or "LLM call" in error or "LLM endpoint" in error:
        return f"{error}; {LLM_HINT}"
    return f"{error}; {DEBUG_HINT}"


def describe(exc: BaseException) -> tuple[str, int]:
    """``(one-line message, exit code)`` for any exception a command let through."""
    from hoprank.agent.config import ConfigError

    if isinstance(exc, (UsageError, InvalidQueryError, ConfigError, DatasetFormatError, IndexNotFoundError)):
        return one_line(str(exc)), EXIT_INPUT
    if isinstance(exc, HoprankError) and isinstance(exc, (FileNotFoundError, ValueError)):
        msg = str(exc) if "check" in str(exc) or not isinstance(exc, FileNotFoundError) else f"{exc}; check the path"
        return one_line(msg), EXIT_INPUT  # e.g. a source path that does not exist
    if isinstance(exc, LLMError):
        return one_line(with_hint(f"LLMError: {exc}")), EXIT_FAILED
    if isinstance(exc, HoprankError):
        return one_line(str(exc)), EXIT_FAILED
    if isinstance(exc, UnicodeDecodeError):
        return one_line(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); convert it to UTF-8"), EXIT_INPUT
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        where = f": {exc.filename}" if exc.filename else ""
        return one_line(f"{exc.strerror or exc}{where}; check the path and its permissions"), EXIT_INPUT
    if isinstance(exc, OSError):
        return one_line(f"{type(exc).__name__}: {exc}"), EXIT_FAILED
    return one_line(f"unexpected {type(exc).__name__}: {exc}; {DEBUG_HINT}, and please report it"), EXIT_FAILED


def print_error(message: str) -> None:
    typer.echo(typer.style("error:", fg="red", bold=True) + " " + message, err=True)


def run_cli(app: Callable[..., Any], argv: Sequence[str] | None = None) -> int:
    """Run the typer app on ``argv`` and return the exit code; every failure is one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = pop_debug(args) or debug_enabled()
    configure_logging(debug)
    try:
        rv = app(args=args, prog_name="hoprank", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:  # usage errors: typer's own message, which names the option
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            print_error(one_line(str(e)))
        return int(getattr(e, "exit_code", EXIT_INPUT))
    except (KeyboardInterrupt, typer.Abort):
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # the one place a command's failure is turned into a message
        if debug:
            traceback.print_exc()
        message, code = describe(e)
        print_error(message)
        return code


def with_flag_overrides(cfg: Any, flags: Sequence[tuple[str, str, Any]]) -> Any:
    """``cfg.with_overrides`` from command-line flags: ``[("--rerank", "rerank.method", v)]``
    (``None`` values are not given). A bad value names the flag the user typed, not the
    config key it lands in."""
    from hoprank.agent.config import ConfigError

    chosen = [(flag, key, value) for flag, key, value in flags if value is not None]
    for flag, key, value in chosen:
        try:
            cfg.with_overrides(**{key: value})
        except ConfigError as e:
            detail = str(e).splitlines()[-1].strip().removeprefix("- ").removeprefix(f"{key}: ").rsplit(" (got ", 1)[0]
            raise UsageError(f"{flag} {value!r}: {detail}") from None
    return cfg.with_overrides(**{key: value for _, key, value in chosen})


def check_flag(flag: str, key: str, value: Any) -> None:
    """Validate one flag value against the config schema (for flags not kept in a config)."""
    from hoprank.agent.config import Config

    with_flag_overrides(Config(), [(flag, key, value)])
