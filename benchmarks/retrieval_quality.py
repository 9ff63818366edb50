"""Single-shot retrieval quality on HotpotQA, pooled setting.

All paragraphs of all questions form ONE corpus (about 600 paragraphs for the 60-question
sample); each question is searched against the whole pool, the way a user's index works,
rather than against its own 10 paragraphs (the distractor setting, which is far easier).
One paragraph = one document = one chunk: the chunk size is set above the longest
paragraph so none is split (the run reports how many were, in case the data changes).

Metrics (from ``hoprank.evals.metrics``, on document ids = paragraph titles):
both-gold@k (both supporting paragraphs in the top k: what a multi-hop reader needs),
paragraph recall@k, MRR@10.

    .venv/bin/python benchmarks/retrieval_quality.py [--limit N] [--retrievers bm25,dense]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS_DIR, argument_parser, data_file, environment, markdown_table, write_results

from hoprank.tools.retrieval.factory import retriever_names

DEFAULT_DATA = "hotpotqa/hotpot_dev_distractor_sample60.hf.json"
# every registered retriever except qdrant-sparse (a part of qdrant-hybrid, not compared alone)
RETRIEVERS = [n for n in retriever_names() if n != "qdrant-sparse"]
KS = (2, 5, 10)
# Published single-shot figures on a 100-question pooled corpus (991 paragraphs).
REFERENCE = {
    "bm25": {"both@2": 0.18, "both@5": 0.49, "both@10": 0.79},
    "dense": {"both@2": 0.28, "both@5": 0.54, "both@10": 0.78},
    "hybrid": {"both@5": 0.52, "both@10": 0.84},
}
REFERENCE_NOTE = (
    "Reference: 100-question pooled corpus of 991 paragraphs (bm25s BM25, MiniLM-L6 dense, "
    "RRF of the two). Our corpus is smaller (60 questions, about 600 paragraphs), so fewer "
    "distractors compete and the numbers are not directly comparable."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argument_parser(__doc__, DEFAULT_DATA, "file under the shared data folder (HotpotQA, either layout)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N questions (and their paragraphs)")
    p.add_argument("--retrievers", default=",".join(RETRIEVERS), help="comma-separated retriever names")
    p.add_argument(
        "--chunk-size", type=int, default=2000, help="words per chunk; above the longest paragraph so none is split"
    )
    p.add_argument("--encoder", default=None, help="encoder of the index (default: hoprank's default encoder)")
    p.add_argument("--name", default="retrieval_quality", help="results file stem under benchmarks/results/")
    p.add_argument(
        "--keep-index", type=Path, default=None, help="build the index here and keep it (default: a temp folder)"
    )
    return p.parse_args(argv)


def ranked_doc_ids(hits) -> list[str]:
    """Chunk hits collapse to their document's best rank (a no-op when nothing is split)."""
    from hoprank.evals.metrics import dedup_keep_order

    return dedup_keep_order(h.doc_id for h in hits)


def score_run(examples, runs: list[list[str]]) -> dict[str, float]:
    from hoprank.evals.metrics import both_gold_at_k, mrr_at_k, ndcg_at_k, recall_at_k

    per_q: dict[str, list[float]] = {}
    for ex, ranked in zip(examples, runs, strict=True):
        for k in KS:
            per_q.setdefault(f"both@{k}", []).append(both_gold_at_k(ranked, ex.gold_doc_ids, k))
            per_q.setdefault(f"recall@{k}", []).append(recall_at_k(ranked, ex.gold_doc_ids, k))
        per_q.setdefault("mrr@10", []).append(mrr_at_k(ranked, ex.gold_doc_ids, 10))
        per_q.setdefault("ndcg@10", []).append(ndcg_at_k(ranked, ex.gold_doc_ids, 10))
    return {m: round(statistics.fmean(v), 4) for m, v in per_q.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hoprank.evals.datasets import load_hotpotqa, pooled_corpus
    from hoprank.tools.ingest.chunking import ChunkingConfig
    from hoprank.tools.ingest.index import Index

    env = environment()
    path = data_file(args.data)
    examples = load_hotpotqa(path, limit=args.limit)
    docs = pooled_corpus(examples)
    names = [n.strip() for n in args.retrievers.split(",") if n.strip()]
    longest = max(len(d.text.split()) for d in docs)
    print(f"{len(examples)} questions, {len(docs)} pooled paragraphs (longest {longest} words)", file=sys.stderr)

    workdir = args.keep_index or Path(tempfile.mkdtemp(prefix="hoprank-rq-"))
    if args.keep_index and workdir.exists():
        shutil.rmtree(workdir)  # always a fresh build: a reused index would hide build time
    t0 = time.perf_counter()
    index, stats = Index.build(
        workdir,
        documents=docs,
        chunking=ChunkingConfig(size=args.chunk_size, overlap=0),
        encoder=args.encoder,
        show_progress=True,
    )
    build_s = time.perf_counter() - t0
    chunks_per_doc: dict[str, int] = {}
    for c in index.chunks:
        chunks_per_doc[c.doc_id] = chunks_per_doc.get(c.doc_id, 0) + 1
    split = sorted(d for d, n in chunks_per_doc.items() if n > 1)
    # when paragraphs are split, search deeper so 10 distinct documents survive the collapse
    depth = 10 if not split else 10 * max(chunks_per_doc.values())

    questions = [ex.question for ex in examples]
    results: dict[str, dict] = {}
    per_question: list[dict] = [
        {"id": ex.id, "type": ex.type, "gold_doc_ids": sorted(ex.gold_doc_ids), "ranked": {}} for ex in examples
    ]
    for name in names:
        t0 = time.perf_counter()
        retriever = index.retriever(name)
        setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        hits = retriever.search_batch(questions, k=depth)
        search_s = time.perf_counter() - t0
        runs = [ranked_doc_ids(h) for h in hits]
        for row, ranked in zip(per_question, runs, strict=True):
            row["ranked"][name] = ranked[:10]
        scores = score_run(examples, runs)
        by_type: dict[str, dict[str, float]] = {}
        for qtype in sorted({ex.type for ex in examples}):
            sel = [i for i, ex in enumerate(examples) if ex.type == qtype]
            sub = score_run([examples[i] for i in sel], [runs[i] for i in sel])
            by_type[qtype] = {"n": len(sel), "both@5": sub["both@5"], "both@10": sub["both@10"]}
        results[name] = {
            **scores,
            "by_type": by_type,
            "setup_s": round(setup_s, 2),
            "search_s": round(search_s, 2),
        }
        print(
            f"{name:14s} both@5 {scores['both@5']:.3f} both@10 {scores['both@10']:.3f} mrr@10 {scores['mrr@10']:.3f}",
            file=sys.stderr,
        )
    for r in index._retrievers.values():
        getattr(r, "close", lambda: None)()
    if not args.keep_index:
        shutil.rmtree(workdir, ignore_errors=True)

    main_rows = [
        [
            n,
            *(results[n][f"both@{k}"] for k in KS),
            *(results[n][f"recall@{k}"] for k in KS),
            results[n]["mrr@10"],
            results[n]["ndcg@10"],
        ]
        for n in names
    ]
    main_table = markdown_table(
        ["retriever", "both@2", "both@5", "both@10", "recall@2", "recall@5", "recall@10", "MRR@10", "nDCG@10"],
        main_rows,
    )
    ref_rows = []
    for n in names:
        ref = REFERENCE.get(n)
        if ref:
            ref_rows.append(
                [
                    n,
                    results[n]["both@2"],
                    ref.get("both@2"),
                    results[n]["both@5"],
                    ref.get("both@5"),
                    results[n]["both@10"],
                    ref.get("both@10"),
                ]
            )
    ref_table = markdown_table(
        ["retriever", "both@2 ours", "both@2 ref", "both@5 ours", "both@5 ref", "both@10 ours", "both@10 ref"], ref_rows
    )
    qtypes = sorted({ex.type for ex in examples})
    type_table = (
        markdown_table(
            ["retriever", *(f"{t} (n={results[names[0]]['by_type'][t]['n']}) both@5 / @10" for t in qtypes)],
            [
                [
                    n,
                    *(
                        f"{results[n]['by_type'][t]['both@5']:.3f} / {results[n]['by_type'][t]['both@10']:.3f}"
                        for t in qtypes
                    ),
                ]
                for n in names
            ],
        )
        if names
        else ""
    )
    corpus = {
        "questions": len(examples),
        "paragraphs": len(docs),
        "chunks": len(index.chunks),
        "encoder": index.encoder_name,
        "paragraphs_split": len(split),
        "split_titles": split[:20],
        "chunk_size_words": args.chunk_size,
        "longest_paragraph_words": longest,
        "search_depth": depth,
        "index_build_s": round(build_s, 1),
        "build_stats": {"documents": stats.documents, "chunks": stats.chunks, "chunks_embedded": stats.chunks_embedded},
    }
    notes = [
        REFERENCE_NOTE
        + f" With {len(examples)} questions, one question moves a both-gold figure by {1 / len(examples):.3f}.",
        (
            "bm25s and rank-bm25 score with different IDF formulas (bm25s default 'lucene': ln(1 + (N - df + 0.5)/(df "
            "+ 0.5)); rank_bm25 BM25Okapi: ln((N - df + 0.5)/(df + 0.5)), negative values floored at 0.25 x mean "
            "IDF), so their rankings differ slightly."
        ),
        (
            f"Pooled corpus: {len(docs)} distinct paragraphs (titles) from {len(examples)} questions' "
            f"{sum(len(e.documents) for e in examples)}, one chunk each ({len(split)} paragraph(s) split at chunk size "
            f"{args.chunk_size} words; longest paragraph {longest} words)."
        ),
        (
            "bm25 = bm25s and rank-bm25 = the rank_bm25 reference, same tokeniser (lower-case words, English "
            "stopwords, no stemming), k1=1.5, b=0.75; dense = the index's encoder "
            f"({index.encoder_name}) over title + text, exact inner product; qdrant = the same vectors in Qdrant Edge "
            "(the engine embedded in the index folder, HNSW); qdrant-hybrid = Qdrant Edge prefetch (dense + sparse "
            "BM25 with the IDF modifier) fused by RRF inside the engine; hybrid = RRF (k=60) of bm25 and dense, "
            "depth 50."
        ),
        (
            "Retrieval is deterministic: one run. search_s in the JSON is the wall time of the whole question batch, "
            "including query encoding, for orientation only (see retrieval_speed for timings)."
        ),
    ]
    write_results(
        args.name,
        {"corpus": corpus, "retrievers": results, "reference": REFERENCE},
        [
            ("Pooled HotpotQA retrieval (document = paragraph)", main_table),
            ("Against the published reference (both gold paragraphs in the top k)", ref_table),
            ("By question type", type_table),
        ],
        env=env,
        runs="1 run (deterministic retrieval; no sampling)",
        data=[path],
        command="python benchmarks/retrieval_quality.py"
        + (f" --limit {args.limit}" if args.limit else "")
        + (f" --encoder {args.encoder}" if args.encoder else ""),
        notes=notes,
    )
    # per question: the top 10 documents of every retriever (the figures above recompute from these)
    rows_path = RESULTS_DIR / f"{args.name}.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in per_question), encoding="utf-8")
    print(f"wrote {RESULTS_DIR / (args.name + '.json')}, .md and .jsonl", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
