"""Qdrant retrievers: Qdrant Edge in the index folder by default, a Qdrant server with ``url=``.

Each chunk is one point with two named vectors: ``dense`` (the index's embeddings) and
``bm25`` (a sparse vector of hashed terms with BM25 document-side weights; Qdrant applies
the IDF through the collection's IDF modifier). With both, the engine runs the hybrid
query itself: two prefetches fused by RRF in one request (``mode="hybrid"``). The storage
side (Edge shard or server collection, same layout) lives in :mod:`qdrant_store`.

The store is synced from the index on open and only changed or removed chunks are written;
a sync killed half-way is simply redone on the next open (point ids are derived from chunk
ids, so upserts are idempotent).
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from hoprank.tools.errors import validate_query
from hoprank.tools.retrieval.base import Retriever, SearchableIndex
from hoprank.tools.retrieval.bm25 import chunk_terms
from hoprank.tools.retrieval.qdrant_store import (
    EdgeStore,
    HnswParams,
    PointRow,
    QdrantStore,
    QuerySpec,
    ServerStore,
)
from hoprank.tools.retrieval.tokenize import Tokenizer
from hoprank.tools.types import Hit

log = logging.getLogger(__name__)
_NS = uuid.UUID("6f1c2a1e-4d0b-4c55-9a59-3b7f2f1c9e11")
K1, B = 1.2, 0.75
EDGE_DIR = "edge"  # <index>/qdrant/edge/<collection>/: one Qdrant Edge shard per collection


def point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(_NS, chunk_id))


def term_id(term: str) -> int:
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


def sparse_doc_vector(terms: list[str], avgdl: float) -> tuple[list[int], list[float]]:
    """BM25 term-frequency saturation per term; IDF is left to Qdrant's modifier."""
    tf = Counter(term_id(t) for t in terms)
    dl = max(len(terms), 1)
    norm = K1 * (1 - B + B * dl / max(avgdl, 1e-9))
    idx = sorted(tf)
    return idx, [tf[i] * (K1 + 1) / (tf[i] + norm) for i in idx]


def sparse_query_vector(terms: list[str]) -> tuple[list[int], list[float]]:
    idx = sorted({term_id(t) for t in terms})
    return idx, [1.0] * len(idx)


def _drop_local_mode_store(root: Path) -> None:
    """Indexes built before Qdrant Edge hold a qdrant-client local-mode store (``meta.json`` +
    ``collection/``) in the same folder. It is derived data nobody reads any more: remove it."""
    if (root / "meta.json").is_file() and (root / "collection").is_dir():
        log.info("removing the old qdrant-client local-mode store in %s (replaced by Qdrant Edge)", root)
        shutil.rmtree(root / "collection", ignore_errors=True)
        for name in ("meta.json", ".lock"):
            (root / name).unlink(missing_ok=True)


_STORES: dict[str, list] = {}  # key -> [store, refcount]
_STORES_LOCK = threading.Lock()


def _acquire(key: str, make: Callable[[], QdrantStore]) -> QdrantStore:
    """One store per folder (or server collection) per process: Qdrant Edge locks its
    folder, so two handles on one shard in the same process would lock each other out."""
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = [make(), 0]
        _STORES[key][1] += 1
        return _STORES[key][0]


@atexit.register
def _close_all() -> None:
    """Close stores before interpreter teardown, so Edge flushes and drops its lock."""
    with _STORES_LOCK:
        for store, _ in _STORES.values():
            try:
                store.close()
            except Exception:
                pass
        _STORES.clear()


def _release(key: str) -> None:
    with _STORES_LOCK:
        entry = _STORES.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _STORES[key]
            entry[0].close()


class QdrantRetriever(Retriever):
    name = "qdrant"
    description = "Vector search in Qdrant (dense, sparse BM25 or hybrid fused inside Qdrant)."

    def __init__(
        self,
        index: SearchableIndex,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = "hoprank",
        mode: Literal["dense", "sparse", "hybrid"] = "dense",
        tokenizer: Tokenizer | None = None,
        depth: int = 50,
        hnsw_m: int | None = None,
        hnsw_ef_construct: int | None = None,
        hnsw_ef: int | None = None,
    ):
        super().__init__(index.chunks)
        if mode not in ("dense", "sparse", "hybrid"):
            raise ValueError(f"qdrant mode must be dense, sparse or hybrid, got {mode!r}")
        self.index = index
        self.mode = mode
        self.name = f"{self.name}:{mode}"  # make_retriever stamps the registered name
        self.collection = collection
        self.tokenizer = tokenizer or Tokenizer()
        self.depth = depth
        self.url = url
        self.ef = hnsw_ef
        self.written = 0  # points the last sync wrote (0 when the store was already current)
        base = HnswParams()
        hnsw = HnswParams(
            m=hnsw_m or base.m, ef_construct=hnsw_ef_construct or base.ef_construct, ef=hnsw_ef or base.ef
        )
        if url:
            self._store_key = f"url:{url}#{collection}"
            self.store: QdrantStore | None = _acquire(
                self._store_key, lambda: ServerStore(url, collection, api_key=api_key, hnsw=hnsw)
            )
        else:
            _drop_local_mode_store(Path(index.path) / "qdrant")
            path = Path(index.path) / "qdrant" / EDGE_DIR / collection
            self._store_key = f"edge:{path.resolve()}"
            self.store = _acquire(self._store_key, lambda: EdgeStore(path, hnsw=hnsw))
        try:
            self.written = self.sync()
        except BaseException:
            self.close()
            raise

    # ---- syncing -------------------------------------------------------------------
    def _state_file(self) -> Path:
        tag = "edge" if not self.url else zlib.crc32(self.url.encode()).__format__("x")
        return Path(self.index.path) / f"qdrant_sync.{self.collection}.{tag}.json"

    def count(self) -> int:
        """Points in the store (a sync makes this equal to the number of chunks)."""
        return self.store.count()

    def sync(self, batch_size: int = 1024) -> int:
        """Make the store hold exactly the index's chunks. Returns the points written.

        Only chunks that are new or whose text changed are upserted, and points of removed
        chunks are deleted; everything is rewritten only when the sparse weights moved (a
        new tokeniser, or a corpus whose mean length changed by more than 10%)."""
        state_file = self._state_file()
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        tok = self.tokenizer.config()
        dim = int(self.index.embeddings.shape[1]) if len(self.index) else int(self.index.manifest.get("dim", 384))
        created = self.store.ensure_collection(dim)
        if not created and state.get("generation") == self.index.generation and state.get("tokenizer", tok) == tok:
            return 0
        present = {} if created else self.store.point_hashes()
        wanted = {point_id(c.id) for c in self.index.chunks}
        self.store.delete([pid for pid in present if pid not in wanted])
        terms = [chunk_terms(c, self.tokenizer) for c in self.index.chunks]
        avgdl = float(np.mean([len(t) for t in terms])) if terms else 1.0
        # sparse weights depend on the tokeniser and on the corpus' mean length: when either
        # moved (stemming switched on, the corpus grew a lot), every point is rewritten
        stale_all = state.get("tokenizer") not in (None, tok) or abs(
            avgdl - float(state.get("avgdl", avgdl))
        ) > 0.1 * max(avgdl, 1.0)
        todo = [
            i
            for i, c in enumerate(self.index.chunks)
            if stale_all or present.get(point_id(c.id), "\x00") != c.metadata.get("text_hash")
        ]
        for s in range(0, len(todo), batch_size):
            rows = todo[s : s + batch_size]
            vectors = np.asarray(self.index.embeddings[rows], dtype=np.float32).tolist()
            batch = []
            for i, vec in zip(rows, vectors):
                c = self.index.chunks[i]
                payload = {
                    "chunk_id": c.id,
                    "doc_id": c.doc_id,
                    "title": c.title,
                    "text_hash": c.metadata.get("text_hash"),
                }
                batch.append(PointRow(point_id(c.id), vec, sparse_doc_vector(terms[i], avgdl), payload))
            self.store.upsert(batch)
        self.store.finish()
        state_file.write_text(
            json.dumps(
                {
                    "generation": self.index.generation,
                    "points": len(wanted),
                    "tokenizer": tok,
                    "avgdl": avgdl,
                    "dim": dim,
                }
            )
        )
        return len(todo)

    # ---- searching -----------------------------------------------------------------
    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        qs = [validate_query(q) for q in queries]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        dense = None
        if self.mode in ("dense", "hybrid"):
            emb = self.index.embedder
            dense = np.asarray(getattr(emb, "encode_queries", emb.encode)(qs), dtype=np.float32).tolist()
        specs = []
        for j, q in enumerate(qs):
            sparse = sparse_query_vector(self.tokenizer(q)) if self.mode in ("sparse", "hybrid") else None
            specs.append(
                QuerySpec(self.mode, k, dense=dense[j] if dense else None, sparse=sparse, depth=self.depth, ef=self.ef)
            )
        out: list[list[Hit]] = []
        for res in self.store.query(specs):
            hits = []
            for chunk_id, score in res:
                chunk = self.index.chunk_by_id.get(chunk_id)
                if chunk is not None:
                    hits.append(Hit.from_chunk(chunk, score, len(hits) + 1, self.name))
            out.append(hits)
        return out

    def close(self) -> None:
        """Release this retriever's share of the store; the last one closes it."""
        if self.store is not None:
            _release(self._store_key)
            self.store = None
