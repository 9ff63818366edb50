"""The agent's command line (index, search, and the ask/chat/serve/mcp commands that register
themselves from their own modules). The ``hoprank`` executable is :mod:`hoprank.cli`, which
adds the evaluation harness's commands: evals builds on the agent, so this layer cannot
import it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from hoprank.agent.app import ask_cli, serve_cli
from hoprank.agent.app.cli_errors import check_flag, with_flag_overrides
from hoprank.tools.errors import HoprankError
from hoprank.tools.rerank.factory import reranker_names
from hoprank.tools.retrieval.factory import retriever_names, retriever_options

app = typer.Typer(
    name="hoprank",
    help="Multi-hop question answering over your documents, with reasoning rerankers and an honest evaluation harness.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.command("index")
def index_cmd(
    paths: list[Path] = typer.Argument(..., help="Files or folders (.txt .md .html .json .jsonl .pdf)."),
    index: Path = typer.Option(..., "--index", "-i", help="Index folder (created if missing)."),
    chunk_size: int = typer.Option(200, help="Chunk size, in words (or sentences with --chunk-unit sentences)."),
    chunk_overlap: int = typer.Option(40, help="Overlap between consecutive chunks, same unit."),
    chunk_unit: str = typer.Option("tokens", help="tokens | sentences"),
    qdrant: bool = typer.Option(True, "--qdrant/--no-qdrant", help="Also sync the embedded Qdrant store."),
    encoder: Optional[str] = typer.Option(
        None,
        "--encoder",
        help="e5-small | minilm | a sentence-transformers path (default: the index's own, "
        "else retrieval.encoder, else the default encoder).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Build or update an index. Unchanged files are not re-read; bad files and records are skipped."""
    from hoprank.agent.config import Config
    from hoprank.tools.ingest.chunking import ChunkingConfig
    from hoprank.tools.ingest.index import Index

    cfg = ChunkingConfig(size=chunk_size, overlap=chunk_overlap, unit=chunk_unit)  # type: ignore[arg-type]
    if encoder is None and not Index.exists(index):
        encoder = Config.load().retrieval.encoder  # HOPRANK_RETRIEVAL__ENCODER
    idx, stats = Index.build(
        index, sources=paths, chunking=cfg, encoder=encoder, show_progress=not quiet, qdrant=qdrant
    )
    console.print(
        f"[bold green]indexed[/] {stats.files_seen} files ({stats.files_read} read, {stats.files_reused} unchanged, "
        f"{stats.files_removed} removed) -> {len(idx)} chunks ({stats.chunks_embedded} embedded, "
        f"encoder {idx.encoder_name}) in {index}"
    )
    if stats.skipped or stats.duplicates:  # each one was logged once as a warning above
        err_console.print(
            f"[yellow]warning:[/] skipped {len(stats.skipped)} file(s)/record(s) and "
            f"{len(stats.duplicates)} duplicate id(s), each named above"
        )


def _read_queries(path: Path) -> list[tuple[str, str]]:
    """One query per line, or JSONL with ``id`` and ``query`` (or ``question``)."""
    out: list[tuple[str, str]] = []
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise HoprankError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            q = rec.get("query", rec.get("question"))
            if not isinstance(q, str):
                raise HoprankError(f"{path}:{n}: record has no 'query' string")
            out.append((str(rec.get("id", n)), q))
        else:
            out.append((str(n), line.strip()))
    return out


def hits_table(hits: list, title: str = "") -> Table:
    table = Table(title=title, show_lines=False, expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("score", justify="right", width=8)
    table.add_column("chunk", overflow="fold", max_width=28)
    table.add_column("text", overflow="fold", ratio=1)
    for h in hits:
        text = h.text.replace("\n", " ")
        text = text[:220] + ("…" if len(text) > 220 else "")
        if h.rationale:
            text += f"\n[dim]why: {h.rationale[:200]}[/]"
        table.add_row(str(h.rank), f"{h.score:.3f}", f"{h.id}\n[dim]{h.title[:40]}[/]", text)
    return table


@app.command("search")
def search_cmd(
    query: Optional[str] = typer.Argument(None, help="The query (omit when using --queries)."),
    index: Path = typer.Option(..., "--index", "-i", help="Index folder."),
    retriever: str = typer.Option("hybrid", "--retriever", "-r", help=" | ".join(retriever_names())),
    k: int = typer.Option(10, "-k", help="How many hits to retrieve."),
    qdrant_url: Optional[str] = typer.Option(None, help="Use a Qdrant server instead of the embedded store."),
    rerank: str = typer.Option("none", help=" | ".join(reranker_names())),
    top_k: int = typer.Option(5, help="Hits kept after reranking."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Config file (YAML/TOML) for the LLM and reranker."
    ),
    llm_base_url: Optional[str] = typer.Option(
        None, help="OpenAI-compatible endpoint (vLLM, OpenAI, llama.cpp server)."
    ),
    llm_model: Optional[str] = typer.Option(
        None, help="Model name at the endpoint (or a .gguf path for the embedded backend)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON."),
    queries: Optional[Path] = typer.Option(
        None, help="Batch: a file with one query per line, or JSONL with id and query."
    ),
    fmt: str = typer.Option("jsonl", "--format", help="Batch output: jsonl | trec"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Batch output file (default: stdout)."),
    run_name: str = typer.Option("hoprank", help="Run tag in TREC output."),
) -> None:
    """Search an index; optionally rerank the hits (shows each hit's score and rationale)."""
    from hoprank.tools.ingest.index import Index

    if (query is None) == (queries is None):
        raise HoprankError("give either a QUERY or --queries FILE")
    if fmt not in ("jsonl", "trec"):
        raise HoprankError(f"--format must be jsonl or trec, got {fmt!r}")
    check_flag("--retriever", "retrieval.retriever", retriever)
    check_flag("--rerank", "rerank.method", rerank)
    idx = Index.open(index)
    ret = idx.retriever(retriever, **retriever_options(retriever, url=qdrant_url))
    reranker = None
    if rerank != "none":
        from hoprank.agent.config import Config, make_reranker_from_config

        cfg = with_flag_overrides(
            Config.load(config),
            [
                ("--rerank", "rerank.method", rerank),
                ("--llm-base-url", "llm.base_url", llm_base_url),
                ("--llm-model", "llm.model", llm_model),
                ("--llm-base-url", "llm.backend", "openai" if llm_base_url else None),
            ],
        )
        reranker = make_reranker_from_config(cfg, idx)

    def run(qs: list[str]) -> list[list]:
        results = ret.search_batch(qs, k)
        if reranker is not None:
            results = [reranker.rerank(q, hits, top_k=top_k) for q, hits in zip(qs, results)]
        return results

    if query is not None:
        hits = run([query])[0]
        if as_json:
            print(json.dumps([_hit_json(h) for h in hits], ensure_ascii=False, indent=1))
        else:
            console.print(hits_table(hits, title=f"{retriever}{' + ' + rerank if reranker else ''}: {query}"))
        return
    assert queries is not None
    qs = _read_queries(queries)
    results = run([q for _, q in qs])
    sink = open(out, "w", encoding="utf-8") if out else sys.stdout
    try:
        for (qid, q), hits in zip(qs, results):
            if fmt == "trec":
                for h in hits:
                    sink.write(f"{qid} Q0 {h.id} {h.rank} {h.score:.6f} {run_name}\n")
            else:
                sink.write(
                    json.dumps({"id": qid, "query": q, "hits": [_hit_json(h) for h in hits]}, ensure_ascii=False) + "\n"
                )
    finally:
        if out:
            sink.close()
    if out:
        err_console.print(f"wrote {len(qs)} queries to {out}")


def _hit_json(h) -> dict:
    d = {
        "id": h.id,
        "title": h.title,
        "score": round(h.score, 6),
        "rank": h.rank,
        "text": h.text,
        "metadata": h.metadata,
    }
    if h.rationale:
        d["rationale"] = h.rationale
    return d


for _commands in (ask_cli, serve_cli):  # modules that define ``register(app)``: each owns its commands
    _commands.register(app)


@app.callback()
def _global_options(
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks (also HOPRANK_DEBUG=1); accepted after any command too."
    ),
) -> None:
    """Global options; the error path itself is in ``hoprank.agent.app.cli_errors``."""


def main(argv: list[str] | None = None) -> None:
    """The ``hoprank`` entry point: one-line errors and exit codes from ``cli_errors.run_cli``."""
    from hoprank.agent.app.cli_errors import run_cli

    sys.exit(run_cli(app, argv))
