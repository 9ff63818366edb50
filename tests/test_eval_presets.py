"""Presets retrieve what their reported metrics need: every ``@k`` a run reports (up to
@10, MultiHop-RAG's deepest) is computed over a ranked list at least k deep."""

from __future__ import annotations

import pytest

from hoprank.agent.config import Config
from hoprank.evals.presets import DESCRIPTIONS, PRESETS, apply_preset
from hoprank.evals.runner import DEFAULT_KS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_retrieves_at_least_the_deepest_k(name):
    cfg = apply_preset(Config.load(None), name)
    assert cfg.retrieval.k >= max(DEFAULT_KS) == 10
    # the generator still reads 5 chunks: retrieval depth and context size are separate knobs
    assert cfg.agent.evidence_k == 5 and cfg.agent.answer_style == "short"
    assert name in DESCRIPTIONS


def test_naive_description_says_what_it_retrieves():
    assert "top-10" in DESCRIPTIONS["naive"] and "top 5 to the generator" in DESCRIPTIONS["naive"]
