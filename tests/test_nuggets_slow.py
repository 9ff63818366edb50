"""Nugget evaluation on the real embedded SmolLM2-135M: structure only (a 135M judge is
weak, so the test asserts every score is in [0, 1] or NaN-and-counted, and every fallback
is accounted for), plus nugget-cache reuse with a real model."""

from __future__ import annotations

import math

import pytest

from hoprank.evals.nuggets import METRICS, NuggetItem, nugget_eval

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from hoprank.agent.config import LLMConfig
    from hoprank.tools.llm import make_llm

    # generous timeout: the CI box is shared; a timeout would only be counted, not fail
    return make_llm(LLMConfig(cache=False, max_tokens=64, timeout_s=600))


def test_nugget_pipeline_on_smollm2(smollm, tmp_path):
    item = NuggetItem(
        "q1",
        "Where was Ada Quill born?",
        "Ada Quill was born in Marrow Bay in 1871.",
        ("Ada Quill was born in Marrow Bay in 1871. She founded the Quill Lamp Works.",),
        gold_answer="Marrow Bay",
    )
    res = nugget_eval(item, smollm, cache_dir=tmp_path, max_tokens=64)
    ns = res.nugget_sets["q1"]
    assert 1 <= len(ns.nuggets) <= 30
    assert all(1 <= len(n.text.split()) <= 12 for n in ns.nuggets)
    assert {n.importance for n in ns.nuggets} <= {"vital", "okay"}
    assert res.calls["create"] == 1 and res.calls["score"] == 1 and res.calls["assign"] == 1
    (s,) = res.per_response
    for m in METRICS:
        v = getattr(s, m)
        assert math.isnan(v) or 0.0 <= v <= 1.0
        assert res.undetermined[m] == (1 if math.isnan(v) else 0)
    if s.error is None:
        assert len(s.assigned) == len(ns.nuggets)
        assert {a.assignment for a in s.assigned} <= {"support", "partial_support", "not_support"}
    assert res.fallbacks["create_fallback_sentence_split"] == int(ns.fallback)

    # re-scoring another response reuses the cached nuggets: no creation or scoring call
    if list(tmp_path.glob("*.json")):
        again = nugget_eval(
            NuggetItem("q1", item.question, "Marrow Bay.", item.documents, item.gold_answer),
            smollm,
            cache_dir=tmp_path,
            max_tokens=64,
        )
        assert again.calls["create"] == 0 and again.calls["score"] == 0 and again.calls["cache_hits"] == 1
