"""``hoprank eval`` and ``hoprank report``: registered into the main CLI by ``register(app)``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

SETTINGS = ("pooled", "distractor", "closed-book")
JUDGE_HELP = (
    "Also score the run with LLM judges: ragas, nuggets or ragas,nuggets (off by default; many LLM calls per "
    "question). The judge is the run's LLM unless --judge-base-url is given: the embedded 135M model is a useless "
    "judge (undetermined RAGAS scores, fallback nuggets), so point it at a capable OpenAI-compatible endpoint."
)
JUDGE_URL_HELP = (
    "OpenAI-compatible endpoint for the judge (vLLM, OpenAI, llama.cpp server); strongly advised over the embedded "
    "135M model."
)


def _judge_api_key_option() -> Any:
    """``--judge-api-key``, declared once for ``eval`` and ``judge``."""
    return typer.Option(
        None,
        "--judge-api-key",
        envvar="HOPRANK_JUDGE_API_KEY",
        help="API key of the judge endpoint (env HOPRANK_JUDGE_API_KEY).",
    )


def _redacted(cfg: Any) -> dict[str, Any]:
    data = cfg.model_dump()
    if data.get("llm", {}).get("api_key"):
        data["llm"]["api_key"] = "***"
    return data


@dataclass(frozen=True)
class JudgeOptions:
    """The LLM-judge settings ``hoprank eval --judge`` and ``hoprank judge`` share (one value, not six arguments)."""

    judges: str = "ragas,nuggets"
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    ragas_metrics: str | None = None
    nugget_cache: Path | None = None


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
    judge: JudgeOptions | None = None,
) -> dict[str, Any]:
    """Everything ``hoprank eval`` does: answer and score the questions, then (``judge``) score the run
    with LLM judges (see :func:`judge_from_cli`)."""
    from hoprank.agent.config import Config
    from hoprank.evals import runner as R
    from hoprank.evals.datasets import file_sha256
    from hoprank.evals.judge import parse_judges
    from hoprank.evals.presets import apply_preset
    from hoprank.tools.errors import HoprankError

    if judge is not None:
        parse_judges(judge.judges)  # a typo must fail before the long run, not after it
    if setting not in SETTINGS:
        raise HoprankError(f"--setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    examples = _load_examples(dataset, path, limit)
    cfg = apply_preset(Config.load(config), preset_name)
    if answer_style:
        cfg = cfg.with_overrides(**{"agent.answer_style": answer_style})
    spec = R.RunSpec(
        dataset=dataset,
        dataset_path=str(path) if path else None,
        dataset_sha256=file_sha256(path) if path else None,
        setting=setting,
        preset=preset_name,
        config=_redacted(cfg),
        limit=limit,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(_redacted(cfg), indent=2) + "\n", encoding="utf-8")
    qdrant = cfg.retrieval.retriever.startswith("qdrant")

    def evaluate(answer_fn: Any, **options: Any) -> dict[str, Any]:
        return R.run_eval(
            examples,
            answer_fn,
            out,
            spec=spec,
            concurrency=concurrency,
            timeout_s=timeout_s,
            show_progress=show_progress,
            retry_failed=retry_failed,
            **options,
        )

    ipath: Path | None = None
    if setting == "closed-book":
        summary = evaluate(R.closed_book_answer_fn(R.make_llm(cfg.llm)), score_retrieval=False)
    elif setting == "distractor":
        if not any(e.documents for e in examples):
            raise HoprankError(
                f"--setting distractor needs per-question documents; {dataset} has none "
                "(use pooled with --corpus, or closed-book)"
            )
        summary = evaluate(_per_question_answer_fn(cfg, out, qdrant), per_example=True)
    else:  # pooled: one shared index in the run folder, reused on resume
        ipath = (
            Path(index) if index is not None else _pooled_index(examples, dataset, corpus, out, qdrant, show_progress)
        )
        summary = evaluate(R.agent_answer_fn(cfg, ipath))
    if judge is not None:
        summary = judge_from_cli(out, judge, dataset, path, limit, config, ipath, show_progress=show_progress)
    return summary


def _per_question_answer_fn(cfg: Any, out: Path, qdrant: bool) -> Any:
    """The distractor setting's factory: one small index per question, one LLM shared by all of them
    (loading the model once per question would dominate the run)."""
    import threading

    from hoprank.evals import runner as R

    shared: dict[str, Any] = {}
    lock = threading.Lock()

    def per_example(ex: Any) -> Any:
        _, ipath = R.build_example_index(ex, out, qdrant=qdrant)
        with lock:
            if "llm" not in shared:
                shared["llm"] = R.make_llm(cfg.llm)
        return R.agent_answer_fn(cfg, ipath, llm=shared["llm"])

    return per_example


def _pooled_index(
    examples: list[Any], dataset: str, corpus: list[Path] | None, out: Path, qdrant: bool, show_progress: bool
) -> Path:
    """Build the pooled setting's one index over the corpus the dataset implies; returns its path."""
    from hoprank.evals import runner as R
    from hoprank.evals.datasets import load_multihop_rag_corpus
    from hoprank.tools.errors import HoprankError

    sources: dict[str, Any] = {}  # none: the questions' own documents
    if dataset in ("multihop-rag", "multihoprag"):
        from hoprank.tools.ingest.chunking import ChunkingConfig

        if not corpus:
            raise HoprankError(
                "multihop-rag pooled needs --corpus corpus.json (or --setting closed-book for answer-only scoring)"
            )
        # the MultiHop-RAG protocol: 256-token chunks
        sources = {
            "documents": [d for c in corpus for d in load_multihop_rag_corpus(c)],
            "chunking": ChunkingConfig(size=256, overlap=0),
        }
    elif corpus:
        sources = {"sources": list(corpus)}
    elif not any(e.documents for e in examples):
        raise HoprankError(
            f"{dataset} has no documents of its own: pass --corpus FILES or --index PATH, or use --setting closed-book"
        )
    _, ipath = R.build_pooled_index(examples, out, qdrant=qdrant, show_progress=show_progress, **sources)
    return ipath


def _load_examples(dataset: str, path: Path | None, limit: int | None) -> list[Any]:
    """``load_dataset`` with a file that is not UTF-8 named, instead of a UnicodeDecodeError."""
    from hoprank.evals.datasets import load_dataset
    from hoprank.tools.errors import DatasetFormatError

    try:
        return load_dataset(dataset, path, limit)
    except UnicodeDecodeError as e:
        raise DatasetFormatError(
            f"{path or dataset}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8 "
            "(e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)"
        ) from None


def failed_run_message(summary: dict[str, Any], out: Path) -> str | None:
    """One line when no question was answered (every one failed), else None.

    Why an error: a run whose every question failed measures the endpoint, not the system;
    exiting 0 with all-zero metrics lets a script record the zeros as a result."""
    from hoprank.evals import runner as R

    m = summary.get("metrics") or {}
    total, failed = int(m.get("n.total", 0) or 0), int(m.get("n.failed", 0) or 0)
    if not total:
        return "no question was evaluated: the dataset (after --limit) is empty"
    if failed < total:
        return None
    first = next(
        (r.get("error") for r in R.read_rows(out / R.RESULTS) if r.get("status") == "failed" and r.get("error")), None
    )
    from hoprank.agent.app.cli_errors import with_hint

    cause = with_hint(str(first)) if first else "see the error column of results.jsonl"
    return f"every question failed ({failed} of {total}); first error: {cause}. Fix it and rerun with --retry-failed"


def _run_config(run_dir: Path, config: Path | None):
    """The config to judge with: ``--config``, else the run's own config.json (API key
    redacted there: it then comes from the environment or ``--judge-api-key``)."""
    from hoprank.agent.config import Config

    if config is not None:
        return Config.load(config)
    saved = run_dir / "config.json"
    if saved.exists():
        return Config.model_validate(json.loads(saved.read_text("utf-8")))
    return Config.load(None)


def judge_from_cli(
    run_dir: Path,
    judge: JudgeOptions = JudgeOptions(),
    dataset: str | None = None,
    path: Path | None = None,
    limit: int | None = None,
    config: Path | None = None,
    index: Path | None = None,
    force: bool = False,
    show_progress: bool = True,
    llm: Any = None,
) -> dict[str, Any]:
    """Score an existing run with RAGAS and/or nuggets (``hoprank judge``, ``eval --judge``).

    Dataset and path default to the ones recorded in the run's run.json (the gold
    paragraphs feed the nuggets). ``llm`` overrides the judge (tests pass a ScriptedLLM)."""
    from hoprank.evals import judge as J
    from hoprank.tools.errors import HoprankError

    do_ragas, do_nuggets = J.parse_judges(judge.judges)
    if not (do_ragas or do_nuggets):
        raise HoprankError("--judge: name at least one of ragas, nuggets")
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    info = json.loads(info_path.read_text("utf-8")) if info_path.exists() else {}
    dataset = dataset or (info.get("identity") or {}).get("dataset")
    if path is None and info.get("dataset_path"):
        path = Path(info["dataset_path"])
    if limit is None:
        limit = info.get("limit")
    examples = _load_examples(dataset, path, limit) if dataset else []
    if llm is None:
        llm = J.make_judge_llm(_run_config(run_dir, config).llm, judge.base_url, judge.model, judge.api_key)
    embedder = None
    names = [m.strip() for m in (judge.ragas_metrics or ",".join(J.RAGAS_METRICS)).split(",") if m.strip()]
    if do_ragas and any(m in ("answer_relevancy", "response_relevancy") for m in names):
        from hoprank.tools.embeddings import Embedder

        embedder = Embedder()
    return J.judge_run(
        run_dir,
        examples,
        index,
        llm,
        embedder,
        ragas=do_ragas,
        nuggets=do_nuggets,
        ragas_metrics=names,
        nugget_cache=judge.nugget_cache,
        force=force,
        show_progress=show_progress,
    )


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = summary["metrics"]
    table = Table(title="eval summary")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in m.items():
        count = (
            k.startswith("n.") or k.endswith(".undetermined") or k in ("nuggets.fallbacks", "nuggets.fallback_nuggets")
        )
        table.add_row(k, f"{int(v)}" if count else f"{v:.4f}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        dataset: str = typer.Option(..., "--dataset", "-d", help="hotpotqa | multihop-rag | fanoutqa | jsonl"),
        path: Optional[Path] = typer.Option(
            None,
            "--path",
            help=(
                "Dataset file (HotpotQA JSON in either layout, MultiHopRAG.json, JSONL). "
                "HotpotQA without --path loads from the hub (needs network + hoprank[hf])."
            ),
        ),
        setting: str = typer.Option(
            "pooled",
            "--setting",
            help=(
                "pooled (one index over all questions' documents) | distractor (each question's own paragraphs) "
                "| closed-book (no retrieval)"
            ),
        ),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file (YAML/TOML)."),
        preset: Optional[str] = typer.Option(
            None, "--preset", "-p", help="Ablation preset: naive, decompose, hop, rerank-<method>, full."
        ),
        limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="First N questions only."),
        concurrency: int = typer.Option(1, "--concurrency", min=1, max=256, help="Questions answered at once."),
        out: Path = typer.Option(..., "--out", "-o", help="Run folder (rerun with the same folder to resume)."),
        corpus: Optional[list[Path]] = typer.Option(
            None, "--corpus", help="Corpus: MultiHop-RAG corpus.json, or files/folders for jsonl."
        ),
        index: Optional[Path] = typer.Option(None, "--index", help="Use an existing index instead of building one."),
        timeout: Optional[float] = typer.Option(
            None, "--timeout", help="Seconds per question before it counts as failed."
        ),
        answer_style: str = typer.Option("short", "--answer-style", help="short (EM/F1-friendly) | full"),
        retry_failed: bool = typer.Option(
            False, "--retry-failed", help="On resume, answer the failed questions again."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
        judge: Optional[str] = typer.Option(None, "--judge", help=JUDGE_HELP),
        judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help=JUDGE_URL_HELP),
        judge_model: Optional[str] = typer.Option(
            None,
            "--judge-model",
            help="Judge model name at --judge-base-url (or a .gguf path for the embedded backend).",
        ),
        judge_api_key: Optional[str] = _judge_api_key_option(),
        ragas_metrics: Optional[str] = typer.Option(
            None,
            "--ragas-metrics",
            help=(
                "Comma-separated RAGAS metrics (default: faithfulness,answer_relevancy,context_precision,"
                "context_recall,factual_correctness)."
            ),
        ),
        nugget_cache: Optional[Path] = typer.Option(
            None,
            "--nugget-cache",
            help="Nugget cache folder (default <out>/nugget_cache); share it between runs of the same questions.",
        ),
    ) -> None:
        """Run an evaluation; writes results.jsonl, summary.json and run.json into --out."""
        summary = run_from_cli(
            dataset,
            path,
            setting,
            config,
            preset,
            limit,
            concurrency,
            out,
            corpus,
            index,
            timeout,
            answer_style,
            retry_failed,
            not quiet,
            JudgeOptions(judge, judge_base_url, judge_model, judge_api_key, ragas_metrics, nugget_cache)
            if judge
            else None,
        )
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            print_summary(summary)
            typer.echo(f"results in {out}")
        problem = failed_run_message(summary, out)
        if problem:
            from hoprank.agent.app.cli_errors import one_line, print_error

            print_error(one_line(problem))
            raise typer.Exit(1)

    @app.command("judge")
    def judge_cmd(
        run: Path = typer.Argument(..., help="Run folder written by `hoprank eval`."),
        dataset: Optional[str] = typer.Option(
            None, "--dataset", "-d", help="Dataset of the run (default: the one in run.json)."
        ),
        path: Optional[Path] = typer.Option(
            None, "--path", help="Dataset file (default: the one in run.json); its gold paragraphs feed the nuggets."
        ),
        index: Optional[Path] = typer.Option(
            None,
            "--index",
            help="Index holding the evidence chunks (default: the run's own index/ or per-question indexes).",
        ),
        config: Optional[Path] = typer.Option(
            None, "--config", "-c", help="Config whose llm section is the judge (default: the run's config.json)."
        ),
        judge: str = typer.Option("ragas,nuggets", "--judge", help="ragas, nuggets or both (comma-separated)."),
        judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help=JUDGE_URL_HELP),
        judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Judge model name at --judge-base-url."),
        judge_api_key: Optional[str] = _judge_api_key_option(),
        ragas_metrics: Optional[str] = typer.Option(
            None, "--ragas-metrics", help="Comma-separated RAGAS metrics (default: all five)."
        ),
        nugget_cache: Optional[Path] = typer.Option(
            None, "--nugget-cache", help="Nugget cache folder (default <run>/nugget_cache)."
        ),
        force: bool = typer.Option(
            False, "--force", help="Re-judge even when ragas.json / nuggets.json match the rows."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Score an existing run with LLM judges (RAGAS, nuggets); merges into its summary.json.

        A 135M model is a useless judge: use --judge-base-url with a capable model."""
        options = JudgeOptions(judge, judge_base_url, judge_model, judge_api_key, ragas_metrics, nugget_cache)
        summary = judge_from_cli(run, options, dataset, path, None, config, index, force=force, show_progress=not quiet)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            print_summary(
                {"metrics": {k: v for k, v in summary["metrics"].items() if k.startswith(("ragas.", "nuggets."))}}
            )
            typer.echo(f"judged scores in {run}/ragas.json, {run}/nuggets.json and summary.json")

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
