from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import write_corpus

from hoprank.tools.errors import IndexLockedError
from hoprank.tools.ingest.index import Index


@pytest.fixture()
def qindex(tmp_path):
    idx, _ = Index.build(tmp_path / "idx", sources=[write_corpus(tmp_path / "docs")], qdrant=False)
    yield idx
    for r in idx._retrievers.values():
        getattr(r, "close", lambda: None)()


def test_qdrant_dense_matches_numpy_exact(qindex):
    q = qindex.retriever("qdrant")
    d = qindex.retriever("dense")
    for query in ["Which river is 212 kilometres long?", "clock tower village", "Zoë Małecka"]:
        qh, dh = q.search(query, 5), d.search(query, 5)
        assert [h.id for h in qh] == [h.id for h in dh]
        assert [h.score for h in qh] == pytest.approx([h.score for h in dh], abs=1e-4)


def test_qdrant_sparse_and_server_side_hybrid(qindex):
    sparse = qindex.retriever("qdrant-sparse")
    assert sparse.search("clockmaker Hollin", 3)[0].doc_id == "otto.md"
    assert sparse.search("zzzunknown", 3) == []
    hybrid = qindex.retriever("qdrant-hybrid")
    hits = hybrid.search("Which river is 212 kilometres long?", 3)
    assert hits[0].doc_id == "seren.md" and hits[0].retriever == "qdrant-hybrid"


def test_qdrant_resyncs_after_update_and_survives_interrupted_sync(qindex, tmp_path):
    q = qindex.retriever("qdrant")
    n = q.count()
    assert n == len(qindex)
    q.close()
    # an interrupted sync: the state file is missing and half the points are gone
    (qindex.path / "qdrant_sync.hoprank.edge.json").unlink()
    idx2 = Index.open(qindex.path)
    q2 = idx2.retriever("qdrant")
    assert q2.count() == len(idx2)
    q2.close()
    # update the index: removed documents disappear from Qdrant too
    docs = tmp_path / "docs"
    (docs / "seren.md").unlink()
    idx3, _ = Index.build(qindex.path, sources=[docs], qdrant=True)
    q3 = idx3.retriever("qdrant")
    assert q3.count() == len(idx3)
    assert all(h.doc_id != "seren.md" for h in q3.search("Seren River kilometres", 10))
    q3.close()


def test_second_process_gets_a_clear_lock_error(qindex):
    qindex.retriever("qdrant")  # this process holds the embedded store
    script = textwrap.dedent(f"""
        from hoprank.tools.ingest.index import Index
        from hoprank.tools.errors import IndexLockedError
        try:
            Index.open({str(qindex.path)!r}).retriever("qdrant")
        except IndexLockedError as e:
            print("LOCKED:", e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "LOCKED:" in out.stdout and "--qdrant-url" in out.stdout, out.stderr[-2000:]
    assert issubclass(IndexLockedError, RuntimeError)


def test_switching_the_tokenizer_rewrites_sparse_vectors(qindex):
    plain = qindex.retriever("qdrant-sparse")
    assert plain.search("clockmakers", 3) == []  # no stemming: "clockmakers" != "clockmaker"
    plain.close()
    qindex._retrievers.clear()
    stemmed = qindex.retriever("qdrant-sparse", stem=True)
    assert stemmed.search("clockmakers", 3)[0].doc_id == "otto.md"


def test_incremental_sync_writes_only_changed_chunks(qindex, tmp_path):
    first = qindex.retriever("qdrant")
    assert first.written == len(qindex)
    first.close()
    qindex._retrievers.clear()
    again = Index.open(qindex.path).retriever("qdrant")
    assert again.written == 0  # same generation: nothing to do
    again.close()
    docs = tmp_path / "docs"
    # texts of about the corpus' mean length, so the BM25 length normalisation stays put
    hollin = "# Hollin\nHollin is a mountain village on the Ashe River, known for its glass bell foundry built in 1790."
    (docs / "hollin.md").write_text(hollin, encoding="utf-8")
    newtown = "# Newtown\nNewtown is a river port on the Grey Sound, known for its grain mill built in 1850."
    (docs / "new.md").write_text(newtown, encoding="utf-8")
    idx2, _ = Index.build(qindex.path, sources=[docs])
    q = idx2.retriever("qdrant-sparse")
    changed = [c for c in idx2.chunks if c.doc_id in ("hollin.md", "new.md")]
    assert 0 < q.written == len(changed) < len(idx2)
    assert q.count() == len(idx2)
    assert q.search("glass bell foundry", 3)[0].doc_id == "hollin.md"
    q.close()


def _unit_rows(n: int, dim: int, seed: int = 0):
    import uuid

    import numpy as np

    from hoprank.tools.retrieval.qdrant_store import PointRow

    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = [
        PointRow(
            str(uuid.UUID(int=i + 1)),
            x[i].tolist(),
            ([i % 50, 100 + i % 7], [1.0, 0.5]),
            {"chunk_id": f"c{i}", "text_hash": "h"},
        )
        for i in range(n)
    ]
    return x, rows


def test_edge_builds_hnsw_above_the_full_scan_threshold_and_ef_buys_recall(tmp_path):
    """Small indexes are scanned exactly; past the indexing threshold the optimizer builds
    HNSW and the search goes through the graph (a tiny ef finds less than a large one)."""
    import numpy as np

    from hoprank.tools.retrieval.qdrant_store import EdgeStore, HnswParams, QuerySpec

    x, rows = _unit_rows(3000, 32)
    exact = EdgeStore(tmp_path / "plain", HnswParams(m=8, ef_construct=32))
    exact.ensure_collection(32)
    exact.upsert(rows)
    exact.finish()
    plain_indexed = exact.shard.info().indexed_vectors_count  # the sparse vectors only: 3000 x 32-d is under 10 MB
    exact.close()
    store = EdgeStore(tmp_path / "shard", HnswParams(m=8, ef_construct=32, indexing_threshold_kb=1))
    assert store.ensure_collection(32) is True
    store.upsert(rows)
    store.finish()
    assert store.count() == 3000
    assert store.shard.info().indexed_vectors_count == plain_indexed + 3000  # + the dense HNSW graph
    queries = np.random.default_rng(1).standard_normal((40, 32)).astype(np.float32)
    exact = np.argsort(-(x @ queries.T), axis=0)[:10].T

    def recall(ef: int) -> float:
        res = store.query([QuerySpec("dense", 10, dense=q.tolist(), ef=ef) for q in queries])
        return float(np.mean([len({int(c[1:]) for c, _ in r} & set(e.tolist())) / 10 for r, e in zip(res, exact)]))

    low, high = recall(10), recall(400)
    assert high >= 0.97 and high >= low
    hybrid = store.query([QuerySpec("hybrid", 5, dense=queries[0].tolist(), sparse=([3], [1.0]))])[0]
    assert len(hybrid) == 5 and all(s > 0 for _, s in hybrid)
    store.close()


def test_a_new_embedding_size_recreates_the_edge_shard(tmp_path):
    from hoprank.tools.retrieval.qdrant_store import EdgeStore

    store = EdgeStore(tmp_path / "shard")
    store.ensure_collection(8)
    _, rows = _unit_rows(5, 8)
    store.upsert(rows)
    store.finish()
    store.close()
    reopened = EdgeStore(tmp_path / "shard")
    assert reopened.ensure_collection(8) is False and reopened.count() == 5
    assert reopened.ensure_collection(16) is True and reopened.count() == 0
    reopened.close()


def test_an_old_local_mode_store_is_replaced_by_edge(qindex):
    old = qindex.path / "qdrant"
    (old / "collection" / "hoprank").mkdir(parents=True)
    (old / "collection" / "hoprank" / "storage.sqlite").write_bytes(b"old local mode")
    (old / "meta.json").write_text('{"collections": {"hoprank": {}}}')
    q = qindex.retriever("qdrant")
    assert q.count() == len(qindex)
    assert not (old / "collection").exists() and not (old / "meta.json").exists()
    assert (old / "edge" / "hoprank" / "edge_config.json").is_file()
