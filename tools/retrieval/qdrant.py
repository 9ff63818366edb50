"""Qdrant: embedded (local folder inside the index) by default, a server with ``url=``.

Each chunk is one point with two named vectors: ``dense`` (the index's embeddings) and
``bm25`` (a sparse vector of hashed terms with BM25 document-side weights; Qdrant applies
the IDF through the collection's IDF modifier). With both, a Qdrant server runs the hybrid
query itself: two prefetches fused by RRF in one request (``mode="hybrid"``).

The collection is synced from the index on open: a sync killed half-way is simply redone
on the next open (point ids are derived from chunk ids, so upserts are idempotent).
"""

from __future__ import annotations

import atexit
import json
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from hoprank.tools.errors import IndexLockedError, MissingExtraError, validate_query
from hoprank.tools.retrieval.base import Retriever
from hoprank.tools.retrieval.bm25 import chunk_terms
from hoprank.tools.retrieval.tokenize import Tokenizer
from hoprank.tools.types import Hit

if TYPE_CHECKING:
    from hoprank.tools.ingest.index import Index

_NS = uuid.UUID("6f1c2a1e-4d0b-4c55-9a59-3b7f2f1c9e11")
K1, B = 1.2, 0.75


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


_CLIENTS: dict[str, list] = {}  # key -> [client, refcount]
_CLIENTS_LOCK = threading.Lock()


def _acquire(key: str, make):
    """One client per store per process: embedded Qdrant locks its folder, so two clients
    on one folder in the same process would lock each other out."""
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = [make(), 0]
        _CLIENTS[key][1] += 1
        return _CLIENTS[key][0]


@atexit.register
def _close_all() -> None:
    """Close embedded stores before interpreter teardown (qdrant's __del__ fails late)."""
    with _CLIENTS_LOCK:
        for client, _ in _CLIENTS.values():
            try:
                client.close()
            except Exception:
                pass
        _CLIENTS.clear()


def _release(key: str) -> None:
    with _CLIENTS_LOCK:
        entry = _CLIENTS.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _CLIENTS[key]
            entry[0].close()


class QdrantRetriever(Retriever):
    name = "qdrant"
    description = "Vector search in Qdrant (dense, sparse BM25 or server-side hybrid)."

    def __init__(
        self,
        index: Index,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = "hoprank",
        mode: Literal["dense", "sparse", "hybrid"] = "dense",
        tokenizer: Tokenizer | None = None,
        depth: int = 50,
    ):
        super().__init__(index.chunks)
        try:
            from qdrant_client import QdrantClient
        except ImportError as e:  # pragma: no cover - core dependency
            raise MissingExtraError("Qdrant retrieval needs qdrant-client (pip install qdrant-client)") from e
        if mode not in ("dense", "sparse", "hybrid"):
            raise ValueError(f"qdrant mode must be dense, sparse or hybrid, got {mode!r}")
        self.index = index
        self.mode = mode
        self.name = {"dense": "qdrant", "sparse": "qdrant-sparse", "hybrid": "qdrant-hybrid"}[mode]
        self.collection = collection
        self.tokenizer = tokenizer or Tokenizer()
        self.depth = depth
        self.url = url
        if url:
            self._client_key = f"url:{url}"
            self.client = _acquire(self._client_key, lambda: QdrantClient(url=url, api_key=api_key))
        else:
            path = Path(index.path) / "qdrant"
            self._client_key = f"path:{path.resolve()}"
            try:
                self.client = _acquire(self._client_key, lambda: QdrantClient(path=str(path)))
            except RuntimeError as e:
                if "already accessed" in str(e):
                    raise IndexLockedError(
                        f"the embedded Qdrant store at {path} is open in another process "
                        "(embedded mode allows one process per folder). Stop the other process, "
                        "or run a Qdrant server and pass --qdrant-url http://HOST:6333."
                    ) from e
                raise
        self.sync()

    # ---- syncing -------------------------------------------------------------------
    def _state_file(self) -> Path:
        tag = "embedded" if not self.url else zlib.crc32(self.url.encode()).__format__("x")
        return Path(self.index.path) / f"qdrant_sync.{self.collection}.{tag}.json"

    def sync(self, batch_size: int = 256) -> int:
        """Make the collection hold exactly the index's chunks. Returns points written."""
        from qdrant_client import models

        state_file = self._state_file()
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        exists = self.client.collection_exists(self.collection)
        if exists and state.get("generation") == self.index.generation and state.get("tokenizer", self.tokenizer.config()) == self.tokenizer.config():
            return 0
        dim = int(self.index.embeddings.shape[1]) if len(self.index) else self.index.manifest.get("dim", 384)
        if not exists:
            self.client.create_collection(
                self.collection,
                vectors_config={"dense": models.VectorParams(size=dim, distance=models.Distance.COSINE)},
                sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
        # what is there already (chunk id -> text hash)
        present: dict[str, str | None] = {}
        offset = None
        while True:
            points, offset = self.client.scroll(self.collection, limit=1024, offset=offset, with_payload=["chunk_id", "text_hash"], with_vectors=False)
            for p in points:
                present[str(p.id)] = (p.payload or {}).get("text_hash")
            if offset is None:
                break
        wanted = {point_id(c.id): c for c in self.index.chunks}
        stale = [pid for pid in present if pid not in wanted]
        if stale:
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=stale))
        terms = [chunk_terms(c, self.tokenizer) for c in self.index.chunks]
        avgdl = float(np.mean([len(t) for t in terms])) if terms else 1.0
        # sparse weights depend on the tokeniser and on the corpus' mean length: when either
        # moved (stemming switched on, the corpus grew a lot), every point is rewritten
        tok = self.tokenizer.config()
        stale_all = state.get("tokenizer") not in (None, tok) or abs(avgdl - float(state.get("avgdl", avgdl))) > 0.1 * max(avgdl, 1.0)
        todo = [(i, c) for i, c in enumerate(self.index.chunks) if stale_all or present.get(point_id(c.id), "\x00") != c.metadata.get("text_hash")]
        for s in range(0, len(todo), batch_size):
            batch = []
            for i, c in todo[s : s + batch_size]:
                idx, vals = sparse_doc_vector(terms[i], avgdl)
                batch.append(
                    models.PointStruct(
                        id=point_id(c.id),
                        vector={"dense": np.asarray(self.index.embeddings[i]).tolist(), "bm25": models.SparseVector(indices=idx, values=vals)},
                        payload={"chunk_id": c.id, "doc_id": c.doc_id, "title": c.title, "text_hash": c.metadata.get("text_hash")},
                    )
                )
            self.client.upsert(self.collection, points=batch, wait=True)
        state_file.write_text(json.dumps({"generation": self.index.generation, "points": len(wanted), "tokenizer": tok, "avgdl": avgdl}))
        return len(todo)

    # ---- searching -----------------------------------------------------------------
    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        from qdrant_client import models

        qs = [validate_query(q) for q in queries]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        dense = self.index.embedder.encode(qs) if self.mode in ("dense", "hybrid") else None
        out: list[list[Hit]] = []
        for j, q in enumerate(qs):
            sidx, svals = sparse_query_vector(self.tokenizer(q))
            sparse = models.SparseVector(indices=sidx, values=svals)
            if self.mode == "dense":
                res = self.client.query_points(self.collection, query=dense[j].tolist(), using="dense", limit=k, with_payload=["chunk_id"])
            elif self.mode == "sparse":
                if not sidx:
                    out.append([])
                    continue
                res = self.client.query_points(self.collection, query=sparse, using="bm25", limit=k, with_payload=["chunk_id"])
            else:
                prefetch = [models.Prefetch(query=dense[j].tolist(), using="dense", limit=max(k, self.depth))]
                if sidx:
                    prefetch.append(models.Prefetch(query=sparse, using="bm25", limit=max(k, self.depth)))
                res = self.client.query_points(self.collection, prefetch=prefetch, query=models.FusionQuery(fusion=models.Fusion.RRF), limit=k, with_payload=["chunk_id"])
            hits = []
            for r, p in enumerate(res.points, 1):
                chunk = self.index.chunk_by_id.get((p.payload or {}).get("chunk_id"))
                if chunk is not None:
                    hits.append(Hit.from_chunk(chunk, float(p.score), r, self.name))
            out.append(hits)
        return out

    def close(self) -> None:
        """Release this retriever's share of the client; the last one closes it."""
        if self.client is not None:
            _release(self._client_key)
            self.client = None
