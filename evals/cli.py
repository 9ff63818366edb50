"""``hoprank eval`` and ``hoprank report``: registered into the main CLI by ``register(app)``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

SETTINGS = ("pooled", "distractor", "closed-book")


def _redacted(cfg: Any) -> dict[str, Any]:
    data = cfg.model_dump()
    if data.get("llm", {}).get("api_key"):
        data["llm"]["api_key"] = "***"
    return data


def run_from_cli(
    dataset: str,
    path: Path | None,
    setting: str,
    config: Path | None,
    preset_name: str | None,
    limit: int | None,
    concurrency: int,
    out: Path,
    corpus: list[Path] | None = None,
    index: Path | None = None,
    timeout_s: float | None = None,
    answer_style: str | None = "short",
    retry_failed: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Everything ``hoprank eval`` does, callable from Python (benchmarks use it)."""
    from hoprank.agent.config import Config
    from hoprank.evals import runner as R
    from hoprank.evals.datasets import file_sha256, load_dataset, load_multihop_rag_corpus
    from hoprank.evals.presets import apply_preset
    from hoprank.tools.errors import HoprankError

    if setting not in SETTINGS:
        raise HoprankError(f"--setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    examples = load_dataset(dataset, path, limit)
    cfg = apply_preset(Config.load(config), preset_name)
    if answer_style:
        cfg = cfg.with_overrides(**{"agent.answer_style": answer_style})
    digest = file_sha256(path) if path else None
    spec = R.RunSpec(dataset=dataset, dataset_path=str(path) if path else None, dataset_sha256=digest, setting=setting, preset=preset_name, config=_redacted(cfg), limit=limit)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(_redacted(cfg), indent=2) + "\n", encoding="utf-8")
    qdrant = cfg.retrieval.retriever.startswith("qdrant")

    if setting == "closed-book":
        fn = R.closed_book_answer_fn(R.make_llm(cfg.llm))
        return R.run_eval(examples, fn, out, spec=spec, concurrency=concurrency, timeout_s=timeout_s, show_progress=show_progress, retry_failed=retry_failed, score_retrieval=False)
    if setting == "distractor":
        if not any(e.documents for e in examples):
            raise HoprankError(f"--setting distractor needs per-question documents; {dataset} has none (use pooled with --corpus, or closed-book)")

        import threading

        shared: dict[str, Any] = {}
        lock = threading.Lock()

        def per_example(ex):
            # one small index per question, one LLM shared by all of them
            _, ipath = R.build_example_index(ex, out, qdrant=qdrant)
            with lock:
                if "llm" not in shared:
                    shared["llm"] = R.make_llm(cfg.llm)
            return R.agent_answer_fn(cfg, ipath, llm=shared["llm"])

        return R.run_eval(examples, per_example, out, spec=spec, concurrency=concurrency, timeout_s=timeout_s, per_example=True, show_progress=show_progress, retry_failed=retry_failed)

    # pooled: one shared index in the run folder, reused on resume
    if index is not None:
        ipath = index
    elif dataset in ("multihop-rag", "multihoprag"):
        from hoprank.tools.ingest.chunking import ChunkingConfig

        if not corpus:
            raise HoprankError("multihop-rag pooled needs --corpus corpus.json (or --setting closed-book for answer-only scoring)")
        documents = [d for c in corpus for d in load_multihop_rag_corpus(c)]
        # the MultiHop-RAG protocol: 256-token chunks
        _, ipath = R.build_pooled_index(examples, out, qdrant=qdrant, chunking=ChunkingConfig(size=256, overlap=0), documents=documents, show_progress=show_progress)
    elif corpus:
        _, ipath = R.build_pooled_index(examples, out, qdrant=qdrant, sources=list(corpus), show_progress=show_progress)
    elif any(e.documents for e in examples):
        _, ipath = R.build_pooled_index(examples, out, qdrant=qdrant, show_progress=show_progress)
    else:
        raise HoprankError(f"{dataset} has no documents of its own: pass --corpus FILES or --index PATH, or use --setting closed-book")
    fn = R.agent_answer_fn(cfg, ipath)
    return R.run_eval(examples, fn, out, spec=spec, concurrency=concurrency, timeout_s=timeout_s, show_progress=show_progress, retry_failed=retry_failed)


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = summary["metrics"]
    table = Table(title="eval summary")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in m.items():
        table.add_row(k, f"{v:.4f}" if not k.startswith("n.") else f"{int(v)}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        dataset: str = typer.Option(..., "--dataset", "-d", help="hotpotqa | multihop-rag | fanoutqa | jsonl"),
        path: Optional[Path] = typer.Option(None, "--path", help="Dataset file (HotpotQA JSON in either layout, MultiHopRAG.json, JSONL). HotpotQA without --path loads from the hub (needs network + hoprank[hf])."),
        setting: str = typer.Option("pooled", "--setting", help="pooled (one index over all questions' documents) | distractor (each question's own paragraphs) | closed-book (no retrieval)"),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file (YAML/TOML)."),
        preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Ablation preset: naive, decompose, hop, rerank-<method>, full."),
        limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="First N questions only."),
        concurrency: int = typer.Option(1, "--concurrency", min=1, max=256, help="Questions answered at once."),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (rerun with the same folder to resume)."),
        corpus: Optional[list[Path]] = typer.Option(None, "--corpus", help="Corpus: MultiHop-RAG corpus.json, or files/folders for jsonl."),
        index: Optional[Path] = typer.Option(None, "--index", help="Use an existing index instead of building one."),
        timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds per question before it counts as failed."),
        answer_style: str = typer.Option("short", "--answer-style", help="short (EM/F1-friendly) | full"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="On resume, answer the failed questions again."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Run an evaluation; writes results.jsonl, summary.json and run.json into --out."""
        summary = run_from_cli(dataset, path, setting, config, preset, limit, concurrency, out, corpus, index, timeout, answer_style, retry_failed, not quiet)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            print_summary(summary)
            typer.echo(f"results in {out}")

    @app.command("report")
    def report_cmd(
        runs: list[Path] = typer.Argument(..., help="Run folders written by `hoprank eval`."),
        out: Path = typer.Option(Path("report"), "--out", "-o", help="Folder for report.md and report.html."),
        resamples: int = typer.Option(2000, "--resamples", min=100, max=100000, help="Bootstrap resamples."),
        seed: int = typer.Option(0, "--seed"),
    ) -> None:
        """Compare runs: tables by question type, plots, paired bootstrap confidence intervals."""
        from hoprank.evals.report import write_report

        md, html = write_report(runs, out, resamples=resamples, seed=seed)
        typer.echo(f"wrote {md} and {html}")
