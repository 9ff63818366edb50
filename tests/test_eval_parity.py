"""Parity of hoprank's headline metrics with the reference implementations.

Each reference is re-stated here in our own words from its published code (not copied),
deliberately written differently from hoprank's implementation (string search instead of a
regex, explicit counting loops), and compared on generated cases plus the edge cases that
once disagreed: "No." vs "No", "-", empty strings, responses without a vital nugget.

* MultiHop-RAG ``qa_evaluate.py`` (yixuantt/MultiHop-RAG): when the model answer contains
  "The answer", take the text between 'The answer to the question is "' and the next '"'
  on the same line (first such occurrence), else the whole answer; a pair is a true positive
  when the lower-cased whitespace tokens of both sides intersect; questions with an empty gold
  answer are skipped; per group it prints precision tp/(tp+fp), recall tp/(tp+fn) with
  fn = n - tp, F1, and "accuracy" (tp+tn)/(tp+tn+fp+fn) with tn = n - tp.
* nuggetizer ``core/metrics.py`` (castorini/nuggetizer): per response, supported vital /
  vital (0.0 when there is no vital nugget), supported / all (0.0 when there are none), the
  same with partial support counting 0.5; the global score is ``statistics.mean`` over all
  responses.
* ragas 0.4.3 ``AnswerRelevancy``: mean cosine between the question and the questions
  generated back, times 0 when every generated question is noncommittal; 0.0 when none was
  generated; not clipped. Aggregates: ``np.nanmean``.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import defaultdict

import numpy as np
import pytest

from hoprank.evals import metrics as M
from hoprank.evals.datasets import QAExample
from hoprank.evals.nuggets import AssignedNugget, calculate_nugget_scores, global_scores
from hoprank.evals.runner import score_row, summarize

# --------------------------------------------------------------------------- MultiHop-RAG QA

MARKER = 'The answer to the question is "'


def ref_extract(answer: str) -> str:
    if "The answer" not in answer:
        return answer
    start = 0
    while True:
        at = answer.find(MARKER, start)
        if at < 0:
            return answer
        rest = answer[at + len(MARKER) :]
        close = rest.find('"')
        line_end = rest.find("\n")
        if close >= 0 and (line_end < 0 or close < line_end):
            return rest[:close]
        start = at + 1


def ref_true_positive(answer: str, gold: str) -> bool:
    mine = set(ref_extract(answer).lower().split())
    theirs = set(gold.lower().split())
    return any(word in theirs for word in mine)


def ref_group_metrics(pairs: list[tuple[str, str]]) -> dict[str, float]:
    kept = [(a, g) for a, g in pairs if g]
    tp = fp = 0
    for a, g in kept:
        if ref_true_positive(a, g):
            tp += 1
        else:
            fp += 1
    fn = len(kept) - tp
    tn = len(kept) - tp
    precision = tp / (tp + fp) if tp + fp else 0
    recall = tp / (tp + fn) if tp + fn else 0
    f1 = 2 * (precision * recall) / (precision + recall) if precision + recall else 0
    everything = tp + tn + fp + fn
    return {
        "mhr_precision": precision,
        "mhr_recall": recall,
        "mhr_f1": f1,
        "mhr_accuracy": (tp + tn) / everything if everything else 0,
    }


VOCAB = [
    "No",
    "No.",
    "no",
    "Yes",
    "yes,",
    "YES",
    "-",
    "",
    "the",
    "Apple",
    "apple",
    "Google.",
    "Trump",
    "Insufficient",
    "information.",
    "2023",
    "TechCrunch",
    "Sam\u00a0Altman",
    "über",
    '"quoted"',
]


def random_text(rng: random.Random) -> str:
    roll = rng.random()
    words = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(0, 4)))
    if roll < 0.15:
        return f'The answer to the question is "{words}". Because {rng.choice(VOCAB)}'
    if roll < 0.2:
        return (
            f'The answer to the question is "{words}\nsplit" then The answer to the question is "{rng.choice(VOCAB)}"'
        )
    if roll < 0.25:
        return f"The answer is {words}"
    if roll < 0.3:
        return rng.choice(["\t", "  ", "\n"]).join(words.split(" "))
    return words


EDGE_CASES = [
    ("No.", "No", 0.0),
    ("No", "no", 1.0),
    ("-", "-", 1.0),
    ("-", "No", 0.0),
    ("", "Yes", 0.0),
    ("Yes", "", None),
    ("", "", None),
    ("yes.", "Yes", 0.0),
    ('The answer to the question is "Yes".', "yes", 1.0),
    ("The answer is: No", "no", 1.0),
    ('The answer to the question is "maybe', "maybe", 0.0),
]


@pytest.mark.parametrize(("pred", "gold", "expected"), EDGE_CASES)
def test_mhr_edge_cases_match_the_reference(pred, gold, expected):
    ours = M.mhr_qa_correct(pred, gold)
    assert ours == expected
    if gold:
        assert ours == float(ref_true_positive(pred, gold))
    # the lenient variant is the one that forgives punctuation
    if (pred, gold) == ("No.", "No"):
        assert M.word_overlap_lenient(pred, gold) == 1.0


def test_mhr_qa_pairs_and_groups_agree_on_generated_cases():
    rng = random.Random(14)
    pairs_by_type: dict[str, list[tuple[str, str]]] = defaultdict(list)
    disagreements = 0
    for i in range(4000):
        pred, gold = random_text(rng), random_text(rng)
        assert M.mhr_extract_answer(pred) == ref_extract(pred)
        ours = M.mhr_qa_correct(pred, gold)
        theirs = None if not gold else float(ref_true_positive(pred, gold))
        disagreements += ours != theirs
        pairs_by_type[f"type{i % 7}"].append((pred, gold))
    assert disagreements == 0
    for pairs in list(pairs_by_type.values()) + [[p for ps in pairs_by_type.values() for p in ps], []]:
        ours = M.mhr_qa_metrics([M.mhr_qa_correct(p, g) for p, g in pairs])
        theirs = ref_group_metrics(pairs)
        assert {k: ours[k] for k in theirs} == theirs  # exact, not approximate


def test_mhr_summary_by_type_equals_the_reference(tmp_path):
    """Through the runner's rows and summary (what `hoprank eval` reports)."""
    from hoprank.tools.types import Answer

    rng = random.Random(7)
    rows, pairs_by_type = [], defaultdict(list)
    for i in range(300):
        qtype = rng.choice(["inference_query", "comparison_query", "temporal_query", "null_query"])
        pred, gold = random_text(rng), random_text(rng) or "Insufficient information."
        ex = QAExample(f"q{i}", "question?", gold, qtype, metadata={"dataset": "multihop-rag"})
        status = "failed" if i % 37 == 0 else "answered"
        answer = None if status == "failed" else Answer("question?", pred)
        rows.append(score_row(ex, answer, 0.1, score_retrieval=False))
        pairs_by_type[qtype].append(("" if status == "failed" else pred, gold))
    s = summarize(rows)
    for qtype, pairs in pairs_by_type.items():
        expected = ref_group_metrics(pairs)
        assert {k: s["by_type"][qtype][f"answer.{k}"] for k in expected} == pytest.approx(expected, abs=1e-6)
    everything = ref_group_metrics([p for ps in pairs_by_type.values() for p in ps])
    assert {k: s["metrics"][f"answer.{k}"] for k in everything} == pytest.approx(everything, abs=1e-6)
    # the printed "accuracy" is n / (n + 2 * wrong), not the share correct
    n = s["metrics"]["n.mhr_qa_scored"]
    wrong = n - round(s["metrics"]["answer.mhr_precision"] * n)
    assert s["metrics"]["answer.mhr_accuracy"] == pytest.approx(n / (n + 2 * wrong), abs=1e-6)


# --------------------------------------------------------------------------- nuggets


def ref_nugget_scores(nuggets: list[dict[str, str]]) -> tuple[float, float, float, float]:
    def ratio(group: list[dict[str, str]], half: float) -> float:
        if len(group) == 0:
            return 0.0
        got = 0.0
        full = 0
        for n in group:
            if n["assignment"] == "support":
                full += 1
            elif n["assignment"] == "partial_support":
                got += half
        return (full + got) / len(group)

    vital = [n for n in nuggets if n["importance"] == "vital"]
    return ratio(vital, 0.0), ratio(nuggets, 0.0), ratio(vital, 0.5), ratio(nuggets, 0.5)


def random_nuggets(rng: random.Random) -> list[dict[str, str]]:
    kind = rng.random()
    n = 0 if kind < 0.1 else rng.randint(1, 14)
    only_okay = kind < 0.25
    return [
        {
            "text": f"n{i}",
            "importance": "okay" if only_okay else rng.choice(["vital", "okay"]),
            "assignment": rng.choice(["support", "partial_support", "not_support"]),
        }
        for i in range(n)
    ]


def test_nugget_scores_and_global_mean_agree_on_generated_cases():
    rng = random.Random(3)
    for _ in range(60):
        records = [random_nuggets(rng) for _ in range(rng.randint(1, 25))]
        per = [
            calculate_nugget_scores(f"q{i}", [AssignedNugget(n["text"], n["importance"], n["assignment"]) for n in r])
            for i, r in enumerate(records)
        ]
        refs = [ref_nugget_scores(r) for r in records]
        for ours, ref in zip(per, refs):
            assert (ours.v_strict, ours.a_strict, ours.v, ours.a) == ref
        means, left_out = global_scores(per)
        expected = [statistics.mean(r[j] for r in refs) for j in range(4)]
        assert [means[m] for m in ("v_strict", "a_strict", "v", "a")] == expected
        assert all(left_out[m] == 0 for m in ("v_strict", "a_strict", "v", "a"))
        no_vital = sum(1 for r in records if not any(n["importance"] == "vital" for n in r))
        assert left_out["v_strict_determined_only"] == no_vital


def test_no_vital_nugget_counts_zero_in_the_headline_and_is_left_out_of_the_variant():
    """The issue's example: reference V_strict 0.5; the determined-only variant 1.0 with 1 left out."""
    supported = calculate_nugget_scores("a", [AssignedNugget("x", "vital", "support")])
    no_vital = calculate_nugget_scores("b", [AssignedNugget("y", "okay", "support")])
    means, left_out = global_scores([supported, no_vital])
    assert means["v_strict"] == 0.5 and means["v_strict_determined_only"] == 1.0
    assert left_out["v_strict"] == 0 and left_out["v_strict_determined_only"] == 1
    assert means["a_strict"] == 1.0  # both have nuggets: no difference there
    nothing = calculate_nugget_scores("c", [])
    means, left_out = global_scores([supported, nothing])
    assert means["a"] == 0.5 and means["a_determined_only"] == 1.0 and left_out["a_determined_only"] == 1


# --------------------------------------------------------------------------- RAGAS answer relevancy


class VectorTable:
    """An embedder with fixed vectors, so cosines are known exactly (and can be negative)."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table

    def encode(self, texts):
        return np.asarray([self.table[t] for t in texts], dtype=np.float32)

    encode_queries = encode  # the question and the generated questions are both queries


def ref_answer_relevancy(question_vec, generated: list[tuple[list[float], bool]]) -> float:
    if not generated:
        return 0.0
    q = np.asarray(question_vec, dtype=float)
    cosines = []
    for vec, _ in generated:
        v = np.asarray(vec, dtype=float)
        cosines.append(float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q))))
    evasive = all(flag for _, flag in generated)
    return 0.0 if evasive else sum(cosines) / len(cosines)


@pytest.mark.parametrize(
    ("vectors", "noncommittal"),
    [
        ([[-1.0, 0.0]], False),
        ([[-0.6, 0.8], [0.0, 1.0]], False),
        ([[1.0, 0.0]], True),
        ([[0.6, -0.8], [-1.0, 0.0]], False),
    ],
)
def test_ragas_answer_relevancy_keeps_ragas_own_value(vectors, noncommittal):
    from hoprank.evals.ragas_eval import RagasSample, ragas_scores
    from hoprank.tools.llm.base import ScriptedLLM

    question = "Who founded the lamp works?"
    generated = [f"generated question {i}?" for i in range(len(vectors))]
    table = {question: [1.0, 0.0], **dict(zip(generated, vectors))}
    replies = iter(generated)

    def reply(messages):
        return json.dumps({"question": next(replies), "noncommittal": int(noncommittal)})

    res = ragas_scores(
        [RagasSample(question, "Ada Quill.")],
        ScriptedLLM(reply),
        VectorTable(table),
        metrics=["answer_relevancy"],
        strictness=len(vectors),
    )
    expected = ref_answer_relevancy([1.0, 0.0], [(v, noncommittal) for v in vectors])
    assert res.samples[0].scores["answer_relevancy"] == pytest.approx(expected, abs=1e-6)
    assert res.aggregates["answer_relevancy"] == pytest.approx(expected, abs=1e-6)
    if expected < 0:  # unclipped: ragas says -1.0 for an answer that points away from the question
        assert res.aggregates["answer_relevancy"] < 0


def test_ragas_aggregate_is_nanmean():
    from hoprank.evals.ragas_eval import ragas_nanmean

    assert ragas_nanmean([0.5, float("nan"), -0.25]) == float(np.nanmean([0.5, np.nan, -0.25]))
    assert ragas_nanmean([float("nan")]) is None and ragas_nanmean([]) is None
