"""Named ablation presets: config overrides merged into :class:`hoprank.agent.config.Config`.

Each preset adds one component to the one before it, so a table of presets reads as an
ablation ladder: ``naive`` -> ``decompose`` -> ``hop`` -> ``rerank-<method>`` -> ``full``.
Every preset asks for short answers (``agent.answer_style: short``) because EM/F1 on QA
datasets punish a correct answer wrapped in a sentence.

Retrieval depth vs generator context: every preset retrieves at least 10 candidates per
query (``retrieval.k``) while the generator reads the top 5 (``agent.evidence_k``). The
reported ranking metrics go up to @10 (MultiHop-RAG: Hits@10, MAP@10, MRR@10), and an @10
is only honest over a list of 10; the runner drops any @k deeper than what a run retrieved.
"""

from __future__ import annotations

import copy
from typing import Any

from hoprank.tools.errors import HoprankError
from hoprank.tools.rerank.factory import reranker_names

# every registered reranker except the no-op, in registry order
RERANK_METHODS = tuple(n for n in reranker_names() if n != "none")

_NAIVE: dict[str, Any] = {
    "retrieval": {"retriever": "hybrid", "k": 10},  # ranked depth 10 for @10 metrics; the generator reads 5
    "rerank": {"method": "none", "top_k": 5},
    "agent": {
        "mode": "pipeline",
        "decompose": "none",
        "max_hops": 0,
        "verify": False,
        "answer_style": "short",
        "evidence_k": 5,
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _build() -> dict[str, dict[str, Any]]:
    p: dict[str, dict[str, Any]] = {"naive": _NAIVE}
    p["decompose"] = _merge(p["naive"], {"agent": {"decompose": "auto"}})
    p["hop"] = _merge(p["decompose"], {"agent": {"max_hops": 2}})
    for m in RERANK_METHODS:
        # rerankers see 20 candidates per sub-query and keep the top 5 (MultiHop-RAG: 20 -> 10)
        p[f"rerank-{m}"] = _merge(p["hop"], {"retrieval": {"k": 20}, "rerank": {"method": m, "top_k": 5}})
    p["full"] = _merge(p["rerank-setwise"], {"agent": {"verify": True}})
    return p


PRESETS: dict[str, dict[str, Any]] = _build()

DESCRIPTIONS: dict[str, str] = {
    "naive": "top-10 hybrid retrieval, top 5 to the generator (no decomposition, no hop, no rerank)",
    "decompose": "naive + question decomposition (agent.decompose auto)",
    "hop": "decompose + up to 2 follow-up hops from bridge entities",
    **{f"rerank-{m}": f"hop + {m} reranking of 20 candidates to 5" for m in RERANK_METHODS},
    "full": "rerank-setwise + answer verification",
}


def preset(name: str) -> dict[str, Any]:
    """A deep copy of the named preset's overrides."""
    if name not in PRESETS:
        raise HoprankError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def apply_preset(config: Any, name: str | None) -> Any:
    """Merge a preset into a Config (or a dict / path accepted by ``Config.load``)."""
    from hoprank.agent.config import Config

    cfg = config if isinstance(config, Config) else Config.load(config)
    if not name:
        return cfg
    data = _merge(cfg.model_dump(), preset(name))
    return Config.load(data, env={})


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"agent": {"max_hops": 2}}`` -> ``{"agent.max_hops": 2}`` (for tables)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
