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
