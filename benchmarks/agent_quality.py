"""The agent on HotpotQA, pooled setting, with the embedded models (or any endpoint).

Compares, on the same questions and the same LLM:
  evidence  both-gold@5 / @10 of single-shot hybrid retrieval vs the full graph (rule-based
            and LLM decomposition, 0 / 1 / 2 hops);
  answers   EM / F1 (official HotpotQA normalisation) closed-book, naive RAG (top-5 hybrid
            -> generate) and the full graph;
  cost      LLM calls, tokens and seconds per question, and how they grow with hops;
  agentic   the same questions in ``agent.mode: agentic`` (the LLM calls search, rerank_<name>
            and answer tools; agent/agentic.py), same reranker, budgets and answer step.

Reads ../shared/data (not available to tests). Every question is scored: a failed one
counts as zero, never dropped. Runs are resumable (the eval runner's JSONL rows).

    .venv/bin/python benchmarks/agent_quality.py --limit 30
    .venv/bin/python benchmarks/agent_quality.py --llm-base-url http://127.0.0.1:8000/v1 --llm-model MODEL

The agentic row alone, added to the saved results (the other rows stay as they were measured):

    .venv/bin/python benchmarks/agent_quality.py --limit 60 --configs "agentic, rerank tools" --add-to-saved
    .venv/bin/python benchmarks/agent_quality.py --limit 60 --configs "agentic, rerank tools" \
        --llm-base-url http://127.0.0.1:8000/v1 --llm-model MODEL      # a model that calls tools
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import RESULTS_DIR, data_file, environment, markdown_table, read_results, write_results

from hoprank.agent.config import Config
from hoprank.evals.datasets import load_hotpotqa
from hoprank.evals.metrics import both_gold_at_k
from hoprank.evals.runner import (
    agent_answer_fn,
    build_pooled_index,
    closed_book_answer_fn,
    make_llm,
    run_eval,
)

DEFAULT_DATA = "hotpotqa/hotpot_dev_distractor_sample60.hf.json"

BASE = {
    "agent": {"answer_style": "short", "evidence_k": 5},
    "retrieval": {"retriever": "hybrid", "k": 20},
    "rerank": {"method": "embedding", "top_k": 10},
}
CONFIGS: dict[str, dict] = {
    "naive RAG": {
        "retrieval": {"k": 5},
        "rerank": {"method": "none"},
        "agent": {"decompose": "none", "max_hops": 0, "chain": False},  # top-5 hybrid -> generate, nothing else
    },
    "graph, rules, 0 hops": {"agent": {"decompose": "rules", "max_hops": 0}},
    "graph, rules, 1 hop": {"agent": {"decompose": "rules", "max_hops": 1}},
    "graph, rules, 2 hops": {"agent": {"decompose": "rules", "max_hops": 2}},
    "graph, LLM decomposition, 2 hops": {"agent": {"decompose": "llm", "max_hops": 2}},
    "agentic, rerank tools": {"agent": {"mode": "agentic"}},
}


def merge(a: dict, b: dict) -> dict:
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint instead of the embedded model")
    ap.add_argument("--llm-model", default=None)
    ap.add_argument("--work", default=".hoprank/bench/agent_quality", help="run folders (resumable)")
    ap.add_argument(
        "--configs", default=";".join(CONFIGS), help="semicolon-separated subset of the configuration names"
    )
    ap.add_argument(
        "--add-to-saved",
        action="store_true",
        help="keep the saved results' rows that this run does not measure (e.g. add the agentic row alone)",
    )
    args = ap.parse_args()

    env = environment()
    path = data_file(args.data)
    examples = load_hotpotqa(path)[: args.limit]
    work = Path(args.work)
    index, _ = build_pooled_index(load_hotpotqa(path), work / "index", show_progress=True)
    llm_over = (
        {"backend": "openai", "base_url": args.llm_base_url, "model": args.llm_model} if args.llm_base_url else {}
    )
    base = merge(BASE, {"llm": {k: v for k, v in llm_over.items() if v}})

    def llm_for(run: str):
        # one response cache per configuration: a resumed run pays no call twice, and no
        # configuration gets another's calls for free (which would hide its cost)
        return make_llm(Config.load(merge(base, {"llm": {"cache_dir": str(work / run / "llm-cache")}})).llm)

    gold = {e.id: e.gold_doc_ids for e in examples}

    # single-shot hybrid retrieval: the evidence baseline (no LLM)
    hybrid = index.retriever("hybrid")
    single = {
        k: statistics.mean(
            both_gold_at_k([h.doc_id for h in hybrid.search(e.question, 20)], gold[e.id], k) for e in examples
        )
        for k in (5, 10)
    }

    results: dict[str, dict] = {"single-shot hybrid (retrieval only)": {"both@5": single[5], "both@10": single[10]}}
    # closed-book: the same LLM without documents
    t0 = time.perf_counter()
    s = run_eval(
        examples,
        closed_book_answer_fn(llm_for("closed-book")),
        work / "closed-book",
        score_retrieval=False,
        show_progress=True,
    )
    results["closed-book"] = {
        "em": s["metrics"].get("answer.em"),
        "f1": s["metrics"].get("answer.f1"),
        "calls/q": s["metrics"].get("cost.llm_calls_per_q"),
        "tokens/q": s["metrics"].get("cost.tokens_per_q"),
        "s/q": s["metrics"].get("cost.seconds_per_q"),
        "wall_s": time.perf_counter() - t0,
    }

    for name in [c.strip() for c in args.configs.split(";") if c.strip() in CONFIGS]:
        cfg = Config.load(merge(base, CONFIGS[name]))
        out = work / name.replace(" ", "_").replace(",", "")
        t0 = time.perf_counter()
        ask = agent_answer_fn(cfg, index, llm=llm_for(out.name))
        hops_file = out / "hops.json"
        hops_by_q: dict[str, int] = json.loads(hops_file.read_text()) if hops_file.exists() else {}

        def answer(q: str, _ask=ask, _hops=hops_by_q):
            a = _ask(q)
            _hops[q] = int(a.trace.get("hops", 0) or 0)
            return a

        s = run_eval(examples, answer, out, show_progress=True)
        hops_file.write_text(json.dumps(hops_by_q))
        hops = [float(hops_by_q[e.question]) for e in examples if e.question in hops_by_q]
        m = s["metrics"]
        results[name] = {
            "both@5": m.get("retrieval.both_gold@5"),
            "both@10": m.get("retrieval.both_gold@10"),
            "em": m.get("answer.em"),
            "f1": m.get("answer.f1"),
            "calls/q": m.get("cost.llm_calls_per_q"),
            "tokens/q": m.get("cost.tokens_per_q"),
            "s/q": m.get("cost.seconds_per_q"),
            "hops/q": statistics.mean(hops) if hops else None,
            "failed": m.get("n.failed"),
            "wall_s": time.perf_counter() - t0,
        }
        print(name, results[name], file=sys.stderr)

    kept: list[str] = []
    if args.add_to_saved and (RESULTS_DIR / "agent_quality.json").exists():
        saved = read_results("agent_quality")[2]
        kept = [n for n in saved if n not in results]
        merged = {**{n: saved[n] for n in kept}, **results}
        order = [*list(results)[:2], *CONFIGS]  # the two baselines, then the configurations' own order
        results = {n: merged[n] for n in sorted(merged, key=lambda n: order.index(n) if n in order else len(order))}
    cols = ["both@5", "both@10", "em", "f1", "calls/q", "tokens/q", "s/q", "hops/q", "failed"]
    table = markdown_table(["configuration"] + cols, [[n] + [r.get(c) for c in cols] for n, r in results.items()])
    model = args.llm_model or "SmolLM2-135M-Instruct Q4_1 (llama.cpp, embedded)"
    write_results(
        "agent_quality",
        results,
        [("HotpotQA pooled: evidence, answers, cost", table)],
        env=env,
        runs=f"1 run over the first {len(examples)} questions (greedy decoding, temperature 0)",
        data=[path],
        command="python " + " ".join(sys.argv),
        notes=[
            *(
                [f"rows kept from the saved results (not re-measured by this command): {', '.join(kept)}"]
                if kept
                else []
            ),
            f"LLM: {model}; encoder: {index.encoder_name}; reranker: embedding (the index's stored vectors)",
            "pooled corpus = all paragraphs of all 60 questions (one paragraph = one chunk)",
            (
                "both@k over the distinct documents of the agent's ranked evidence (top 10 returned; the generator "
                "reads the top 5)"
            ),
        ],
        results_dir=RESULTS_DIR,
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
