"""Two Qdrant backends behind one small interface: Qdrant Edge in process, or a server.

Both hold the same collection layout, so an index can move from one to the other by
re-syncing (see the README, "Moving an index from Qdrant Edge to a Qdrant server"):

* point id: ``uuid5(chunk id)``; payload ``chunk_id``, ``doc_id``, ``title``, ``text_hash``;
* ``dense``: the index's embeddings, cosine distance, HNSW (``m``, ``ef_construct``);
* ``bm25``: sparse vectors of hashed terms with BM25 document-side weights and the IDF
  modifier, so the engine applies IDF over whatever the collection holds.

Qdrant Edge (``qdrant-edge-py``) is the Qdrant engine (Rust) inside this process: one shard
in a folder, no server, the same segment format as a Qdrant server. It replaced
qdrant-client's local mode, which is pure Python and brute force (549 s to upsert 20k points).
A server is reached with qdrant-client and ``url=`` (the path to a cluster).
"""

from __future__ import annotations

import json
import logging
import shutil
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hoprank.tools.errors import HoprankError, IndexLockedError, MissingExtraError

log = logging.getLogger(__name__)

DENSE = "dense"
SPARSE = "bm25"
# Qdrant's own RRF constant (server, Edge and qdrant-client all default to 2). hoprank's
# Python RRF uses 60; the qdrant-hybrid quality figures in the README were measured with 2.
RRF_K = 2
Mode = Literal["dense", "sparse", "hybrid"]
Sparse = tuple[list[int], list[float]]


class QdrantCollectionMismatchError(HoprankError, ValueError):
    """A server collection of the same name holds vectors of another size."""


class QdrantUnavailableError(HoprankError, ConnectionError):
    """The Qdrant server given with ``url=`` does not answer."""


@dataclass(frozen=True)
class HnswParams:
    """HNSW settings for the dense vectors (Qdrant's defaults for m and ef_construct).

    ``ef`` is the search-time beam; higher finds more of the exact top-k and costs time.
    The optimizer builds a graph only for segments above ``indexing_threshold_kb`` of vectors
    (None: Qdrant's default, 10 MB, about 6,500 chunks of 384-d); smaller ones are scanned
    exactly, so a small index gives exact results with no tuning at all.
    ``full_scan_threshold_kb`` is Qdrant's switch to a full scan for filtered searches."""

    m: int = 16
    ef_construct: int = 100
    ef: int = 128
    full_scan_threshold_kb: int = 10_000
    indexing_threshold_kb: int | None = None


@dataclass
class PointRow:
    """One chunk as a Qdrant point, independent of the backend that stores it."""

    id: str
    dense: list[float]
    sparse: Sparse
    payload: dict[str, Any]


@dataclass
class QuerySpec:
    """One query: the dense vector and/or the sparse one, and what to run with them."""

    mode: Mode
    k: int
    dense: list[float] | None = None
    sparse: Sparse | None = None
    depth: int = 50  # candidates each prefetch hands to the fusion (hybrid only)
    ef: int | None = None  # HNSW search beam for this query; None = the store's default


class QdrantStore(ABC):
    """What the retriever needs from Qdrant; each method is one engine/server operation."""

    kind: str = "store"

    @abstractmethod
    def ensure_collection(self, dim: int) -> bool:
        """Create the collection when missing (or when its dimension no longer matches).
        Returns True when it was (re)created, i.e. it is empty."""

    def point_hashes(self) -> dict[str, str | None]:
        """Point id -> ``text_hash`` payload of every stored point (what a sync compares), read page by page."""
        out: dict[str, str | None] = {}
        offset = None
        while True:
            points, offset = self._hash_page(offset)
            for p in points:
                out[str(p.id)] = (p.payload or {}).get("text_hash")
            if offset is None:
                return out

    @abstractmethod
    def _hash_page(self, offset: Any) -> tuple[Sequence[Any], Any]:
        """One page of points carrying their ``text_hash`` payload, and the next page's offset (None after the
        last page)."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def upsert(self, rows: Sequence[PointRow]) -> None: ...

    @abstractmethod
    def finish(self) -> None:
        """After a sync wrote points: make them durable and indexed."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def query(self, specs: Sequence[QuerySpec]) -> list[list[tuple[str, float]]]:
        """Run the queries as one batch; per query, (chunk id, score) best first."""

    @abstractmethod
    def close(self) -> None: ...


# ---- Qdrant Edge -----------------------------------------------------------------------
def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as e:  # pragma: no cover - core dependency
        raise MissingExtraError("embedded Qdrant needs qdrant-edge-py (pip install qdrant-edge-py)") from e
    return qdrant_edge


def edge_config(dim: int, hnsw: HnswParams = HnswParams()) -> Any:
    """The shard configuration hoprank uses (the scale benchmark builds shards with it too)."""
    qe = _edge()
    optimizers = (
        qe.EdgeOptimizersConfig(indexing_threshold=hnsw.indexing_threshold_kb) if hnsw.indexing_threshold_kb else None
    )
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        hnsw_config=qe.HnswIndexConfig(
            m=hnsw.m, ef_construct=hnsw.ef_construct, full_scan_threshold=hnsw.full_scan_threshold_kb
        ),
        optimizers=optimizers,
    )


def edge_request(spec: QuerySpec, hnsw: HnswParams, payload: Sequence[str] = ("chunk_id",)) -> Any:
    """A QuerySpec as an Edge QueryRequest: dense or sparse nearest, or two prefetches fused
    by RRF inside the engine (one call, no Python-side merging)."""
    qe = _edge()
    with_payload = list(payload)
    params = qe.SearchParams(hnsw_ef=max(spec.ef or hnsw.ef, spec.k))
    sparse = qe.SparseVector(list(spec.sparse[0]), list(spec.sparse[1])) if spec.sparse and spec.sparse[0] else None
    if spec.mode == "dense":
        return qe.QueryRequest(
            limit=spec.k, query=qe.Query.Nearest(spec.dense, using=DENSE), params=params, with_payload=with_payload
        )
    if spec.mode == "sparse":
        return qe.QueryRequest(limit=spec.k, query=qe.Query.Nearest(sparse, using=SPARSE), with_payload=with_payload)
    depth = max(spec.k, spec.depth)
    prefetches = [qe.Prefetch(limit=depth, query=qe.Query.Nearest(spec.dense, using=DENSE), params=params)]
    if sparse is not None:
        prefetches.append(qe.Prefetch(limit=depth, query=qe.Query.Nearest(sparse, using=SPARSE)))
    return qe.QueryRequest(limit=spec.k, prefetches=prefetches, query=qe.Fusion.Rrf(k=RRF_K), with_payload=with_payload)


def is_lock_error(exc: BaseException) -> bool:
    """Edge takes an exclusive lock on the shard's write-ahead log; a second opener gets
    an OS 'would block' error wrapped in a generic Exception."""
    text = str(exc)
    return "WouldBlock" in text or "would block" in text.lower() or "Resource temporarily unavailable" in text


class EdgeStore(QdrantStore):
    """One Qdrant Edge shard in a folder. The engine locks the folder: one process at a time."""

    kind = "edge"

    def __init__(self, path: Path, hnsw: HnswParams = HnswParams()):
        self.path = Path(path)
        self.hnsw = hnsw
        self.shard: Any = None
        if (self.path / "edge_config.json").is_file():
            self.shard = self._open(lambda: _edge().EdgeShard.load(str(self.path)))

    def _open(self, opener: Any) -> Any:
        try:
            return opener()
        except Exception as e:
            if is_lock_error(e):
                raise IndexLockedError(
                    f"the embedded Qdrant store at {self.path} is open in another process "
                    "(Qdrant Edge allows one process per folder). Stop the other process, "
                    "or run a Qdrant server and pass --qdrant-url http://HOST:6333."
                ) from e
            raise

    def _stored_dim(self) -> int | None:
        try:
            cfg = json.loads((self.path / "edge_config.json").read_text("utf-8"))
            return int(cfg["vectors"][DENSE]["size"])
        except (OSError, KeyError, ValueError, TypeError):
            return None

    def ensure_collection(self, dim: int) -> bool:
        if self.shard is not None and self._stored_dim() == dim:
            return False
        if self.shard is not None:  # the embedding model changed: the old vectors are useless
            log.info(
                "Qdrant Edge store %s holds %s-d vectors, the index %s-d: recreating it",
                self.path,
                self._stored_dim(),
                dim,
            )
            self.shard.close()
            self.shard = None
        if self.path.exists():
            shutil.rmtree(self.path)  # derived data: rebuilt from the index by the sync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.shard = self._open(lambda: _edge().EdgeShard.create(str(self.path), edge_config(dim, self.hnsw)))
        return True

    def _hash_page(self, offset: Any) -> tuple[Sequence[Any], Any]:
        request = _edge().ScrollRequest(offset=offset, limit=4096, with_payload=["text_hash"], with_vector=False)
        return self.shard.scroll(request)

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self.shard.update(_edge().UpdateOperation.delete_points(list(ids)))

    def upsert(self, rows: Sequence[PointRow]) -> None:
        qe = _edge()
        points = [
            qe.Point(r.id, {DENSE: r.dense, SPARSE: qe.SparseVector(r.sparse[0], r.sparse[1])}, r.payload) for r in rows
        ]
        self.shard.update(qe.UpdateOperation.upsert_points(points))

    def finish(self) -> None:
        """Flush to disk, then run the optimizers in this process: they merge segments and
        build the HNSW graph for segments above the full-scan threshold (Edge has no
        background optimizer, so without this call every search would stay a full scan)."""
        self.shard.flush()
        self.shard.optimize()
        self.shard.flush()

    def count(self) -> int:
        return int(self.shard.count(_edge().CountRequest(exact=True)))

    def query(self, specs: Sequence[QuerySpec]) -> list[list[tuple[str, float]]]:
        qe = _edge()
        runnable = [i for i, s in enumerate(specs) if s.mode != "sparse" or (s.sparse and s.sparse[0])]
        out: list[list[tuple[str, float]]] = [[] for _ in specs]
        if not runnable:
            return out
        reqs = [edge_request(specs[i], self.hnsw) for i in runnable]
        results = self.shard.query_batch(qe.QueryBatchRequest(reqs)) if len(reqs) > 1 else [self.shard.query(reqs[0])]
        for i, res in zip(runnable, results):
            out[i] = [((p.payload or {}).get("chunk_id"), float(p.score)) for p in res]
        return out

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None


# ---- Qdrant server (qdrant-client, url=) ------------------------------------------------
class ServerStore(QdrantStore):
    """A collection on a Qdrant server or cluster, through qdrant-client's REST client."""

    kind = "server"

    def __init__(
        self, url: str, collection: str, api_key: str | None = None, hnsw: HnswParams = HnswParams(), timeout: int = 60
    ):
        try:
            from qdrant_client import QdrantClient
        except ImportError as e:  # pragma: no cover - core dependency
            raise MissingExtraError("a Qdrant server needs qdrant-client (pip install qdrant-client)") from e
        self.url = url
        self.collection = collection
        self.hnsw = hnsw
        self.client = QdrantClient(url=url, api_key=api_key, timeout=timeout)

    def _dim(self) -> int | None:
        info = self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        params = vectors.get(DENSE) if isinstance(vectors, dict) else None
        return int(params.size) if params is not None else None

    def ensure_collection(self, dim: int) -> bool:
        from qdrant_client import models

        try:
            exists = self.client.collection_exists(self.collection)
        except Exception as e:  # qdrant-client wraps connection failures in its own exceptions
            if "connect" in f"{type(e).__name__} {e}".lower():
                raise QdrantUnavailableError(
                    f"cannot reach the Qdrant server at {self.url} ({e}); is it running?"
                ) from e
            raise
        if exists:
            have = self._dim()
            if have == dim:
                return False
            raise QdrantCollectionMismatchError(
                f"Qdrant collection {self.collection!r} at {self.url} holds {have}-d vectors but this index has "
                f"{dim}-d ones (another embedding model); delete that collection or open the retriever with another "
                "collection= name"
            )
        self.client.create_collection(
            self.collection,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            hnsw_config=models.HnswConfigDiff(
                m=self.hnsw.m, ef_construct=self.hnsw.ef_construct, full_scan_threshold=self.hnsw.full_scan_threshold_kb
            ),
            optimizers_config=(
                models.OptimizersConfigDiff(indexing_threshold=self.hnsw.indexing_threshold_kb)
                if self.hnsw.indexing_threshold_kb
                else None
            ),
        )
        return True

    def _hash_page(self, offset: Any) -> tuple[Sequence[Any], Any]:
        return self.client.scroll(
            self.collection, limit=1024, offset=offset, with_payload=["text_hash"], with_vectors=False
        )

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if ids:
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def upsert(self, rows: Sequence[PointRow]) -> None:
        from qdrant_client import models

        points = [
            models.PointStruct(
                id=r.id,
                vector={DENSE: r.dense, SPARSE: models.SparseVector(indices=r.sparse[0], values=r.sparse[1])},
                payload=r.payload,
            )
            for r in rows
        ]
        self.client.upsert(self.collection, points=points, wait=True)

    def finish(self) -> None:
        """Nothing to do: upserts waited for the server, whose optimizers index in the background."""

    def count(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def request(self, spec: QuerySpec) -> Any:
        """A QuerySpec as the server's QueryRequest (the same query the Edge path runs)."""
        from qdrant_client import models

        params = models.SearchParams(hnsw_ef=max(spec.ef or self.hnsw.ef, spec.k))
        sparse = (
            models.SparseVector(indices=spec.sparse[0], values=spec.sparse[1])
            if spec.sparse and spec.sparse[0]
            else None
        )
        if spec.mode == "dense":
            return models.QueryRequest(
                query=spec.dense, using=DENSE, limit=spec.k, params=params, with_payload=["chunk_id"]
            )
        if spec.mode == "sparse":
            return models.QueryRequest(query=sparse, using=SPARSE, limit=spec.k, with_payload=["chunk_id"])
        depth = max(spec.k, spec.depth)
        prefetch = [models.Prefetch(query=spec.dense, using=DENSE, limit=depth, params=params)]
        if sparse is not None:
            prefetch.append(models.Prefetch(query=sparse, using=SPARSE, limit=depth))
        # the plain fusion query (the server's default k, = RRF_K) works on every Qdrant >= 1.10
        fusion = models.FusionQuery(fusion=models.Fusion.RRF)
        return models.QueryRequest(prefetch=prefetch, query=fusion, limit=spec.k, with_payload=["chunk_id"])

    def query(self, specs: Sequence[QuerySpec]) -> list[list[tuple[str, float]]]:
        runnable = [i for i, s in enumerate(specs) if s.mode != "sparse" or (s.sparse and s.sparse[0])]
        out: list[list[tuple[str, float]]] = [[] for _ in specs]
        if not runnable:
            return out
        responses = self.client.query_batch_points(self.collection, requests=[self.request(specs[i]) for i in runnable])
        for i, res in zip(runnable, responses):
            out[i] = [((p.payload or {}).get("chunk_id"), float(p.score)) for p in res.points]
        return out

    def close(self) -> None:
        self.client.close()
