"""The ``hoprank`` executable: the agent's commands (index, search, ask, chat, serve, mcp) and
the evaluation harness's (eval, judge, report, ...) on one Typer app.

Why here, in the package root: it is the one module above both layers. The evaluation
harness builds on the agent, so the agent's CLI (:mod:`hoprank.agent.app.cli`) cannot import
it without an upward import; this module composes the two instead."""

from __future__ import annotations

from hoprank.agent.app.cli import app
from hoprank.agent.app.cli import main as _run
from hoprank.evals import cli as evals_cli

evals_cli.register(app)

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hoprank`` console script (one-line errors, exit codes)."""
    _run(argv)


if __name__ == "__main__":
    main()
