"""Exceptions users see. Each one says what went wrong and what to do about it."""

from __future__ import annotations


class HoprankError(Exception):
    """Base class: everything hoprank raises on purpose derives from it."""


def unknown_options(kind: str, name: str, bad: list[str], valid: list[str]) -> str:
    """The one wording of "option not taken by this component" for the retriever and reranker
    registries: a typo (``num_childs=3``) names itself and lists what would have worked."""
    plural = "s" if len(bad) > 1 else ""
    return (
        f"unknown option{plural} {', '.join(repr(b) for b in bad)} for the {name!r} {kind}; "
        f"valid options: {', '.join(valid) or '(none)'}"
    )


class InvalidQueryError(HoprankError, ValueError):
    """A query that cannot be searched (empty, whitespace only, absurdly long)."""


class IndexNotFoundError(HoprankError, FileNotFoundError):
    """The index directory does not exist or holds no hoprank index."""


class IndexLockedError(HoprankError, RuntimeError):
    """Another process holds the embedded Qdrant store (it allows one process per path)."""


class MissingExtraError(HoprankError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class OfflineError(HoprankError, ConnectionError):
    """Something needed the network (a model hub, a dataset hub) and none is available."""


class DatasetFormatError(HoprankError, ValueError):
    """A dataset file does not have the documented layout; the message names the record."""


class UsageError(HoprankError, ValueError):
    """A command-line flag or argument with a value that cannot work; the message names the flag."""


class LLMError(HoprankError, RuntimeError):
    """An LLM call failed after the allowed retries, or returned nothing usable."""


MAX_QUERY_CHARS = 20_000
#: The longest question the agent answers. One constant for every entry point (Python API,
#: HTTP server, MCP, CLI) so a question one of them accepts is never refused by another.
MAX_QUESTION_CHARS = 4_000


def validate_query(query: object, max_chars: int = MAX_QUERY_CHARS) -> str:
    """Reject queries that would silently return nonsense, and say why."""
    if not isinstance(query, str):
        raise InvalidQueryError(f"query must be a string, got {type(query).__name__}")
    stripped = query.strip()
    if not stripped:
        raise InvalidQueryError("query is empty or whitespace only; type a question or keywords")
    if len(stripped) > max_chars:
        raise InvalidQueryError(
            f"query is {len(stripped):,} characters long; the limit is {max_chars:,}. "
            "Shorten it or split it into several questions."
        )
    return stripped
