"""Contract test of the Qdrant server path (qdrant-client with ``url=``).

No Qdrant server binary reaches these machines, so a tiny HTTP server on 127.0.0.1 stands
in for one: it records every request qdrant-client sends and answers the minimal valid
JSON of Qdrant's REST API (it keeps the upserted points, so scroll, count and query return
something real). The test checks the payloads against qdrant-client's own request models
(the server's OpenAPI schema) and that the collection layout is the one the Edge shard has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest
from conftest import LoopbackServer, send_json, write_corpus

from hoprank.tools.ingest.index import Index
from hoprank.tools.retrieval.qdrant import point_id


class FakeQdrant:
    """Records (method, path, body) and answers like a Qdrant server would, minimally."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.collections: dict[str, dict] = {}
        self.points: dict[str, dict] = {}
        self.server = LoopbackServer(self._serve)
        self.url = self.server.url

    def bodies(self, method: str, suffix: str) -> list[Any]:
        return [b for m, p, b in self.requests if m == method and p.split("?")[0].endswith(suffix)]

    def answer(self, method: str, path: str, body: Any) -> Any:
        route = path.split("?")[0].strip("/").split("/")
        if route == [""]:
            return {"title": "qdrant - vector search engine", "version": metadata.version("qdrant-client")}
        name = route[1]
        tail = route[2:]
        if tail == ["exists"]:
            return {"exists": name in self.collections}
        if not tail and method == "PUT":
            self.collections[name] = body
            return True
        if not tail and method == "GET":  # CollectionInfo: only the fields the schema requires
            made = self.collections[name]
            return {
                "status": "green",
                "optimizer_status": "ok",
                "segments_count": 1,
                "payload_schema": {},
                "config": {
                    "params": {"vectors": made["vectors"], "sparse_vectors": made["sparse_vectors"]},
                    "hnsw_config": made["hnsw_config"],
                    "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
                },
            }
        if tail == ["points"] and method == "PUT":
            for p in body["points"]:
                self.points[p["id"]] = p
            return {"operation_id": len(self.requests), "status": "completed"}
        if tail == ["points", "scroll"]:
            return {
                "points": [{"id": i, "payload": p["payload"]} for i, p in self.points.items()],
                "next_page_offset": None,
            }
        if tail == ["points", "delete"]:
            for i in body["points"]:
                self.points.pop(i, None)
            return {"operation_id": len(self.requests), "status": "completed"}
        if tail == ["points", "count"]:
            return {"count": len(self.points)}
        if tail == ["points", "query", "batch"]:
            ranked = list(self.points.items())
            return [
                {
                    "points": [
                        {
                            "id": i,
                            "version": 1,
                            "score": 1.0 / (r + 1),
                            "payload": {"chunk_id": p["payload"]["chunk_id"]},
                        }
                        for r, (i, p) in enumerate(ranked[: q["limit"]])
                    ]
                }
                for q in body["searches"]
            ]
        raise AssertionError(f"unexpected request {method} {path}")

    def _serve(self, handler: Any, body: Any) -> None:
        self.requests.append((handler.command, handler.path, body))
        try:
            result = self.answer(handler.command, handler.path, body)
            status, payload = 200, ({"result": result, "status": "ok", "time": 0.0} if handler.path != "/" else result)
        except AssertionError as e:
            status, payload = 404, {"status": {"error": str(e)}, "time": 0.0}
        send_json(handler, status, payload)

    def __enter__(self) -> FakeQdrant:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.close()


@pytest.fixture()
def fake_qdrant() -> Iterator[FakeQdrant]:
    with FakeQdrant() as fake:
        yield fake


@pytest.fixture()
def sindex(tmp_path):
    idx, _ = Index.build(tmp_path / "idx", sources=[write_corpus(tmp_path / "docs")], qdrant=False)
    yield idx
    for r in idx._retrievers.values():
        getattr(r, "close", lambda: None)()


def test_server_payloads_follow_the_qdrant_schema_and_the_edge_layout(sindex, fake_qdrant):
    from qdrant_client.http import models

    q = sindex.retriever("qdrant-hybrid", url=fake_qdrant.url, collection="docs")
    # 1. the collection: the layout the Edge shard of the same index has
    (create,) = fake_qdrant.bodies("PUT", "/collections/docs")
    models.CreateCollection.model_validate(create)
    edge = sindex.retriever("qdrant")  # Qdrant Edge in the index folder
    edge_cfg = json.loads((sindex.path / "qdrant" / "edge" / "hoprank" / "edge_config.json").read_text())
    assert create["vectors"] == {"dense": {"size": 384, "distance": "Cosine"}} == edge_cfg["vectors"]
    assert create["sparse_vectors"] == {"bm25": {"modifier": "idf"}} == edge_cfg["sparse_vectors"]
    for key in ("m", "ef_construct", "full_scan_threshold"):
        assert create["hnsw_config"][key] == edge_cfg["hnsw_config"][key]
    # 2. the points: one per chunk, uuid5 ids, both named vectors, the payload fields
    (upsert,) = fake_qdrant.bodies("PUT", "/collections/docs/points")
    models.PointsList.model_validate(upsert)
    by_id = {p["id"]: p for p in upsert["points"]}
    assert set(by_id) == {point_id(c.id) for c in sindex.chunks}
    point = by_id[point_id(sindex.chunks[0].id)]
    assert len(point["vector"]["dense"]) == 384
    assert set(point["vector"]["bm25"]) == {"indices", "values"} and point["vector"]["bm25"]["indices"]
    assert set(point["payload"]) == {"chunk_id", "doc_id", "title", "text_hash"}
    assert q.count() == len(sindex) == edge.count()
    # 3. a hybrid query: two prefetches fused by RRF inside Qdrant, in one batch request
    hits = q.search_batch(["Which river is 212 kilometres long?", "clock tower"], 3)
    (batch,) = fake_qdrant.bodies("POST", "/collections/docs/points/query/batch")
    models.QueryRequestBatch.model_validate(batch)
    first = batch["searches"][0]
    assert first["query"] == {"fusion": "rrf"} and first["limit"] == 3 and first["with_payload"] == ["chunk_id"]
    assert [p["using"] for p in first["prefetch"]] == ["dense", "bm25"]
    assert first["prefetch"][0]["params"]["hnsw_ef"] == 128 and first["prefetch"][0]["limit"] == 50
    assert [len(h) for h in hits] == [3, 3] and hits[0][0].retriever == "qdrant-hybrid"


def test_server_sync_is_incremental_and_deletes_removed_chunks(sindex, fake_qdrant, tmp_path):
    from qdrant_client.http import models

    sindex.retriever("qdrant", url=fake_qdrant.url).close()
    sindex._retrievers.clear()
    n_upserts = len(fake_qdrant.bodies("PUT", "/collections/hoprank/points"))
    Index.open(sindex.path).retriever("qdrant", url=fake_qdrant.url).close()  # same generation
    assert len(fake_qdrant.bodies("PUT", "/collections/hoprank/points")) == n_upserts
    gone = [c for c in sindex.chunks if c.doc_id == "seren.md"]
    (tmp_path / "docs" / "seren.md").unlink()
    idx2, _ = Index.build(sindex.path, sources=[tmp_path / "docs"])
    q = idx2.retriever("qdrant", url=fake_qdrant.url)
    (delete,) = fake_qdrant.bodies("POST", "/collections/hoprank/points/delete")
    models.PointIdsList.model_validate(delete)
    assert sorted(delete["points"]) == sorted(point_id(c.id) for c in gone)
    assert q.count() == len(idx2)
    q.search("Marrow Bay lighthouse", 2)
    dense = fake_qdrant.bodies("POST", "/collections/hoprank/points/query/batch")[-1]["searches"][0]
    assert dense["using"] == "dense" and len(dense["query"]["nearest"]) == 384 and "prefetch" not in dense
    q.close()


def test_server_errors_are_one_line_hoprank_errors(sindex, fake_qdrant):
    from hoprank.tools.errors import HoprankError
    from hoprank.tools.retrieval.qdrant_store import ServerStore

    other = ServerStore(fake_qdrant.url, "docs")
    other.ensure_collection(8)  # someone else's collection of 8-d vectors under the same name
    other.close()
    with pytest.raises(HoprankError, match="holds 8-d vectors but this index has 384-d"):
        sindex.retriever("qdrant", url=fake_qdrant.url, collection="docs")
    fake_qdrant.server.close()
    with pytest.raises(HoprankError, match="cannot reach the Qdrant server"):
        ServerStore(fake_qdrant.url, "docs").ensure_collection(8)
