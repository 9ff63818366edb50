from __future__ import annotations

import pytest

from hoprank.tools.errors import InvalidQueryError
from hoprank.tools.retrieval.fusion import rrf, weighted_fusion
from hoprank.tools.retrieval.tokenize import Tokenizer
from hoprank.tools.types import Hit

QUERIES = {
    "Which river is 212 kilometres long?": "seren.md",
    "clockmaker who repaired the town clock": "otto.md",
    "tidal lantern lighthouse port town": "marrow-bay.md",
}


@pytest.mark.parametrize("name", ["bm25", "rank-bm25", "dense", "hybrid"])
def test_retrievers_find_the_right_document(built_index, name):
    r = built_index.retriever(name)
    for q, doc in QUERIES.items():
        hits = r.search(q, k=3)
        assert hits, (name, q)
        assert hits[0].doc_id == doc, (name, q, [h.doc_id for h in hits])
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(hits[i].score >= hits[i + 1].score for i in range(len(hits) - 1))
        assert hits[0].text and hits[0].metadata["source"].endswith(doc)


def test_batch_equals_single(built_index):
    for name in ["bm25", "dense", "hybrid"]:
        r = built_index.retriever(name)
        batch = r.search_batch(list(QUERIES), k=4)
        single = [r.search(q, k=4) for q in QUERIES]
        assert [[h.id for h in hs] for hs in batch] == [[h.id for h in hs] for hs in single]


def test_bm25s_and_rank_bm25_agree_on_ranking(built_index):
    a, b = built_index.retriever("bm25"), built_index.retriever("rank-bm25")
    for q in QUERIES:
        assert [h.id for h in a.search(q, 3)][:1] == [h.id for h in b.search(q, 3)][:1]


@pytest.mark.parametrize("name", ["bm25", "rank-bm25", "dense", "hybrid"])
@pytest.mark.parametrize("query", ["", "   ", "\n\t", "x" * 20_001])
def test_bad_queries_are_clear_errors(built_index, name, query):
    with pytest.raises(InvalidQueryError, match="empty|limit"):
        built_index.retriever(name).search(query)


def test_k_larger_than_corpus_and_unknown_terms(built_index):
    hits = built_index.retriever("dense").search("lantern", k=1000)
    assert len(hits) == len(built_index)
    assert built_index.retriever("bm25").search("zzzqqq unknownword", k=5) == []
    with pytest.raises(ValueError):
        built_index.retriever("bm25").search("lantern", k=0)


def test_non_ascii_text_and_queries(built_index):
    for name in ["bm25", "dense"]:
        hits = built_index.retriever(name).search("Zoë Małecka crème brûlée", k=2)
        assert hits[0].doc_id == "cafe.md"
    assert Tokenizer()("Café Ñandú São") == ["café", "ñandú", "são"]


def test_stopwords_configurable():
    assert Tokenizer()("the lantern of the bay") == ["lantern", "bay"]
    assert Tokenizer(stopwords=None)("the lantern") == ["the", "lantern"]
    assert Tokenizer(stopwords=["lantern"])("the lantern") == ["the"]


def _h(i: str, s: float) -> Hit:
    return Hit(id=i, score=s, text=i)


def test_rrf_hand_computed():
    a = [_h("x", 9), _h("y", 5), _h("z", 1)]
    b = [_h("y", 0.9), _h("w", 0.8)]
    fused = rrf([a, b], k=60)
    expect = {"x": 1 / 61, "y": 1 / 62 + 1 / 61, "z": 1 / 63, "w": 1 / 62}
    assert [h.id for h in fused] == ["y", "x", "w", "z"]
    for h in fused:
        assert h.score == pytest.approx(expect[h.id])
    assert [h.rank for h in fused] == [1, 2, 3, 4]
    assert [h.id for h in rrf([a, b], k=60, weights=[1, 3], top_k=2)] == ["y", "w"]


def test_weighted_fusion_hand_computed():
    a = [_h("x", 10), _h("y", 6), _h("z", 2)]  # normalised: 1, .5, 0
    b = [_h("y", 0.5), _h("w", 0.1)]  # normalised: 1, 0
    fused = weighted_fusion([a, b], weights=[1.0, 2.0])
    scores = {h.id: h.score for h in fused}
    assert scores == pytest.approx({"x": 1.0, "y": 0.5 + 2.0, "z": 0.0, "w": 0.0})
    assert fused[0].id == "y"


def test_unknown_retriever_lists_choices(built_index):
    with pytest.raises(ValueError, match="bm25"):
        built_index.retriever("nope")


def test_tool_spec_has_json_schema(built_index):
    spec = built_index.retriever("bm25").as_tool_spec()
    assert spec["name"] == "search_bm25" and spec["parameters"]["required"] == ["query"]
