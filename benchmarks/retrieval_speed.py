"""Retrieval speed and memory, every contender side by side in ONE run (so they share the
machine's load) with ratios:

* index build documents/s (chunk + embed + write) and, separately, the BM25 build
  (bm25s vs rank-bm25);
* BM25 queries/s, bm25s vs rank-bm25 on the same corpus and queries: the HotpotQA pooled
  corpus (60 questions) and a synthetic 20k-chunk corpus;
* MiniLM encoding documents/s and single-query encoding latency;
* query latency p50/p95 of embedded Qdrant vs numpy exact inner product at 1k and 20k
  chunks (and Qdrant's in-store hybrid vs our RRF hybrid), plus numpy with one BLAS thread;
* peak RSS of an index build and of loading the 20k index, each in a fresh subprocess so
  one measurement's peak cannot hide inside another's.

The synthetic corpus is pseudo-words drawn from a Zipf-distributed vocabulary. Its
vectors are random unit vectors by default (exact search costs the same whatever the
numbers are, and MiniLM on these texts runs at a few documents/s on 2 shared cores;
``--minilm-up-to 1000`` encodes the 1k corpus for real). MiniLM build and encoding
throughput are measured on the HotpotQA paragraphs. Query vectors are computed before timing, so the latency
figures are search only; query encoding is reported on its own line.

    .venv/bin/python benchmarks/retrieval_speed.py [--limit N] [--scales 1000,20000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
from common import (
    RESULTS_DIR,
    argument_parser,
    current_rss_mb,
    data_file,
    environment,
    latency_summary,
    log,
    markdown_table,
    peak_rss_mb,
    ratio,
    read_results,
    repeat,
    timed,
    write_results,
)

DEFAULT_DATA = "hotpotqa/hotpot_dev_distractor_sample60.hf.json"
DIM = 384
SEED = 13


# ---- synthetic data --------------------------------------------------------------------
def synthetic_corpus(n: int, seed: int = SEED, vocab_size: int = 8000):
    """Deterministic documents of 50-150 pseudo-words with a Zipf word distribution, so
    BM25 posting lists have realistic lengths (a few very common terms, a long tail)."""
    from hoprank.tools.types import Document

    rng = np.random.default_rng(seed)
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "de", "pa", "qu", "zen", "bor", "fal", "gri", "hum"]
    vocab: list[str] = []
    seen: set[str] = set()
    while len(vocab) < vocab_size:
        w = "".join(rng.choice(syll, size=int(rng.integers(2, 5))))
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    p = 1.0 / np.arange(1, vocab_size + 1) ** 1.07
    p /= p.sum()
    lens = rng.integers(50, 151, size=n)
    words = rng.choice(vocab_size, size=int(lens.sum()), p=p)
    docs, pos = [], 0
    for i, ln in enumerate(lens):
        ws = [vocab[j] for j in words[pos : pos + ln]]
        pos += ln
        title = f"{vocab[int(rng.integers(200, vocab_size))]} {vocab[int(rng.integers(200, vocab_size))]} {i}"
        docs.append(Document(id=f"syn-{i:05d}", text=" ".join(ws), title=title, source="synthetic"))
    return docs


def synthetic_queries(docs, n: int, seed: int = SEED + 1) -> list[str]:
    """4 words from a random document each, so every query has lexical matches."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ws = docs[int(rng.integers(len(docs)))].text.split()
        out.append(" ".join(rng.choice(ws, size=4, replace=False)))
    return out


def _hash_vectors(texts) -> np.ndarray:
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i] = np.random.default_rng(zlib.crc32(t.encode("utf-8"))).standard_normal(DIM)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


try:
    from hoprank.tools.embeddings import Encoder as _EncoderBase
except ImportError:  # pragma: no cover - before the encoder registry
    _EncoderBase = object


class HashEmbedder(_EncoderBase):
    """Stand-in for a real encoder at 20k chunks: a deterministic random unit vector per text."""

    name = model_name = "synthetic-random-unit-vectors"

    def __init__(self, *args, **kwargs):
        pass

    @property
    def dim(self) -> int:
        return DIM

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        return _hash_vectors(texts)

    def encode(self, texts, show_progress: bool = False) -> np.ndarray:
        return _hash_vectors(texts)


class LookupEmbedder:
    """Serves query vectors computed before the clock starts, so latency = search only."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.dim = DIM

    def encode(self, texts, show_progress: bool = False) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)

    encode_queries = encode_passages = encode


def build_index(path: Path, docs, fake_vectors: bool):
    """Index.build with the real pipeline; at 20k the encoder is swapped for random vectors."""
    import hoprank.tools.ingest.index as index_mod
    from hoprank.tools.ingest.chunking import ChunkingConfig

    shutil.rmtree(path, ignore_errors=True)
    cfg = ChunkingConfig(size=2000, overlap=0)  # one document = one chunk
    if fake_vectors and not hasattr(index_mod, "Embedder"):  # the encoder registry: pass an Encoder
        return index_mod.Index.build(path, documents=docs, chunking=cfg, encoder=HashEmbedder())
    if fake_vectors:
        with mock.patch.object(index_mod, "Embedder", HashEmbedder):
            return index_mod.Index.build(path, documents=docs, chunking=cfg)
    return index_mod.Index.build(path, documents=docs, chunking=cfg)


# ---- measurements ------------------------------------------------------------------------
def bm25_build_and_qps(index, queries: list[str], repeats: int) -> dict:
    """Build both BM25 implementations over the same chunks and time the same queries."""
    from hoprank.tools.retrieval.bm25 import BM25SRetriever, RankBM25Retriever

    out: dict = {"documents": len(index.chunks), "queries": len(queries), "repeats": repeats}
    builds: dict = {}
    for name, cls in (("bm25s", BM25SRetriever), ("rank-bm25", RankBM25Retriever)):
        times = repeat(lambda c=cls: c(index.chunks), repeats)
        builds[name] = cls(index.chunks)
        out[f"{name}_build_s"] = round(min(times), 3)
        out[f"{name}_build_docs_per_s"] = round(len(index.chunks) / min(times), 1)
    out["build_ratio_bm25s_over_rank_bm25"] = ratio(out["bm25s_build_docs_per_s"], out["rank-bm25_build_docs_per_s"])
    for name, r in builds.items():
        r.search_batch(queries[:5], k=10)  # warm-up
        times = repeat(lambda r=r: r.search_batch(queries, k=10), repeats)
        out[f"{name}_qps"] = round(len(queries) / min(times), 1)
        log(f"  {name}: {out[f'{name}_qps']} q/s over {len(index.chunks)} chunks")
    out["qps_ratio_bm25s_over_rank_bm25"] = ratio(out["bm25s_qps"], out["rank-bm25_qps"])
    # bm25s's own batched top-k (what bm25s benchmarks report), for scale
    b = builds["bm25s"]
    toks = [[t for t in b.tokenizer(q) if t in b._vocab] or [next(iter(b._vocab))] for q in queries]
    b._model.retrieve(toks[:5], k=10, show_progress=False, n_threads=1)
    times = repeat(lambda: b._model.retrieve(toks, k=10, show_progress=False, n_threads=1), repeats)
    out["bm25s_native_batch_qps"] = round(len(queries) / min(times), 1)
    a, c = builds["bm25s"].search_batch(queries, 10), builds["rank-bm25"].search_batch(queries, 10)
    out["top1_agreement"] = round(float(np.mean([bool(x) and bool(y) and x[0].id == y[0].id for x, y in zip(a, c)])), 3)
    return out


def latency(retriever, queries: list[str], k: int = 10, warmup: int = 5) -> tuple[dict, list[list[str]]]:
    for q in queries[:warmup]:
        retriever.search(q, k)
    secs, ids = [], []
    for q in queries:
        dt, hits = timed(lambda q=q: retriever.search(q, k))
        secs.append(dt)
        ids.append([h.id for h in hits])
    return latency_summary(secs), ids


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    return round(float(np.mean([len(set(x) & set(y)) / max(len(y), 1) for x, y in zip(a, b)])), 4)


def dense_vs_qdrant(index, queries: list[str], hybrid_queries: int) -> dict:
    """numpy exact vs embedded Qdrant (dense), and our RRF hybrid vs Qdrant's in-store hybrid."""
    out: dict = {"chunks": len(index.chunks), "queries": len(queries)}
    t, q = timed(lambda: index.retriever("qdrant"))
    out["qdrant_sync_s"] = round(t, 1)
    out["qdrant_sync_points_per_s"] = round(len(index.chunks) / t, 1)
    log(f"  qdrant sync of {len(index.chunks)} points: {t:.1f}s")
    out["numpy"], exact_ids = latency(index.retriever("dense"), queries)
    log(f"  numpy exact p50 {out['numpy']['p50_ms']} ms")
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            out["numpy_1_blas_thread"], _ = latency(index.retriever("dense"), queries)
        log(f"  numpy exact, 1 BLAS thread p50 {out['numpy_1_blas_thread']['p50_ms']} ms")
    except ImportError:
        out["numpy_1_blas_thread"] = None
    out["qdrant"], q_ids = latency(q, queries)
    log(f"  qdrant p50 {out['qdrant']['p50_ms']} ms")
    out["qdrant_top10_overlap_with_exact"] = overlap(q_ids, exact_ids)
    out["p50_ratio_qdrant_over_numpy"] = ratio(out["qdrant"]["p50_ms"], out["numpy"]["p50_ms"], 1)
    hq = queries[:hybrid_queries]
    out["hybrid_queries"] = len(hq)
    out["hybrid_rrf"], _ = latency(index.retriever("hybrid"), hq)
    out["qdrant_hybrid"], _ = latency(index.retriever("qdrant-hybrid"), hq)
    log(f"  hybrid p50 {out['hybrid_rrf']['p50_ms']} ms, qdrant-hybrid p50 {out['qdrant_hybrid']['p50_ms']} ms")
    out["p50_ratio_qdrant_hybrid_over_rrf"] = ratio(out["qdrant_hybrid"]["p50_ms"], out["hybrid_rrf"]["p50_ms"], 1)
    for r in list(index._retrievers.values()):
        getattr(r, "close", lambda: None)()
    index._retrievers.clear()
    return out


# ---- memory probes (run in a fresh interpreter) ------------------------------------------
def probe(kind: str, path: Path, data: Path | None, limit: int | None) -> dict:
    """Runs inside the subprocess: import what the work needs, note RSS, do the work, report."""
    from hoprank.tools.ingest.index import Index

    if kind == "build-hotpot":
        from hoprank.evals.datasets import load_hotpotqa, pooled_corpus
        from hoprank.tools.embeddings import Embedder
        from hoprank.tools.ingest.chunking import ChunkingConfig

        docs = pooled_corpus(load_hotpotqa(data, limit=limit))
        before = current_rss_mb()
        shutil.rmtree(path, ignore_errors=True)
        load_s, _ = timed(lambda: Embedder().encode(["load the model"]))
        build_s, _ = timed(lambda: Index.build(path, documents=docs, chunking=ChunkingConfig(size=2000, overlap=0)))
        what = f"Index.build of {len(docs)} HotpotQA paragraphs (loads MiniLM, encodes, writes)"
        return {
            "probe": kind,
            "what": what,
            "rss_before_work_mb": before,
            "peak_rss_mb": peak_rss_mb(),
            "documents": len(docs),
            "model_load_s": round(load_s, 2),
            "build_s": round(build_s, 2),
        }
    else:
        before = current_rss_mb()
        idx = Index.open(path)
        idx.__dict__["embedder"] = HashEmbedder()
        what = f"Index.open of {len(idx)} chunks + bm25s build + one dense query"
        idx.retriever("bm25").search("kaloru", 10)
        idx.retriever("dense").search("kaloru", 10)
        if kind == "load-20k-qdrant":
            idx.retriever("qdrant").search("kaloru", 10)
            what += " + open the synced embedded Qdrant store (Qdrant Edge) + one query"
    return {"probe": kind, "what": what, "rss_before_work_mb": before, "peak_rss_mb": peak_rss_mb()}


def run_probe(kind: str, path: Path, data: Path | None, limit: int | None) -> dict:
    cmd = [sys.executable, __file__, "--probe", kind, "--probe-path", str(path)]
    if data:
        cmd += ["--probe-data", str(data)]
    if limit:
        cmd += ["--limit", str(limit)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        return {"probe": kind, "error": res.stderr.strip().splitlines()[-1:] or ["failed"]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["increment_mb"] = round(out["peak_rss_mb"] - out["rss_before_work_mb"], 1)
    return out


# ---- main ------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argument_parser(__doc__, DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=None, help="use only the first N HotpotQA questions")
    p.add_argument("--scales", default="1000,20000", help="synthetic corpus sizes")
    p.add_argument(
        "--minilm-up-to",
        type=int,
        default=0,
        help="encode synthetic corpora up to this size with MiniLM (default: random vectors everywhere)",
    )
    p.add_argument("--queries", type=int, default=200, help="synthetic queries per latency measurement")
    p.add_argument("--hybrid-queries", type=int, default=50, help="queries for the (slower) hybrid latency rows")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each throughput measurement (best is reported)")
    p.add_argument("--build-repeats", type=int, default=2, help="repeats of the MiniLM encoding throughput measurement")
    p.add_argument(
        "--encode-docs", type=int, default=200, help="HotpotQA paragraphs in the encoding throughput measurement"
    )
    p.add_argument("--name", default="retrieval_speed")
    p.add_argument(
        "--render-only", action="store_true", help="re-write the .md (and .json) from the saved .json without measuring"
    )
    p.add_argument(
        "--rerun-search",
        action="store_true",
        help="re-measure only the synthetic search rows (numpy, Qdrant, both hybrids) "
        "and the load-20k memory probes, keeping every other row of the saved .json",
    )
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--probe-path", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--probe-data", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.probe_path, args.probe_data, args.limit)))
        return 0
    if args.render_only:
        _, env, res = read_results(args.name)
        write(args, env, data_file(args.data), res, sorted(int(n) for n in res["synthetic"]))
        return 0
    if args.rerun_search:
        return rerun_search(args)
    from hoprank.evals.datasets import load_hotpotqa, pooled_corpus
    from hoprank.tools.embeddings import Embedder
    from hoprank.tools.ingest.index import Index, _embed_text

    env = environment()
    path = data_file(args.data)
    scales = sorted(int(s) for s in args.scales.split(",") if s.strip())
    work = Path(tempfile.mkdtemp(prefix="hoprank-speed-"))
    results: dict = {}
    t_start = time.perf_counter()
    try:
        # 1. HotpotQA pooled corpus: build, encode, BM25
        examples = load_hotpotqa(path, limit=args.limit)
        docs = pooled_corpus(examples)
        questions = [e.question for e in examples]
        log(f"HotpotQA pooled: {len(docs)} paragraphs, {len(questions)} questions")
        # the build runs in a fresh interpreter, so its peak memory is its own
        mem_build = run_probe("build-hotpot", work / "hotpot", path, args.limit)
        if "error" in mem_build:
            raise RuntimeError(f"HotpotQA index build failed: {mem_build['error']}")
        build_s = mem_build["build_s"]
        log(f"  build: {build_s:.1f}s (model load {mem_build['model_load_s']}s, not included)")
        hp_index = Index.open(work / "hotpot")
        embedder = Embedder()
        embedder.encode(["warm up the model"])
        texts = [_embed_text(c) for c in hp_index.chunks][: args.encode_docs]
        enc_times = repeat(lambda: embedder.encode(texts), args.build_repeats)
        q_enc = [timed(lambda q=q: embedder.encode([q]))[0] for q in questions]
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a single short query gains nothing from a second (busy) core
        q_enc_1 = [timed(lambda q=q: embedder.encode([q]))[0] for q in questions]
        torch.set_num_threads(threads)
        results["hotpot_build"] = {
            "documents": len(docs),
            "chunks": len(hp_index.chunks),
            "runs": 1,
            "build_s": build_s,
            "model_load_s": mem_build["model_load_s"],
            "build_docs_per_s": round(len(docs) / build_s, 1),
            "encode_docs": len(texts),
            "encode_runs": args.build_repeats,
            "encode_docs_per_s": round(len(texts) / min(enc_times), 1),
            "query_encode": latency_summary(q_enc),
            "torch_threads": threads,
            "query_encode_1_torch_thread": latency_summary(q_enc_1),
        }
        results["hotpot_build"]["encode_share_of_build"] = round(
            (len(docs) / results["hotpot_build"]["encode_docs_per_s"]) / build_s, 2
        )
        log(
            f"  build {results['hotpot_build']['build_docs_per_s']} docs/s, encode "
            f"{results['hotpot_build']['encode_docs_per_s']} docs/s"
        )
        results["hotpot_bm25"] = bm25_build_and_qps(hp_index, questions, args.repeats)

        # 2. synthetic corpora
        synth = synthetic_corpus(max(scales))
        syn_queries = synthetic_queries(synth, args.queries)
        results["synthetic"] = {}
        for n in scales:
            fake = n > args.minilm_up_to
            sub = synth[:n]
            log(f"synthetic {n}: building ({'random vectors' if fake else 'MiniLM'})")
            dt, (idx, _) = timed(lambda sub=sub, n=n, fake=fake: build_index(work / f"syn{n}", sub, fake_vectors=fake))
            res: dict = {
                "documents": n,
                "vectors": "random unit vectors (encoding skipped)" if fake else "MiniLM",
                "build_s": round(dt, 2),
                "build_docs_per_s": round(n / dt, 1),
                "build_measures": "chunk + write (no encoding)" if fake else "chunk + embed + write",
            }
            qs = syn_queries if fake else synthetic_queries(sub, args.queries)
            qvec = HashEmbedder().encode(qs) if fake else embedder.encode(qs)
            idx.__dict__["embedder"] = LookupEmbedder(dict(zip(qs, qvec)))
            res["search"] = dense_vs_qdrant(idx, qs, args.hybrid_queries)
            if n == max(scales):
                log(f"synthetic {n}: BM25 build and queries/s")
                res["bm25"] = bm25_build_and_qps(idx, qs, args.repeats)
            results["synthetic"][str(n)] = res

        # 3. memory, each probe in a fresh interpreter
        log("memory probes")
        big = work / f"syn{max(scales)}"
        results["memory"] = [
            mem_build,
            run_probe("load-20k", big, None, None),
            run_probe("load-20k-qdrant", big, None, None),
        ]
        for m in results["memory"]:
            log(f"  {m}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    write(args, env, path, results, scales)
    log(f"done in {results['total_s']}s; wrote {RESULTS_DIR / (args.name + '.md')}")
    return 0


def rerun_search(args) -> int:
    """Re-measure the rows a retriever change affects (the synthetic search rows, side by
    side as before, and the load-20k memory probes) into the saved results. The rows they
    replace are kept under ``*_previous`` keys, so the old figures stay comparable."""
    _, env, results = read_results(args.name)
    now = environment(tuple(env["packages"]) + ("qdrant-edge-py",))
    scales = sorted(int(n) for n in results["synthetic"])
    work = Path(tempfile.mkdtemp(prefix="hoprank-speed-"))
    t0 = time.perf_counter()
    try:
        synth = synthetic_corpus(max(scales))
        syn_queries = synthetic_queries(synth, args.queries)
        for n in scales:
            log(f"synthetic {n}: building (random vectors)")
            idx, _ = build_index(work / f"syn{n}", synth[:n], fake_vectors=True)
            idx.__dict__["embedder"] = LookupEmbedder(dict(zip(syn_queries, HashEmbedder().encode(syn_queries))))
            res = results["synthetic"][str(n)]
            res.setdefault("search_previous", res["search"])
            res["search"] = dense_vs_qdrant(idx, syn_queries, args.hybrid_queries)
        big = work / f"syn{max(scales)}"
        results.setdefault("memory_previous", results["memory"])
        fresh = {
            m["probe"]: m
            for m in (run_probe("load-20k", big, None, None), run_probe("load-20k-qdrant", big, None, None))
        }
        results["memory"] = [fresh.get(m["probe"], m) for m in results["memory"]]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["search_rerun"] = {
        "date": now["date"],
        "load_average_at_start": now["load_average_at_start"],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "packages": now["packages"],
        "total_s": round(time.perf_counter() - t0, 1),
        "previous_date": env["date"],
    }
    env["packages"] = {**env["packages"], **{k: v for k, v in now["packages"].items() if k.startswith("qdrant")}}
    write(args, env, data_file(args.data), results, scales)
    log(f"search rows re-measured in {results['search_rerun']['total_s']}s; wrote {RESULTS_DIR / (args.name + '.md')}")
    return 0


def write(args, env, path: Path, results: dict, scales: list[int]) -> None:
    hb, hq = results["hotpot_build"], results["hotpot_bm25"]
    big = str(max(scales))
    sections = []
    build_rows = [
        [
            "HotpotQA pooled paragraphs",
            hb["documents"],
            "chunk + embed (MiniLM) + write",
            f"{hb['build_s']:.1f}",
            hb["build_docs_per_s"],
            hb["runs"],
        ]
    ]
    for n in scales:
        s = results["synthetic"][str(n)]
        build_rows.append([f"synthetic {n}", n, s["build_measures"], f"{s['build_s']:.1f}", s["build_docs_per_s"], 1])
    sections.append(
        ("Index build", markdown_table(["corpus", "documents", "measures", "s", "docs/s", "runs"], build_rows, 1))
    )
    bm_rows = []
    for label, b in (("HotpotQA pooled", hq), (f"synthetic {big}", results["synthetic"][big].get("bm25"))):
        if b:
            bm_rows.append(
                [
                    label,
                    b["documents"],
                    b["queries"],
                    b["bm25s_build_docs_per_s"],
                    b["rank-bm25_build_docs_per_s"],
                    b["build_ratio_bm25s_over_rank_bm25"],
                    b["bm25s_qps"],
                    b["rank-bm25_qps"],
                    b["qps_ratio_bm25s_over_rank_bm25"],
                    b["bm25s_native_batch_qps"],
                    b["top1_agreement"],
                ]
            )
    sections.append(
        (
            "BM25: bm25s vs rank-bm25 (same tokeniser, corpus and queries)",
            markdown_table(
                [
                    "corpus",
                    "docs",
                    "queries",
                    "build docs/s bm25s",
                    "build docs/s rank-bm25",
                    "build ratio",
                    "q/s bm25s",
                    "q/s rank-bm25",
                    "q/s ratio",
                    "q/s bm25s native batch",
                    "top-1 agreement",
                ],
                bm_rows,
                1,
            ),
        )
    )
    qe = hb["query_encode"]
    sections.append(
        (
            "Dense encoding (all-MiniLM-L6-v2, CPU)",
            markdown_table(
                ["what", "figure"],
                [
                    [
                        (
                            f"HotpotQA paragraphs encoded per s (batch 64, first {hb['encode_docs']}, best of "
                            f"{hb['encode_runs']})"
                        ),
                        hb["encode_docs_per_s"],
                    ],
                    ["estimated share of the index build spent encoding", hb["encode_share_of_build"]],
                    ["model load (once per process, not in the build figure) s", hb["model_load_s"]],
                    [
                        f"one query, torch default ({hb['torch_threads']} threads): p50 / p95 ms",
                        f"{qe['p50_ms']:.1f} / {qe['p95_ms']:.1f}",
                    ],
                    [
                        "one query, torch 1 thread: p50 / p95 ms",
                        (
                            f"{hb['query_encode_1_torch_thread']['p50_ms']:.1f} / "
                            f"{hb['query_encode_1_torch_thread']['p95_ms']:.1f}"
                        ),
                    ],
                ],
                2,
            ),
        )
    )
    lat_rows = []
    for n in scales:
        s = results["synthetic"][str(n)]["search"]
        one = s.get("numpy_1_blas_thread")
        lat_rows.append(
            [
                n,
                results["synthetic"][str(n)]["vectors"],
                s["queries"],
                f"{s['numpy']['p50_ms']:.2f} / {s['numpy']['p95_ms']:.2f}",
                f"{one['p50_ms']:.2f} / {one['p95_ms']:.2f}" if one else None,
                f"{s['qdrant']['p50_ms']:.2f} / {s['qdrant']['p95_ms']:.2f}",
                s["p50_ratio_qdrant_over_numpy"],
                s["qdrant_top10_overlap_with_exact"],
                f"{s['hybrid_rrf']['p50_ms']:.2f} / {s['hybrid_rrf']['p95_ms']:.2f}",
                f"{s['qdrant_hybrid']['p50_ms']:.2f} / {s['qdrant_hybrid']['p95_ms']:.2f}",
                s["p50_ratio_qdrant_hybrid_over_rrf"],
                s["qdrant_sync_s"],
            ]
        )
    sections.append(
        (
            "Query latency, search only (p50 / p95 ms, k=10, one query per call)",
            markdown_table(
                [
                    "chunks",
                    "vectors",
                    "queries",
                    "numpy exact",
                    "numpy exact, 1 BLAS thread",
                    "Qdrant embedded",
                    "p50 ratio Qdrant/numpy",
                    "Qdrant top-10 = exact",
                    "hybrid RRF (bm25s + numpy)",
                    "qdrant-hybrid",
                    "p50 ratio",
                    "Qdrant sync s",
                ],
                lat_rows,
                2,
            ),
        )
    )
    prev_rows = []
    for n in scales:
        s, old = results["synthetic"][str(n)]["search"], results["synthetic"][str(n)].get("search_previous")
        if old:
            prev_rows.append(
                [
                    n,
                    old["qdrant_sync_s"],
                    s["qdrant_sync_s"],
                    ratio(old["qdrant_sync_s"], s["qdrant_sync_s"], 1),
                    old["qdrant"]["p50_ms"],
                    s["qdrant"]["p50_ms"],
                    old["qdrant_hybrid"]["p50_ms"],
                    s["qdrant_hybrid"]["p50_ms"],
                ]
            )
    if prev_rows:
        rr = results["search_rerun"]
        sections.append(
            (
                (
                    f"Embedded Qdrant before and after: qdrant-client local mode ({rr['previous_date'][:10]}) vs "
                    f"Qdrant Edge ({rr['date'][:10]})"
                ),
                markdown_table(
                    [
                        "chunks",
                        "local mode sync s",
                        "Edge sync s",
                        "sync speed-up",
                        "local mode p50 ms",
                        "Edge p50 ms",
                        "local mode hybrid p50 ms",
                        "Edge hybrid p50 ms",
                    ],
                    prev_rows,
                    2,
                ),
            )
        )
    mem_rows = [
        [
            m["probe"],
            m.get("what", m.get("error")),
            m.get("rss_before_work_mb"),
            m.get("peak_rss_mb"),
            m.get("increment_mb"),
        ]
        for m in results["memory"]
    ]
    sections.append(
        (
            "Peak memory (RSS, fresh process per probe)",
            markdown_table(["probe", "work", "RSS before work MB", "peak RSS MB", "increment MB"], mem_rows, 1),
        )
    )
    notes = [
        (
            f"All measurements in one process and one run (total {results['total_s']} s), so every row shares the same "
            "machine load."
        ),
        (
            f"Throughput rows: best of {args.repeats} repeats after a warm-up on 5 queries. HotpotQA index build: one "
            "fresh build in its own process, model load timed apart; encoding throughput: best of "
            f"{args.build_repeats} on the first {args.encode_docs} paragraphs. Latency rows: every query timed once "
            f"after 5 warm-up queries ({args.queries} synthetic queries of 4 words; hybrid rows {args.hybrid_queries})."
        ),
        "Synthetic corpus: pseudo-words from an 8000-word Zipf vocabulary, 50-150 words per document, one chunk per "
        "document. "
        + (
            "Synthetic indexes use random unit vectors"
            if not args.minilm_up_to
            else f"Synthetic indexes up to {args.minilm_up_to} chunks use MiniLM; larger ones use random unit vectors"
        )
        + " instead of MiniLM embeddings (exact search cost does not depend on the values; MiniLM encodes these texts "
        "at a few documents/s on the shared cores), so their build rows measure chunking + writing only.",
        (
            "Latency is search only: query vectors are computed before the clock starts (see the dense encoding table "
            "for the query encoding cost to add). Qdrant runs embedded: Qdrant Edge (qdrant-edge-py, the Rust engine "
            "in process) since the search rows' re-run, qdrant-client's pure-Python local mode before. Its sync = "
            "tokenise + upsert + flush/optimize (the HNSW graph is built for segments above the full-scan threshold, "
            "here the 20k index); on random vectors HNSW recall is at its worst (see benchmarks/results/scale.md for "
            "the ef sweep and real vectors)."
        ),
        (
            "'numpy exact' is hoprank's dense retriever as shipped (OpenBLAS picks its own thread count); the '1 BLAS "
            "thread' column is the same code under threadpoolctl.threadpool_limits(1): on a loaded 2-core machine a "
            "multi-threaded matrix-vector product waits for a second core and gets far slower."
        ),
        (
            "q/s bm25s / rank-bm25 are hoprank's retrievers (per-query scoring + top-k); 'bm25s native batch' is "
            "bm25s's own batched retrieve(), single thread, for scale."
        ),
        (
            "Peak memory: VmHWM (peak RSS) of a fresh interpreter; 'before work' is its RSS after imports, so "
            "'increment' is what the work itself added."
        ),
    ]
    rr = results.get("search_rerun")
    if rr:
        notes.insert(
            0,
            (
                f"Partial re-run on {rr['date']} (`--rerun-search`, {rr['total_s']} s, load average "
                f"{rr['load_average_at_start'][0]:.1f} at start, {rr['load_average_at_end'][0]:.1f} at end): the query "
                "latency table and the load-20k memory probes; every other row is from the full run of "
                f"{rr['previous_date']}. The replaced figures are kept in the .json (search_previous, memory_previous)."
            ),
        )
    loads = [x for x in (env.get("load_average_at_start") or [])[:1] + (env.get("load_average_at_end") or [])[:3]]
    if loads and max(loads) > env["cpu_count"]:
        notes.insert(
            0,
            (
                f"The machine was shared while this ran: load average {min(loads):.0f}-{max(loads):.0f} on "
                f"{env['cpu_count']} cores. Absolute times are several times slower than on an idle machine (the whole "
                f"run took {results['total_s'] / 60:.0f} min instead of the ~10 planned); compare rows measured back "
                "to back (the ratios), not absolute figures across runs."
            ),
        )
    write_results(
        args.name,
        results,
        sections,
        env=env,
        runs=(
            f"1 run; throughput best of {args.repeats} repeats; HotpotQA index build 1 fresh build; encoding best of "
            f"{args.build_repeats}; latency per query over {args.queries} queries"
        ),
        data=[path, f"synthetic corpus (seed {SEED}, {max(scales)} documents)"],
        command="python benchmarks/retrieval_speed.py" + (f" --limit {args.limit}" if args.limit else ""),
        notes=notes,
    )


if __name__ == "__main__":
    sys.exit(main())
