"""Nugget evaluation (AutoNuggetizer scheme): stages, hand-computed scores, fallbacks, cache."""

from __future__ import annotations

import json
import math

import pytest

from hoprank.evals.nuggets import (
    AssignedNugget,
    NuggetItem,
    calculate_nugget_scores,
    clean_nuggets,
    fallback_nuggets,
    nugget_eval,
    parse_labels,
    parse_string_list,
)
from hoprank.prompts import placeholders
from hoprank.tools.llm.base import ScriptedLLM

QUESTION = "Who founded the lamp works in Marrow Bay and when was she born?"
DOCS = (
    "Ada Quill was born in Marrow Bay in 1871. She founded the Quill Lamp Works.",
    "Quill Lamp Works was founded in 1896 in Marrow Bay.",
)
NUGGETS = [
    "Ada Quill founded Quill Lamp Works",
    "Ada Quill was born in 1871",
    "Quill Lamp Works founded in 1896",
    "Marrow Bay is a port town",
]


def stage(messages) -> str:
    system = messages[0]["content"]
    if "NuggetizeScoreLLM" in system:
        return "score"
    if "NuggetizeAssignerLLM" in system:
        return "assign"
    if "NuggetizeLLM" in system:
        return "create"
    raise AssertionError(f"unexpected prompt: {system[:80]}")


def router(assign_replies: dict[str, str], create: str | None = None, score: str | None = None):
    """A scripted judge: replies by stage; assignment replies picked by the response text."""

    def reply(messages) -> str:
        s = stage(messages)
        if s == "create":
            return create if create is not None else json.dumps(NUGGETS)
        if s == "score":
            return score if score is not None else '["vital", "vital", "okay", "okay"]'
        user = messages[1]["content"]
        for marker, text in assign_replies.items():
            if marker in user:
                return text
        return "???"

    return reply


R1 = "Ada Quill founded it; she was born in the 1870s. It opened in 1896."
R2 = "She was born in 1871."


def test_prompts_have_pinned_placeholders():
    assert placeholders("nugget_create.user") == {"query", "context", "nuggets", "nuggets_length", "max_nuggets"}
    assert placeholders("nugget_score.user") == {"query", "nuggets", "num_nuggets"}
    assert placeholders("nugget_assign.user") == {"query", "passage", "nuggets", "num_nuggets"}
    for name in ("nugget_create", "nugget_score", "nugget_assign"):
        assert placeholders(f"{name}.system") == set()


def test_end_to_end_hand_computed_scores():
    llm = ScriptedLLM(
        router(
            {
                "founded it": '["support", "partial_support", "support", "not_support"]',
                "born in 1871": "Labels: ['not_support', 'support', 'not_support', 'not_support']",
            }
        )
    )
    items = [
        NuggetItem("q1", QUESTION, R1, DOCS, gold_answer="Ada Quill, 1871"),
        NuggetItem("q1", QUESTION, R2, DOCS, gold_answer="Ada Quill, 1871"),
    ]
    res = nugget_eval(items, llm)
    r1, r2 = res.per_response
    # R1: vital = {support, partial}; all = {support, partial, support, not}
    assert (r1.v_strict, r1.a_strict, r1.v, r1.a) == (0.5, 0.5, 0.75, 0.625)
    # R2: vital = {not, support}; all = {not, support, not, not}
    assert (r2.v_strict, r2.a_strict, r2.v, r2.a) == (0.5, 0.25, 0.5, 0.25)
    ref = {"v_strict": 0.5, "a_strict": 0.375, "v": 0.625, "a": 0.4375}
    # every response has vital nuggets: the determined-only variants equal the reference
    assert res.aggregates == pytest.approx({**ref, **{f"{k}_determined_only": v for k, v in ref.items()}})
    assert set(res.undetermined.values()) == {0}
    # one question shared by two responses: nuggets built once, assigned twice
    assert res.calls == {"create": 1, "score": 1, "assign": 2, "cache_hits": 0}
    assert res.fallbacks["create_fallback_sentence_split"] == 0
    assert res.fallbacks["score_default_okay"] == 0
    assert res.fallbacks["assign_default_not_support"] == 0
    assert r1.n_vital == 2 and r1.n_nuggets == 4
    assert [a.assignment for a in r1.assigned] == ["support", "partial_support", "support", "not_support"]
    # the gold answer and documents reach the creation prompt, as untrusted data
    create_prompt = next(m for m in llm.calls if stage(m) == "create")[1]["content"]
    assert "Answer: Ada Quill, 1871" in create_prompt and "[2] Ada Quill was born" in create_prompt
    out = res.to_dict()
    assert out["aggregates"]["a"] == pytest.approx(0.4375)
    json.dumps(out)  # serialisable


def test_windows_of_ten_documents_and_nuggets_iterate():
    docs = tuple(f"Document number {i} says fact {i}." for i in range(12))
    many = [f"fact {i} holds" for i in range(12)]
    seen_initial: list[str] = []

    def reply(messages):
        s = stage(messages)
        if s == "create":
            user = messages[1]["content"]
            seen_initial.append(user.split("Initial Nugget List:")[1].splitlines()[0].strip())
            return json.dumps(many[:6] if len(seen_initial) == 1 else many)
        if s == "score":
            n = int(messages[1]["content"].split("label each of the ")[1].split()[0])
            return json.dumps(["vital"] * n)
        return json.dumps(["support"] * 10)

    llm = ScriptedLLM(reply)
    res = nugget_eval(NuggetItem("q", "what facts?", "all of them", docs), llm)
    assert res.calls["create"] == 2  # 12 documents -> windows of 10 + 2
    assert seen_initial[0] == "[]" and json.loads(seen_initial[1]) == many[:6]  # iterative update
    assert res.calls["score"] == 2 and res.calls["assign"] == 2  # 12 nuggets -> 10 + 2
    s = res.per_response[0]
    assert s.n_nuggets == 12 and s.v_strict == 1.0 and s.a == 1.0


def test_garbage_from_a_small_model_falls_back_and_is_counted():
    llm = ScriptedLLM(["I am a helpful assistant. How can I help you today?"])
    res = nugget_eval(NuggetItem("q9", QUESTION, R1, DOCS, gold_answer="Ada Quill"), llm)
    ns = res.nugget_sets["q9"]
    assert ns.fallback is True
    expected = fallback_nuggets("Ada Quill", DOCS)
    assert [n.text for n in ns.nuggets] == expected
    assert expected[0] == "Ada Quill" and all(1 <= len(t.split()) <= 12 for t in expected)
    n = len(expected)
    assert res.fallbacks["create_unparseable"] == 1
    assert res.fallbacks["create_fallback_sentence_split"] == 1
    assert res.fallbacks["score_default_okay"] == n  # every label defaulted to okay
    assert res.fallbacks["assign_default_not_support"] == n
    assert res.fallbacks["responses_on_fallback_nuggets"] == 1
    s = res.per_response[0]
    assert s.nugget_fallback and s.a_strict == 0.0 and s.a == 0.0
    # no vital nugget: the reference scores V = 0.0; hoprank's determined-only variant leaves it out
    assert (s.v_strict, s.v) == (0.0, 0.0)
    assert s.v_strict_determined_only is None and s.v_determined_only is None and s.a_determined_only == 0.0
    assert res.undetermined == {
        "v_strict": 0,
        "a_strict": 0,
        "v": 0,
        "a": 0,
        "v_strict_determined_only": 1,
        "a_strict_determined_only": 0,
        "v_determined_only": 1,
        "a_determined_only": 0,
    }
    assert res.aggregates["v"] == 0.0 and res.aggregates["v_determined_only"] is None and res.aggregates["a"] == 0.0
    assert res.to_dict()["nugget_fallback_qids"] == ["q9"]


def test_partial_label_lists_default_only_the_missing_ones():
    llm = ScriptedLLM(router({"founded it": "support"}, score="vital"))
    res = nugget_eval(NuggetItem("q1", QUESTION, R1, DOCS), llm)
    s = res.per_response[0]
    # labels: vital, okay, okay, okay -> assignments: support, not, not, not
    assert res.fallbacks["score_default_okay"] == 3
    assert res.fallbacks["assign_default_not_support"] == 3
    assert (s.v_strict, s.a_strict, s.v, s.a) == (1.0, 0.25, 1.0, 0.25)


def test_cache_reuse_makes_no_creation_calls(tmp_path):
    first = ScriptedLLM(router({"founded it": '["support", "support", "support", "support"]'}))
    r1 = nugget_eval(NuggetItem("q1", QUESTION, R1, DOCS, "Ada Quill"), first, cache_dir=tmp_path)
    assert r1.calls["create"] == 1 and r1.calls["score"] == 1 and r1.calls["cache_hits"] == 0
    assert len(list(tmp_path.glob("q1-*.json"))) == 1

    # another run (different response), fresh judge: only assignment calls are paid
    second = ScriptedLLM(router({"born in 1871": '["not_support", "support", "not_support", "not_support"]'}))
    r2 = nugget_eval(NuggetItem("q1", QUESTION, R2, DOCS, "Ada Quill"), second, cache_dir=tmp_path)
    assert r2.calls == {"create": 0, "score": 0, "assign": 1, "cache_hits": 1}
    assert {stage(m) for m in second.calls} == {"assign"}
    assert r2.nugget_sets["q1"].cached
    assert [n.text for n in r2.nugget_sets["q1"].nuggets] == NUGGETS
    assert r2.per_response[0].v_strict == 0.5

    # changed gold evidence -> different key -> nuggets rebuilt
    third = ScriptedLLM(router({}))
    r3 = nugget_eval(NuggetItem("q1", QUESTION, R2, DOCS[:1], "Ada Quill"), third, cache_dir=tmp_path)
    assert r3.calls["create"] == 1 and r3.calls["cache_hits"] == 0


def test_llm_failure_marks_response_failed_and_is_not_cached(tmp_path):
    class Flaky(ScriptedLLM):
        def _complete(self, messages, **params):
            if stage(messages) in ("assign", "create"):
                raise ConnectionError("endpoint down")
            return super()._complete(messages, **params)

    llm = Flaky(router({}))
    res = nugget_eval(NuggetItem("q1", QUESTION, R1, DOCS, "Ada Quill"), llm, cache_dir=tmp_path)
    s = res.per_response[0]
    assert s.error and "endpoint down" in s.error
    assert all(math.isnan(getattr(s, m)) for m in ("v_strict", "a_strict", "v", "a"))
    assert all(getattr(s, f"{m}_determined_only") is None for m in ("v_strict", "a_strict", "v", "a"))
    assert set(res.undetermined.values()) == {1}  # a failed judge call is left out of every mean, counted
    assert res.fallbacks["assign_llm_error"] == 1 and res.fallbacks["create_llm_error"] == 1
    assert not list(tmp_path.glob("*.json"))  # a set built during an outage is not frozen


def test_parsers_survive_garbage():
    assert parse_string_list("") is None
    assert parse_string_list("no list here") is None
    assert parse_string_list("```python\n['a b', 'c']\n```") == ["a b", "c"]
    assert parse_string_list("Here:\n- first nugget\n- second nugget") == ["first nugget", "second nugget"]
    assert parse_string_list("[1, 2, 3]") is None
    from collections import Counter

    fb: Counter = Counter()
    long = " ".join(["word"] * 13)
    assert clean_nuggets(["  A b ", "a b.", long, "", "c"], fb) == ["A b", "c"]
    assert fb["create_dropped_too_long"] == 1
    assert clean_nuggets([f"n{i}" for i in range(40)], Counter()) == [f"n{i}" for i in range(30)]
    assert parse_labels("VITAL ok Okay", 2, "importance") == (["vital", "okay"], 0)
    assert parse_labels(None, 2, "assignment") == (["not_support", "not_support"], 2)


def test_scores_of_an_empty_nugget_set_are_zero_as_in_the_reference():
    s = calculate_nugget_scores("q", [])
    assert all(getattr(s, m) == 0.0 for m in ("v_strict", "a_strict", "v", "a"))
    assert all(getattr(s, f"{m}_determined_only") is None for m in ("v_strict", "a_strict", "v", "a"))
    one = calculate_nugget_scores("q", [AssignedNugget("x", "okay", "partial_support")])
    assert one.v == 0.0 and one.v_determined_only is None and one.a == 0.5 and one.a_strict == 0.0
