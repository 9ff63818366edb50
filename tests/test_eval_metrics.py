"""Every metric against hand-computed values (and the official HotpotQA normalisation rules)."""

from __future__ import annotations

import math

import pytest

from hoprank.evals import metrics as M


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("The Cat!", "cat"),
        ("  An apple, a day ", "apple day"),
        ("theater", "theater"),  # articles only as whole words
        ("the-end", "theend"),  # punctuation goes first, so "the" is glued and survives
        ("Well-known  \t  U.S. city", "wellknown us city"),
        ("A", ""),
        ("Yes.", "yes"),
        ("“Quoted”", "“quoted”"),  # string.punctuation is ASCII only, as in the official script
    ],
)
def test_normalize_answer_official_rules(raw, norm):
    assert M.normalize_answer(raw) == norm


def test_exact_match_and_f1_hand_computed():
    assert M.exact_match("The Eiffel Tower", "eiffel tower!") == 1.0
    assert M.exact_match("Eiffel Tower in Paris", "Eiffel Tower") == 0.0
    f1, p, r = M.f1_precision_recall("the Eiffel Tower in Paris", "Eiffel Tower")
    assert (p, r) == (0.5, 1.0)
    assert f1 == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity (Counter intersection)
    assert M.f1_score("paris paris", "paris") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert M.f1_score("London", "Paris") == 0.0
    assert M.f1_score("", "Paris") == 0.0


@pytest.mark.parametrize(
    "pred, gold, f1",
    [
        ("yes", "yes", 1.0),
        ("Yes.", "yes", 1.0),
        ("yes", "no", 0.0),
        ("no", "no way", 0.0),  # special prediction that differs from the gold
        ("yes it is", "yes", 0.0),  # special gold that differs from the prediction
        ("noanswer", "no answer", 0.0),
    ],
)
def test_f1_yes_no_noanswer_rule(pred, gold, f1):
    assert M.f1_score(pred, gold) == f1


RANKED = ["d3", "d1", "d5", "d2"]
GOLD = ["d1", "d2"]


def test_ranked_metrics_hand_computed():
    assert M.recall_at_k(RANKED, GOLD, 2) == 0.5
    assert M.recall_at_k(RANKED, GOLD, 4) == 1.0
    assert M.both_gold_at_k(RANKED, GOLD, 2) == 0.0
    assert M.both_gold_at_k(RANKED, GOLD, 4) == 1.0
    assert M.hits_at_k(RANKED, GOLD, 1) == 0.0
    assert M.hits_at_k(RANKED, GOLD, 2) == 1.0
    assert M.mrr_at_k(RANKED, GOLD, 4) == 0.5
    assert M.mrr_at_k(RANKED, GOLD, 1) == 0.0
    assert M.precision_at_k(RANKED, GOLD, 4) == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert M.ndcg_at_k(RANKED, GOLD, 4) == pytest.approx(dcg / idcg)
    assert M.map_at_k(RANKED, GOLD, 4) == pytest.approx((1 / 2 + 2 / 4) / 2)
    # normalised by min(#gold, k): one gold in the top 1 is a perfect MAP@1
    assert M.map_at_k(["d1", "d2"], GOLD, 1) == 1.0
    assert M.recall_at_k(RANKED, [], 3) == 0.0
    with pytest.raises(ValueError):
        M.recall_at_k(RANKED, GOLD, 0)


def test_dedup_keeps_best_rank():
    assert M.dedup_keep_order(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_supporting_paragraph_and_fact_scores():
    s = M.supporting_paragraph_scores(["A", "C"], ["A", "B"])
    assert s == {"em": 0.0, "f1": 0.5, "precision": 0.5, "recall": 0.5}
    assert M.supporting_paragraph_scores(["B", "A"], ["A", "B"])["em"] == 1.0
    f = M.supporting_fact_scores([("A", 0), ("B", 1)], [["A", 0], ["B", 2]])
    assert (f["precision"], f["recall"], f["em"]) == (0.5, 0.5, 0.0)


def test_multihop_rag_retrieval_protocol():
    # spaces and newlines are stripped from both sides before the substring test
    chunks = ["Alpha beta\ngamma delta", "nothing here"]
    s = M.mhr_retrieval_scores(chunks, ["beta gamma"])
    assert s == {"mhr_hits@4": 1.0, "mhr_hits@10": 1.0, "mhr_map@10": 1.0, "mhr_mrr@10": 1.0}
    # first relevant chunk at rank 5: outside hits@4, MRR 1/5
    chunks = ["x"] * 4 + ["the fact is here"] + ["y"] * 6
    s = M.mhr_retrieval_scores(chunks, ["fact is"])
    assert s["mhr_hits@4"] == 0.0 and s["mhr_hits@10"] == 1.0 and s["mhr_mrr@10"] == 0.2
    assert s["mhr_map@10"] == pytest.approx(0.2)
    # two facts found in the chunk at rank 2: AP adds 2/2, normalised by min(2, 10)
    s = M.mhr_retrieval_scores(["zzz", "fact one and fact two"], ["fact one", "fact two"])
    assert s["mhr_map@10"] == pytest.approx(0.5)
    # a relevant chunk at rank 11 does not count
    s = M.mhr_retrieval_scores(["x"] * 10 + ["fact"], ["fact"])
    assert s["mhr_hits@10"] == 0.0 and s["mhr_mrr@10"] == 0.0
    # case matters in the reference protocol
    assert M.mhr_retrieval_scores(["FACT"], ["fact"])["mhr_hits@4"] == 0.0


def test_word_overlap_accuracy():
    assert M.word_overlap_correct("Yes.", "yes") == 1.0
    assert M.word_overlap_correct("The Verge", "verge") == 1.0
    assert M.word_overlap_correct("Apple", "Google") == 0.0
    assert M.word_overlap_correct("", "Google") == 0.0


def test_decomposition_match_hand_computed():
    pred = ["who founded X", "when was X founded"]
    human = ["who founded X"]
    d = M.decomposition_match(pred, human)
    second = 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)
    p = (1 + second) / 2
    assert d["precision"] == pytest.approx(p)
    assert d["recall"] == 1.0
    assert d["f1"] == pytest.approx(2 * p / (p + 1))
    assert M.decomposition_match([], human)["f1"] == 0.0


def test_registry_declares_every_summary_metric():
    from hoprank.evals.results import aggregate

    row = {
        "id": "q",
        "type": "t",
        "status": "answered",
        "answer": {"em": 1.0, "f1": 1.0, "precision": 1.0, "recall": 1.0, "word_overlap": 1.0},
        "retrieval": {"recall@5": 1.0, "both_gold@5": 1.0, "mhr_hits@4": 1.0, "sp_em": 1.0},
        "tokens": {"llm_calls": 1.0, "prompt_tokens": 10.0, "completion_tokens": 2.0},
        "seconds": 0.5,
    }
    for name in aggregate([row]):
        spec = M.describe(name)
        assert spec.description and isinstance(spec.higher_is_better, bool)
    assert M.describe("retrieval.recall@7").description.endswith("top 7 distinct evidence documents")
    assert M.describe("cost.seconds_per_q").higher_is_better is False
    with pytest.raises(KeyError):
        M.describe("answer.bleu")
