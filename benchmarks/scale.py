"""Scale benchmark: bm25s, numpy exact search, Qdrant Edge (HNSW and in-engine hybrid) and
hoprank's own RRF hybrid at 10k, 100k and 1M chunks.

Each contender runs in its own fresh interpreter (a "probe"), so the peak RSS it reports
(VmHWM) is its own; the contenders of one scale run back to back in one run, so they share
the machine's load (the load average is recorded). Per contender and scale: build or
upsert time, disk size, query latency p50/p95 one query per call and in batches, peak RSS,
and for Qdrant Edge recall@10 against numpy's exact top-10 over a sweep of HNSW ``ef``.

Data (``synthetic``): random unit 384-d vectors (engine timing; exact search costs the same
whatever the numbers are, and random vectors are the hardest case for HNSW recall: no
neighbourhood structure) and, for the lexical side, documents of 50-150 pseudo-words drawn
from a Zipf vocabulary (token ids; bm25s and the Edge sparse vectors index the same ids).
Queries: random unit vectors and 4 words of a random document.

Data (``real``, ``--real N``): N real texts encoded with a hoprank encoder (``--encoder``):
HotpotQA context sentences, paragraphs and sentence pairs plus MultiHop-RAG evidence facts
from ../shared/data, topped up with word-dropped copies of those texts when there are fewer
than N; queries are the real HotpotQA and MultiHop-RAG questions. This is the recall figure
that reflects real embeddings.

Data (``realcov``, ``--cov-scales``): vectors drawn from a Gaussian with the mean and
covariance of the ``real`` vectors (the anisotropy of real embeddings at any size, none of
their duplicates), queried with the real question vectors; lexical side as ``synthetic``.
This is how recall is measured at 100k and 1M, where no real corpus of that size is at hand.

Qdrant Edge is driven through hoprank's own store code (``EdgeStore``, ``edge_config``,
``QuerySpec``), so the figures are those of the ``qdrant`` / ``qdrant-hybrid`` retrievers
minus query encoding and chunk lookups.

    .venv/bin/python benchmarks/scale.py [--scales 10000,100000] [--real 10000] [--cov-scales 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    RESULTS_DIR,
    current_rss_mb,
    data_file,
    environment,
    latency_summary,
    log,
    markdown_table,
    peak_rss_mb,
    ratio,
    read_results,
    write_results,
)

DIM = 384
SEED = 13
K = 10
PACKAGES = ("hoprank", "numpy", "bm25s", "qdrant-edge-py", "qdrant-client", "sentence-transformers", "torch")
CONTENDERS = ("numpy", "bm25s", "edge", "edge-serve", "rrf")


def dir_mb(path: Path) -> float:
    """Disk actually allocated (Edge preallocates sparse 32 MB WAL and storage files: their
    apparent size overstates what they take)."""
    return round(sum(f.stat().st_blocks * 512 for f in Path(path).rglob("*") if f.is_file()) / 2**20, 1)


# ---- data --------------------------------------------------------------------------------
def make_synthetic(d: Path, n: int, n_queries: int, vocab: int, seed: int = SEED, like: Path | None = None) -> None:
    """Vectors, token ids and queries of one synthetic corpus, written as .npy files (the
    probes memory-map them). Deterministic for a seed; 1M chunks take ~1.5 GB of vectors.

    ``like``: a corpus of real vectors; the synthetic vectors are then drawn from a Gaussian
    with its mean and covariance (the anisotropy of real embeddings, none of the duplicates)
    and the queries are its real query vectors. Otherwise vectors and queries are random unit."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mean = basis = None
    if like is not None:
        real = np.load(like / "vectors.npy").astype(np.float64)
        mean = real.mean(axis=0)
        _, sv, vt = np.linalg.svd(real - mean, full_matrices=False)
        basis = (sv[:, None] / np.sqrt(len(real) - 1)) * vt  # rows: principal axes scaled by their std
    x = np.lib.format.open_memmap(d / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    for s in range(0, n, 100_000):
        block = rng.standard_normal((min(n, s + 100_000) - s, DIM))
        if basis is not None:
            block = mean + block @ basis
        block = block.astype(np.float32)
        x[s : s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    x.flush()
    del x
    lens = rng.integers(50, 151, size=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    p = 1.0 / np.arange(1, vocab + 1) ** 1.07
    p /= p.sum()
    tokens = np.empty(int(offsets[-1]), dtype=np.int32)
    for s in range(0, len(tokens), 20_000_000):  # in blocks: rng.choice's temporaries are 8 bytes/token
        e = min(len(tokens), s + 20_000_000)
        tokens[s:e] = rng.choice(vocab, size=e - s, p=p)
    np.save(d / "tokens.npy", tokens)
    np.save(d / "offsets.npy", offsets)
    if like is not None:
        q = np.load(like / "queries.npy")[:n_queries].astype(np.float32)
        n_queries = len(q)
    else:
        q = rng.standard_normal((n_queries, DIM)).astype(np.float32)
    np.save(d / "queries.npy", q / np.linalg.norm(q, axis=1, keepdims=True))
    qt = []
    for _ in range(n_queries):
        i = int(rng.integers(n))
        doc = tokens[offsets[i] : offsets[i + 1]]
        qt.append(rng.choice(doc, size=4, replace=False).tolist())
    source = f"synthetic, vectors with the covariance of {like.name}" if like is not None else "synthetic"
    (d / "query_tokens.json").write_text(json.dumps({"queries": qt, "vocab": vocab, "source": source}))


def real_texts(n: int, seed: int = SEED) -> tuple[list[str], list[str], dict[str, int]]:
    """Up to n real texts and the real questions from ../shared/data (see the module doc)."""
    hp = json.loads(data_file("hotpotqa/hotpot_dev_distractor_sample60.hf.json").read_text())
    mh = json.loads(data_file("multihop-rag/multihoprag_queries_sample300.json").read_text())
    texts: list[str] = []
    seen: set[str] = set()

    def add(t: str) -> None:
        t = " ".join(t.split())
        if len(t) > 20 and t not in seen:
            seen.add(t)
            texts.append(t)

    for ex in hp:
        for title, sents in zip(ex["context"]["title"], ex["context"]["sentences"]):
            add(f"{title}: {' '.join(sents)}")
            for s in sents:
                add(s)
            for a, b in zip(sents, sents[1:]):
                add(f"{a} {b}")
    for q in mh:
        for ev in q["evidence_list"]:
            add(ev["fact"])
            add(f"{ev['title']}: {ev['fact']}")
    counts = {"original": len(texts)}
    rng = np.random.default_rng(seed)
    base = list(texts)
    while len(texts) < n:  # word-dropped copies: near-duplicates, as a corpus of revisions has
        words = base[int(rng.integers(len(base)))].split()
        keep = [w for w in words if rng.random() > 0.2] or words
        add(" ".join(keep))
    counts["perturbed"] = max(0, min(n, len(texts)) - counts["original"])
    questions = [ex["question"] for ex in hp] + [q["query"] for q in mh]
    return texts[:n], questions, counts


def make_real(d: Path, n: int, n_queries: int, encoder: str | None = None) -> dict[str, Any]:
    """Real texts encoded once with a hoprank encoder (default: hoprank's default); cached in the work folder."""
    from hoprank.tools.embeddings import Embedder
    from hoprank.tools.retrieval.tokenize import Tokenizer

    d.mkdir(parents=True, exist_ok=True)
    texts, questions, counts = real_texts(n)
    questions = questions[:n_queries]
    emb = Embedder(encoder)
    t0 = time.perf_counter()
    encode_docs = getattr(emb, "encode_passages", emb.encode)
    x = np.asarray(encode_docs(texts), dtype=np.float32)
    encode_s = time.perf_counter() - t0
    q = np.asarray(getattr(emb, "encode_queries", emb.encode)(questions), dtype=np.float32)
    np.save(d / "vectors.npy", x)
    np.save(d / "queries.npy", q)
    tok = Tokenizer()
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in tok(t)] or [vocab.setdefault("", len(vocab))] for t in texts]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([len(i) for i in ids], out=offsets[1:])
    np.save(d / "tokens.npy", np.asarray([t for i in ids for t in i], dtype=np.int32))
    np.save(d / "offsets.npy", offsets)
    qt = [[vocab[t] for t in tok(qs) if t in vocab] for qs in questions]
    model = getattr(emb, "model_name", None) or getattr(emb, "name", None) or repr(emb)
    meta = {
        "queries": qt,
        "vocab": len(vocab),
        "source": "real",
        "texts": counts,
        "encoder": str(model),
        "encode_s": round(encode_s, 1),
        "encode_texts_per_s": round(len(texts) / encode_s, 1),
    }
    (d / "query_tokens.json").write_text(json.dumps(meta))
    return {k: v for k, v in meta.items() if k != "queries"}


class Data:
    """One corpus as the probes see it: memory-mapped vectors, token ids, queries."""

    def __init__(self, d: Path):
        self.dir = d
        self.vectors = np.load(d / "vectors.npy", mmap_mode="r")
        self.tokens = np.load(d / "tokens.npy", mmap_mode="r")
        self.offsets = np.load(d / "offsets.npy")
        meta = json.loads((d / "query_tokens.json").read_text())
        self.query_tokens: list[list[int]] = meta["queries"]
        self.vocab = int(meta["vocab"])
        self.queries = np.load(d / "queries.npy")
        self.n = int(self.vectors.shape[0])

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]


# ---- probes (each in a fresh interpreter) ------------------------------------------------
def time_each(fn, items, warmup: int = 3) -> tuple[dict, list]:
    for it in items[:warmup]:
        fn(it)
    secs, outs = [], []
    for it in items:
        t0 = time.perf_counter()
        outs.append(fn(it))
        secs.append(time.perf_counter() - t0)
    return latency_summary(secs), outs


def time_batches(fn, items, batch: int) -> dict:
    """Seconds per batch call and per query inside it (one warm-up batch first)."""
    fn(items[:batch])
    secs = []
    for s in range(0, len(items), batch):
        t0 = time.perf_counter()
        fn(items[s : s + batch])
        secs.append(time.perf_counter() - t0)
    out = latency_summary(secs)
    out["batch"] = batch
    out["per_query_ms"] = round(sum(secs) * 1000 / len(items), 3)
    return out


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    s = x @ q
    idx = np.argpartition(-s, k - 1)[:k]
    return idx[np.argsort(-s[idx])].tolist()


def probe_numpy(data: Data, args: argparse.Namespace) -> dict:
    """hoprank's dense retriever in essence: a memory-mapped matrix times the query vector."""
    from threadpoolctl import threadpool_limits

    x, qs = data.vectors, data.queries
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    gt = np.empty((len(qs), K), dtype=np.int64)
    for s in range(0, len(qs), args.batch):  # exact top-10 of every query: the recall reference
        scores = np.asarray(x @ qs[s : s + args.batch].T)
        for j in range(scores.shape[1]):
            idx = np.argpartition(-scores[:, j], K - 1)[:K]
            gt[s + j] = idx[np.argsort(-scores[idx, j])]
    np.save(data.dir / "exact_top10.npy", gt)
    out["ground_truth_s"] = round(time.perf_counter() - t0, 2)
    single = qs[: args.queries]
    out["single"], _ = time_each(lambda q: exact_top(x, q, K), single)
    with threadpool_limits(1, user_api="blas"):
        out["single_1_blas_thread"], _ = time_each(lambda q: exact_top(x, q, K), single)

    def batch(qb: np.ndarray) -> None:
        scores = np.asarray(x @ qb.T)
        for j in range(scores.shape[1]):
            np.argpartition(-scores[:, j], K - 1)[:K]

    out["batched"] = time_batches(batch, qs, args.batch)
    out["disk_mb"] = round(os.path.getsize(data.dir / "vectors.npy") / 2**20, 1)
    out["build_s"] = 0.0
    out["build_what"] = "none (the index's embeddings.npy, memory-mapped)"
    return out


def probe_bm25s(data: Data, args: argparse.Namespace) -> dict:
    """bm25s built from token ids (what hoprank's bm25 retriever feeds it), saved, timed."""
    import bm25s
    from bm25s.tokenization import Tokenized

    out: dict[str, Any] = {}
    vocab = {str(i): i for i in range(data.vocab)}
    t0 = time.perf_counter()
    ids = [data.doc(i).tolist() for i in range(data.n)]
    model = bm25s.BM25(k1=1.5, b=0.75)
    model.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)
    out["build_s"] = round(time.perf_counter() - t0, 2)
    out["build_what"] = "bm25s index from token ids (tokenising text comes on top)"
    del ids
    save = data.dir / "bm25s"
    shutil.rmtree(save, ignore_errors=True)
    model.save(str(save), show_progress=False)
    out["disk_mb"] = dir_mb(save)
    queries = [[str(t) for t in q] or ["0"] for q in data.query_tokens]

    def single(q: list[str]) -> list[int]:  # hoprank's BM25SRetriever: all scores, then top-k
        s = np.asarray(model.get_scores(q), dtype=np.float32)
        idx = np.argpartition(-s, K - 1)[:K]
        return idx[np.argsort(-s[idx])].tolist()

    out["single"], _ = time_each(single, queries[: args.queries])
    out["batched"] = time_batches(
        lambda qb: model.retrieve(qb, k=K, show_progress=False, n_threads=1), queries, args.batch
    )
    out["batched_what"] = "bm25s.retrieve(batch, n_threads=1)"
    return out


def sparse_rows(data: Data, start: int, stop: int, avgdl: float) -> list[tuple[list[int], list[float]]]:
    """BM25 document weights per token id: hoprank's sparse_doc_vector formula (K1, B) on ids."""
    from hoprank.tools.retrieval.qdrant import K1, B

    rows = []
    for i in range(start, stop):
        ids, tf = np.unique(data.doc(i), return_counts=True)
        norm = K1 * (1 - B + B * int(tf.sum()) / avgdl)
        rows.append((ids.tolist(), (tf * (K1 + 1) / (tf + norm)).tolist()))
    return rows


def edge_specs(data: Data, mode: str, ef: int | None, depth: int = 50) -> list:
    from hoprank.tools.retrieval.qdrant_store import QuerySpec

    specs = []
    for qv, qt in zip(data.queries, data.query_tokens):
        sparse = (sorted(set(qt)), [1.0] * len(set(qt)))
        specs.append(
            QuerySpec(mode, K, dense=qv.tolist(), sparse=sparse if mode != "dense" else None, depth=depth, ef=ef)
        )
    return specs


def edge_queries(store: Any, data: Data, args: argparse.Namespace, out: dict) -> None:
    """Dense queries over the ef sweep (latency + recall@10), then the hybrid, single and batched."""
    gt = np.load(data.dir / "exact_top10.npy")
    n_single = args.queries
    sweep = []
    for ef in [int(e) for e in args.efs.split(",")]:
        specs = edge_specs(data, "dense", ef)
        lat, res = time_each(lambda s: store.query([s])[0], specs[:n_single])
        rec = float(np.mean([len({int(c[1:]) for c, _ in r} & set(gt[j].tolist())) / K for j, r in enumerate(res)]))
        sweep.append({"ef": ef, **lat, "recall_at_10": round(rec, 4)})
        log(f"    ef {ef}: p50 {lat['p50_ms']} ms, recall@10 {rec:.3f}")
    out["ef_sweep"] = sweep
    ok = [s for s in sweep if s["recall_at_10"] >= args.target_recall]
    chosen = min(ok, key=lambda s: s["p50_ms"]) if ok else max(sweep, key=lambda s: s["recall_at_10"])
    out["chosen_ef"] = chosen["ef"]
    out["single"] = {k: chosen[k] for k in ("n", "p50_ms", "p95_ms", "mean_ms")}
    out["recall_at_10"] = chosen["recall_at_10"]
    specs = edge_specs(data, "dense", chosen["ef"])
    out["batched"] = time_batches(lambda b: store.query(b), specs, args.batch)
    hspecs = edge_specs(data, "hybrid", chosen["ef"])
    out["hybrid_single"], _ = time_each(lambda s: store.query([s])[0], hspecs[:n_single])
    out["hybrid_batched"] = time_batches(lambda b: store.query(b), hspecs, args.batch)


def probe_edge(data: Data, args: argparse.Namespace) -> dict:
    """Build a Qdrant Edge shard the way hoprank's sync does (EdgeStore, PointRow batches of
    1024, dense + sparse BM25 per point), then optimize (HNSW) and query."""
    from hoprank.tools.retrieval.qdrant import point_id
    from hoprank.tools.retrieval.qdrant_store import EdgeStore, HnswParams, PointRow

    out: dict[str, Any] = {"m": args.m, "ef_construct": args.ef_construct}
    path = data.dir / f"edge-m{args.m}-efc{args.ef_construct}"
    shutil.rmtree(path, ignore_errors=True)
    store = EdgeStore(path, HnswParams(m=args.m, ef_construct=args.ef_construct))
    store.ensure_collection(DIM)
    avgdl = float(np.diff(data.offsets).mean())
    prep = upsert = 0.0
    for s in range(0, data.n, 1024):
        e = min(data.n, s + 1024)
        t0 = time.perf_counter()
        vecs = np.asarray(data.vectors[s:e]).tolist()
        rows = [
            PointRow(point_id(f"c{i}"), v, sp, {"chunk_id": f"c{i}"})
            for i, v, sp in zip(range(s, e), vecs, sparse_rows(data, s, e, avgdl))
        ]
        t1 = time.perf_counter()
        store.upsert(rows)
        prep += t1 - t0
        upsert += time.perf_counter() - t1
    out["prepare_points_s"] = round(prep, 2)
    out["upsert_s"] = round(upsert, 2)
    log(f"    upsert {upsert:.1f}s (+ {prep:.1f}s building points in Python)")
    t0 = time.perf_counter()
    store.finish()
    out["optimize_s"] = round(time.perf_counter() - t0, 2)
    info = store.shard.info()
    out["segments"], out["indexed_vectors"] = info.segments_count, info.indexed_vectors_count
    out["build_s"] = round(prep + upsert + out["optimize_s"], 2)
    out["build_what"] = "points built in Python + upsert + flush/optimize (HNSW graph)"
    log(f"    optimize (HNSW build) {out['optimize_s']}s; {out['indexed_vectors']} vectors indexed")
    out["disk_mb"] = dir_mb(path)
    out["rss_after_build_mb"] = current_rss_mb()
    edge_queries(store, data, args, out)
    store.close()
    (data.dir / "edge_path.txt").write_text(str(path))
    return out


def probe_edge_serve(data: Data, args: argparse.Namespace) -> dict:
    """The memory a serving process needs: open the built shard fresh and query it."""
    from hoprank.tools.retrieval.qdrant_store import EdgeStore, HnswParams

    path = Path((data.dir / "edge_path.txt").read_text())
    t0 = time.perf_counter()
    store = EdgeStore(path, HnswParams(m=args.m, ef_construct=args.ef_construct))
    out: dict[str, Any] = {"open_s": round(time.perf_counter() - t0, 2)}
    ef = int(args.serve_ef) if args.serve_ef else None
    specs = edge_specs(data, "hybrid", ef)
    out["hybrid_single"], _ = time_each(lambda s: store.query([s])[0], specs[: args.queries])
    store.close()
    return out


def probe_rrf(data: Data, args: argparse.Namespace) -> dict:
    """hoprank's own hybrid: bm25s top-50 and numpy top-50 fused by hoprank's rrf (k=60).
    bm25s is loaded memory-mapped from the bm25s probe's saved index."""
    import bm25s

    from hoprank.tools.retrieval.fusion import rrf
    from hoprank.tools.types import Hit

    t0 = time.perf_counter()
    model = bm25s.BM25.load(str(data.dir / "bm25s"), mmap=True, show_progress=False)
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - t0, 2)}
    x = data.vectors
    depth = 50

    def top(s: np.ndarray, k: int) -> list[int]:
        idx = np.argpartition(-s, k - 1)[:k]
        return idx[np.argsort(-s[idx])].tolist()

    def hits(ids: list[int], scores: np.ndarray) -> list[Hit]:
        return [Hit(id=f"c{i}", score=float(scores[i]), text="", rank=r + 1) for r, i in enumerate(ids)]

    def one(j: int) -> list[Hit]:
        lex = np.asarray(model.get_scores([str(t) for t in data.query_tokens[j]] or ["0"]), dtype=np.float32)
        dense = np.asarray(x @ data.queries[j])
        return rrf([hits(top(lex, depth), lex), hits(top(dense, depth), dense)], 60, top_k=K)

    js = list(range(min(args.queries, len(data.queries))))
    out["single"], _ = time_each(one, js)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        out["single_1_blas_thread"], _ = time_each(one, js)
    return out


PROBES = {
    "numpy": probe_numpy,
    "bm25s": probe_bm25s,
    "edge": probe_edge,
    "edge-serve": probe_edge_serve,
    "rrf": probe_rrf,
}


def run_probe(name: str, d: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--probe",
        name,
        "--probe-dir",
        str(d),
        "--queries",
        str(args.queries),
        "--batch",
        str(args.batch),
        "--efs",
        args.efs,
        "--m",
        str(args.m),
        "--ef-construct",
        str(args.ef_construct),
        "--target-recall",
        str(args.target_recall),
    ]
    if args.serve_ef:
        cmd += ["--serve-ef", str(args.serve_ef)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.probe_timeout)
    if res.returncode != 0:
        return {"error": f"probe exited with {res.returncode}", "wall_s": round(time.perf_counter() - t0, 1)}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def probe_main(args: argparse.Namespace) -> int:
    data = Data(args.probe_dir)
    before = current_rss_mb()
    out = PROBES[args.probe](data, args)
    out["rss_before_mb"] = before
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))
    return 0


# ---- report ------------------------------------------------------------------------------
def pm(d: dict | None, key: str = "p50_ms") -> float | None:
    return d.get(key) if d else None


def render(args: argparse.Namespace, env: dict, results: dict) -> None:
    sets = list(results["sets"])
    rows_build, rows_q, rows_sweep, rows_hyb, rows_targets = [], [], [], [], []
    for label in sets:
        r = results["sets"][label]
        n = r["n"]
        for c in ("bm25s", "numpy", "edge", "rrf"):
            p = r.get(c)
            if not p:
                continue
            if "error" in p:
                rows_build.append([label, n, c, p["error"], None, None, None])
                continue
            if c in ("bm25s", "numpy", "edge"):
                peak = p.get("peak_rss_mb")
                serve = r.get("edge-serve", {}).get("peak_rss_mb") if c == "edge" else None
                rows_build.append(
                    [
                        label,
                        n,
                        c,
                        p.get("build_what"),
                        p.get("build_s"),
                        p.get("disk_mb"),
                        f"{peak:,.0f}" + (f" (serving: {serve:,.0f})" if serve else "") if peak else None,
                    ]
                )
        e, npy, bm = r.get("edge", {}), r.get("numpy", {}), r.get("bm25s", {})
        if "single" in npy:
            rows_q.append(
                [
                    label,
                    n,
                    f"{pm(npy['single']):.2f} / {pm(npy['single'], 'p95_ms'):.2f}",
                    f"{pm(npy['single_1_blas_thread']):.2f}",
                    f"{npy['batched']['per_query_ms']:.2f}",
                    f"{pm(e.get('single')):.2f} / {pm(e.get('single'), 'p95_ms'):.2f}" if e.get("single") else None,
                    e.get("chosen_ef"),
                    e.get("recall_at_10"),
                    e["batched"]["per_query_ms"] if e.get("batched") else None,
                    ratio(pm(e.get("single")) or 0, pm(npy["single"])),
                    f"{pm(bm.get('single')):.2f} / {pm(bm.get('single'), 'p95_ms'):.2f}" if bm.get("single") else None,
                    bm["batched"]["per_query_ms"] if bm.get("batched") else None,
                ]
            )
        for s in e.get("ef_sweep", []):
            rows_sweep.append(
                [label, n, e["m"], e["ef_construct"], s["ef"], s["p50_ms"], s["p95_ms"], s["recall_at_10"]]
            )
        if e.get("hybrid_single") and r.get("rrf", {}).get("single"):
            rr = r["rrf"]["single"]
            r1 = r["rrf"].get("single_1_blas_thread")
            rows_hyb.append(
                [
                    label,
                    n,
                    f"{pm(e['hybrid_single']):.2f} / {pm(e['hybrid_single'], 'p95_ms'):.2f}",
                    e["hybrid_batched"]["per_query_ms"],
                    f"{pm(rr):.2f} / {pm(rr, 'p95_ms'):.2f}",
                    ratio(pm(e["hybrid_single"]), pm(rr)),
                    pm(r1),
                    ratio(pm(e["hybrid_single"]), pm(r1) or 0),
                ]
            )
        if e.get("upsert_s") is not None:
            rows_targets.append(
                [
                    label,
                    n,
                    e["prepare_points_s"],
                    e["upsert_s"],
                    e["optimize_s"],
                    e.get("indexed_vectors"),
                    e.get("rss_after_build_mb"),
                ]
            )
    sections = [
        (
            "Build, disk and peak memory (each contender in its own process)",
            markdown_table(
                ["corpus", "chunks", "contender", "build measures", "build s", "disk MB", "peak RSS MB"], rows_build, 2
            ),
        ),
        (
            "Qdrant Edge build steps",
            markdown_table(
                [
                    "corpus",
                    "chunks",
                    "points built in Python s",
                    "upsert s",
                    "flush + optimize (HNSW) s",
                    "vectors in HNSW",
                    "RSS after build MB",
                ],
                rows_targets,
                2,
            ),
        ),
        (
            (
                f"Query latency, k={K} (ms; single = one query per call p50 / p95; batched = per query in batches of "
                f"{args.batch})"
            ),
            markdown_table(
                [
                    "corpus",
                    "chunks",
                    "numpy exact",
                    "numpy 1 BLAS thread p50",
                    "numpy batched",
                    "Edge HNSW",
                    "ef",
                    "Edge recall@10",
                    "Edge batched",
                    "p50 ratio Edge/numpy",
                    "bm25s (get_scores + top-k)",
                    "bm25s batched",
                ],
                rows_q,
                3,
            ),
        ),
        (
            "HNSW ef sweep (Qdrant Edge, dense, one query per call)",
            markdown_table(
                ["corpus", "chunks", "m", "ef_construct", "ef", "p50 ms", "p95 ms", "recall@10 vs exact"], rows_sweep, 3
            ),
        ),
        (
            "Hybrid: Qdrant Edge (prefetch dense + sparse, RRF in the engine) vs hoprank's RRF (bm25s + numpy)",
            markdown_table(
                [
                    "corpus",
                    "chunks",
                    "Edge hybrid p50 / p95",
                    "Edge hybrid batched per query",
                    "hoprank RRF p50 / p95",
                    "p50 ratio Edge/RRF",
                    "hoprank RRF, 1 BLAS thread p50",
                    "p50 ratio Edge/RRF 1 thread",
                ],
                rows_hyb,
                3,
            ),
        ),
    ]
    if results.get("targets"):
        sections.append(("Targets (issue 13)", markdown_table(["target", "figure", "met"], results["targets"], 3)))
    notes = list(results.get("notes", []))
    write_results(
        args.name,
        results,
        sections,
        env=env,
        runs=f"1 run; latency per query over {args.queries} queries after 3 warm-up queries; "
        f"batched over all {results.get('n_queries')} queries in batches of {args.batch}; builds once",
        data=results.get("data", ["synthetic"]),
        command=results.get("command", "python benchmarks/scale.py"),
        notes=notes,
    )


def targets(results: dict) -> list[list]:
    """The issue's targets with the figures measured in this run (met or not)."""
    out = []
    sets = results["sets"]
    big_label = "realcov-1000000" if "realcov-1000000" in sets else "synthetic-1000000"
    big = sets.get(big_label, {})
    e, npy = big.get("edge", {}), big.get("numpy", {})
    if e.get("single") and npy.get("single"):
        out.append(
            [
                f"{big_label}: Edge HNSW p50 faster than numpy exact, recall@10 >= 0.95",
                (
                    f"{e['single']['p50_ms']:.2f} vs {npy['single']['p50_ms']:.2f} ms, recall {e['recall_at_10']} (ef "
                    f"{e['chosen_ef']})"
                ),
                "yes" if e["single"]["p50_ms"] < npy["single"]["p50_ms"] and e["recall_at_10"] >= 0.95 else "no",
            ]
        )
        out.append(
            [
                f"{big_label}: Edge HNSW query p50 <= 20 ms",
                f"{e['single']['p50_ms']:.2f} ms",
                "yes" if e["single"]["p50_ms"] <= 20 else "no",
            ]
        )
        out.append(
            [
                f"{big_label}: peak RSS reported",
                f"build {e.get('peak_rss_mb')} MB, serving {big.get('edge-serve', {}).get('peak_rss_mb')} MB",
                "yes",
            ]
        )
    for label, r in sets.items():
        e = r.get("edge", {})
        if label.startswith("real") and e.get("ef_sweep"):
            best = max(e["ef_sweep"], key=lambda s: s["recall_at_10"])
            what = "real vectors" if label.startswith("real-") else "vectors with the real vectors' covariance"
            out.append(
                [
                    f"{label}: HNSW recall@10 >= 0.95 on {what}",
                    f"{e['recall_at_10']} at ef {e['chosen_ef']} (max {best['recall_at_10']})",
                    "yes" if e["recall_at_10"] >= 0.95 else "no",
                ]
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scales", default="10000,100000,1000000", help="synthetic corpus sizes ('' for none)")
    p.add_argument(
        "--real", type=int, default=0, help="also a corpus of N real texts encoded with a hoprank encoder (0 = skip)"
    )
    p.add_argument(
        "--cov-scales",
        default="",
        help="corpus sizes of vectors drawn with the covariance of the --real vectors "
        "(queries: the real question vectors)",
    )
    p.add_argument("--encoder", default=None, help="hoprank encoder for --real (default: hoprank's default encoder)")
    p.add_argument("--queries", type=int, default=100, help="queries timed one per call")
    p.add_argument("--n-queries", type=int, default=200, help="queries in the set (batched rows and recall use all)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--efs", default="32,64,128,256,512", help="HNSW ef values to sweep")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construct", type=int, default=100)
    p.add_argument("--target-recall", type=float, default=0.95, help="the fastest ef reaching this recall is 'chosen'")
    p.add_argument("--serve-ef", type=int, default=0)
    p.add_argument("--vocab", type=int, default=50_000)
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument(
        "--work", type=Path, default=Path("/tmp/hoprank-scale"), help="data + per-probe results (kept: reruns resume)"
    )
    p.add_argument("--fresh", action="store_true", help="forget saved probe results in --work")
    p.add_argument("--probe-timeout", type=int, default=4 * 3600)
    p.add_argument("--name", default="scale")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--probe-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:
        return probe_main(args)
    state_file = args.work / "results.json"
    if args.render_only:
        _, env, results = read_results(args.name)
        render(args, env, results)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    state = {} if args.fresh or not state_file.exists() else json.loads(state_file.read_text())
    env = environment(PACKAGES)
    t_start = time.perf_counter()
    contenders = [c for c in args.contenders.split(",") if c]
    jobs: list[tuple[str, int]] = []
    if args.real:
        jobs.append((f"real-{args.real}", args.real))
    jobs += [(f"synthetic-{int(s)}", int(s)) for s in args.scales.split(",") if s.strip()]
    jobs += [(f"realcov-{int(s)}", int(s)) for s in args.cov_scales.split(",") if s.strip()]
    sets = state.setdefault("sets", {})
    data_notes: list[str] = []
    for label, n in jobs:
        d = args.work / label
        r = sets.setdefault(label, {"n": n})
        if not (d / "query_tokens.json").exists():
            log(f"{label}: generating data")
            t0 = time.perf_counter()
            if label.startswith("real-"):
                r["real"] = make_real(d, n, args.n_queries, args.encoder)
            elif label.startswith("realcov-"):
                like = args.work / f"real-{args.real}"
                if not (like / "vectors.npy").exists():
                    raise SystemExit(
                        f"{label} needs the real vectors of --real {args.real} in {like}; run with --real first"
                    )
                make_synthetic(d, n, args.n_queries, args.vocab, like=like)
                r["like"] = like.name
            else:
                make_synthetic(d, n, args.n_queries, args.vocab)
            r["data_s"] = round(time.perf_counter() - t0, 1)
            state_file.write_text(json.dumps(state, indent=1))
        r["n_queries"] = len(json.loads((d / "query_tokens.json").read_text())["queries"])
        for c in [c for c in CONTENDERS if c in contenders]:  # numpy first: it writes the exact top-10
            if c in r and "error" not in r[c]:
                continue
            load = os.getloadavg()[0]
            log(f"{label}: {c} (load {load:.1f})")
            r[c] = run_probe(c, d, args)
            r[c]["load_average_at_start"] = round(load, 2)
            log(f"{label}: {c} -> { {k: v for k, v in r[c].items() if k not in ('ef_sweep',)} }")
            state_file.write_text(json.dumps(state, indent=1))
    state["total_s"] = round(state.get("total_s", 0) + time.perf_counter() - t_start, 1)
    state["n_queries"] = args.n_queries
    state["targets"] = targets(state)
    data_notes = [label for label, _ in jobs]
    state["data"] = [
        f"synthetic corpora ({args.vocab}-word Zipf vocabulary, seed {SEED}, random unit {DIM}-d vectors)"
    ] + (
        [
            "../shared/data/hotpotqa/hotpot_dev_distractor_sample60.hf.json",
            "../shared/data/multihop-rag/multihoprag_queries_sample300.json",
        ]
        if args.real
        else []
    )
    state["command"] = "python benchmarks/scale.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    state["notes"] = notes_for(state, data_notes)
    render(args, env, state)
    state_file.write_text(json.dumps(state, indent=1))
    log(f"done; wrote {RESULTS_DIR / (args.name + '.md')}")
    return 0


def notes_for(state: dict, labels: list[str]) -> list[str]:
    notes = [
        (
            "Each contender ran in its own fresh interpreter; 'peak RSS' is that process's VmHWM, which counts "
            "memory-mapped file pages it touched (numpy's vectors, Edge's segments) as resident. Edge 'serving' = a "
            "fresh process that opens the built shard and runs hybrid queries."
        ),
        (
            "numpy exact = hoprank's dense retriever in essence (memory-mapped embeddings @ query, argpartition); its "
            "exact top-10 is the recall reference. bm25s single = get_scores + top-k, as hoprank's bm25 retriever "
            "does; batched = bm25s's own retrieve(). Latency is search only: query vectors are given."
        ),
        (
            "Qdrant Edge is driven through hoprank's EdgeStore (the code of the qdrant / qdrant-hybrid retrievers): "
            "points of 1024 upserted per call, then flush + optimize, which builds the HNSW graph (Edge has no "
            "background optimizer). 'chosen ef' = the fastest ef of the sweep with recall@10 >= 0.95, else the ef "
            "with the best recall."
        ),
        (
            "Random unit vectors in 384 dimensions have no neighbourhood structure (every pair is nearly orthogonal): "
            "the hardest case for HNSW recall; the real-vector rows show the recall real embeddings get."
        ),
        (
            "Edge hybrid = dense prefetch (HNSW) + sparse BM25 prefetch (IDF modifier), 50 candidates each, RRF "
            "inside the engine (k=2, Qdrant's default); hoprank RRF = bm25s top-50 + numpy top-50 fused by "
            "hoprank.tools.retrieval.fusion.rrf (k=60). On synthetic data queries' words and vectors are unrelated: "
            "this times the fusion, it says nothing about quality."
        ),
    ]
    if any(label.startswith("realcov-") for label in labels):
        notes.append(
            "realcov-N: N vectors drawn from a Gaussian with the mean and covariance of the real-vector corpus, "
            "normalised; queries are the real question vectors. It keeps the anisotropy of real embeddings (which is "
            "what lets HNSW find neighbours) but not their clusters, so its recall is a conservative stand-in for "
            "real data at sizes we have no real corpus for."
        )
    for label in labels:
        r = state["sets"].get(label, {})
        if r.get("real"):
            t = r["real"]
            notes.append(
                f"{label}: {t['texts']['original']} distinct real texts (HotpotQA context sentences, sentence pairs "
                f"and paragraphs; MultiHop-RAG evidence facts) and {t['texts']['perturbed']} copies of them with 20% "
                f"of the words dropped, encoded with {t['encoder']} in {t['encode_s']} s ({t['encode_texts_per_s']} "
                "texts/s); queries: real HotpotQA and MultiHop-RAG questions."
            )
    loads = [
        r[c].get("load_average_at_start")
        for r in state["sets"].values()
        for c in CONTENDERS
        if isinstance(r.get(c), dict)
    ]
    loads = [x for x in loads if x is not None]
    if loads:
        notes.insert(
            0,
            (
                f"Load average (1 min) when each probe started: {min(loads):.1f}-{max(loads):.1f} on 2 cores shared "
                "with other work; compare contenders of one corpus (run back to back), not absolute figures across "
                "runs."
            ),
        )
    return notes


if __name__ == "__main__":
    sys.exit(main())
