"""``hoprank ask`` and ``hoprank chat``: the agent on the command line."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel

from hoprank.tools.rerank.factory import reranker_names
from hoprank.tools.retrieval.factory import retriever_names

console = Console()


def _agent(
    index: Optional[Path],
    config: Optional[Path],
    overrides: list[tuple[str, str, Any]],
    checkpoint: Optional[Path] = None,
):
    from hoprank.agent.app.api import Agent
    from hoprank.agent.app.cli_errors import with_flag_overrides
    from hoprank.agent.config import Config

    cfg = with_flag_overrides(Config.load(config), overrides)
    return Agent.from_config(cfg, index=index, checkpoint=checkpoint)


def _overrides(llm_base_url, llm_model, retriever, rerank, mode, max_hops, short, verify) -> list[tuple[str, str, Any]]:
    """(flag, config key, value) per command-line flag, so a bad value names its flag."""
    return [
        ("--llm-base-url", "llm.base_url", llm_base_url),
        ("--llm-model", "llm.model", llm_model),
        ("--llm-base-url", "llm.backend", "openai" if llm_base_url else None),
        ("--retriever", "retrieval.retriever", retriever),
        ("--rerank", "rerank.method", rerank),
        ("--mode", "agent.mode", mode),
        ("--max-hops", "agent.max_hops", max_hops),
        ("--short", "agent.answer_style", "short" if short else None),
        ("--verify", "agent.verify", True if verify else None),
    ]


def _print_answer(a, show_trace: bool) -> None:
    style = {"answered": "green", "not_found": "yellow", "partial": "yellow", "failed": "red"}.get(a.status, "white")
    console.print(Panel(Markdown(a.answer or "(no answer)"), title=f"answer \\[{a.status}]", border_style=style))
    if a.error:
        console.print(f"[red]error:[/] {a.error}")
    for c in a.citations:
        mark = {True: "✓", False: "✗", None: " "}[c.supported]
        snippet = c.text[:160].replace("\n", " ")
        console.print(f"  [{c.marker}] {mark} [bold]{c.title or c.chunk_id}[/] [dim]({c.chunk_id})[/] {snippet}…")
    if show_trace:
        for s in a.trace.get("steps", []):
            console.print(f"  [dim]{s['elapsed_s']:7.3f}s[/] [cyan]{s['node']:<13}[/] {s.get('summary', '')}")
    u = a.trace.get("usage", {})
    seconds, hops = a.trace.get("seconds", 0), a.trace.get("hops", 0)
    console.print(f"[dim]{seconds:.1f}s, {u.get('tokens', 0)} LLM tokens, {hops} hop(s), thread {a.thread_id}[/]")


def register(app: typer.Typer) -> None:
    @app.command("ask")
    def ask_cmd(
        question: str = typer.Argument(..., help="The question."),
        index: Optional[Path] = typer.Option(None, "--index", "-i", help="Index folder (or 'index' in the config)."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file (YAML/TOML)."),
        llm_base_url: Optional[str] = typer.Option(
            None, help="OpenAI-compatible endpoint (vLLM, OpenAI, llama.cpp server)."
        ),
        llm_model: Optional[str] = typer.Option(None, help="Model name at the endpoint."),
        retriever: Optional[str] = typer.Option(None, help=" | ".join(retriever_names())),
        rerank: Optional[str] = typer.Option(None, help=" | ".join(reranker_names())),
        mode: Optional[str] = typer.Option(None, help="pipeline | agentic"),
        max_hops: Optional[int] = typer.Option(None, help="Hop budget."),
        short: bool = typer.Option(False, "--short", help="Short answer (a span or yes/no), as QA datasets expect."),
        verify: bool = typer.Option(False, "--verify", help="Check each cited claim against its chunk."),
        trace: bool = typer.Option(False, "--trace", help="Show every step."),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object: answer, citations, evidence, trace summary."
        ),
    ) -> None:
        """Answer a question from the index, with citations."""
        from hoprank.agent.app.api import answer_summary

        agent = _agent(
            index, config, _overrides(llm_base_url, llm_model, retriever, rerank, mode, max_hops, short, verify)
        )
        a = agent.ask(question)
        if as_json:
            print(json.dumps(answer_summary(a), ensure_ascii=False, indent=1))
        elif a.status != "failed":
            _print_answer(a, trace)
        if a.status == "failed":  # the cause in one line (the JSON above carries it too)
            from hoprank.agent.app.cli_errors import one_line, print_error, with_hint

            print_error(one_line(f"could not answer: {with_hint(a.error or 'unknown error')}"))
            raise typer.Exit(1)

    @app.command("chat")
    def chat_cmd(
        index: Optional[Path] = typer.Option(None, "--index", "-i", help="Index folder."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file (YAML/TOML)."),
        thread: Optional[str] = typer.Option(None, help="Resume a conversation by thread id."),
        history_db: Path = typer.Option(Path(".hoprank/chat.sqlite"), help="Where conversations are kept (SQLite)."),
        llm_base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint."),
        llm_model: Optional[str] = typer.Option(None, help="Model name at the endpoint."),
        rerank: Optional[str] = typer.Option(None, help="Reranker."),
    ) -> None:
        """Chat with your documents in the terminal; steps are shown as they stream."""
        from hoprank.tools.errors import InvalidQueryError

        agent = _agent(
            index,
            config,
            _overrides(llm_base_url, llm_model, None, rerank, None, None, False, False),
            checkpoint=history_db,
        )
        tid = thread or uuid.uuid4().hex[:12]
        console.print(f"[bold]hoprank chat[/] — thread [cyan]{tid}[/] (empty line or Ctrl-D to quit)")
        while True:
            try:
                q = console.input("[bold green]you>[/] ")
            except (EOFError, KeyboardInterrupt):
                break
            if not q.strip():
                break
            try:
                for ev in agent.stream(q, thread_id=tid):
                    if ev["type"] == "step":
                        console.print(f"  [dim]{ev['node']}: {ev['summary']}[/]")
                    elif ev["type"] == "answer":
                        _print_answer(ev["answer"], False)
            except InvalidQueryError as e:
                console.print(f"[red]{e}[/]")
