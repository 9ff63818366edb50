"""``make_reranker(name, ...)``: one entry point for the CLI, the agent and the benchmarks.

Options are checked against the reranker's own constructor so a typo (``num_childs=3``) is
an error naming the option and listing the valid ones, never silently ignored. ``llm``,
``llm_config`` and ``embedder`` are accepted for every name (the CLI passes them all) and
only used by the rerankers that need them.
"""

from __future__ import annotations

import inspect
from typing import Any

from hoprank.tools.rerank.base import Reranker, RerankError, Scored
from hoprank.tools.rerank.cross_encoder import CrossEncoderReranker
from hoprank.tools.rerank.embedding import EmbeddingReranker
from hoprank.tools.rerank.listwise import ListwiseReranker
from hoprank.tools.rerank.pointwise import PointwiseReranker
from hoprank.tools.rerank.rebel import RebelReranker
from hoprank.tools.rerank.setwise import SetwiseReranker


class IdentityReranker(Reranker):
    """``none``: keeps the retrieval order (a baseline, and a no-op the agent can select)."""

    name = "none"
    description = "Keep the retrieval order (no reranking); only truncates to top_k."

    def _score(self, query, hits, top_k, subqueries, rec) -> list[Scored]:
        return [Scored(i, h.score) for i, h in enumerate(hits)]


RERANKERS: dict[str, type[Reranker]] = {
    "setwise": SetwiseReranker,
    "rebel": RebelReranker,
    "listwise": ListwiseReranker,
    "pointwise": PointwiseReranker,
    "cross-encoder": CrossEncoderReranker,
    "embedding": EmbeddingReranker,
    "none": IdentityReranker,
}
LLM_RERANKERS = ("setwise", "rebel", "listwise", "pointwise")


def reranker_names() -> list[str]:
    return list(RERANKERS)


def make_reranker(name: str, llm: Any = None, llm_config: Any = None, embedder: Any = None, **opts: Any) -> Reranker:
    """Build a reranker by name; an LLM reranker without ``llm`` builds one from ``llm_config``."""
    key = str(name).strip().lower().replace("_", "-")
    key = {"crossencoder": "cross-encoder", "rank-r1": "setwise", "rankgpt": "listwise"}.get(key, key)
    cls = RERANKERS.get(key)
    if cls is None:
        raise RerankError(f"unknown reranker {name!r}; choose one of: {', '.join(RERANKERS)}")
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in ("self", "llm", "embedder")]
    bad = [k for k in opts if k not in valid]
    if bad:
        raise RerankError(
            f"unknown option{'s' if len(bad) > 1 else ''} {', '.join(repr(b) for b in bad)} for the {key!r} reranker; "
            f"valid options: {', '.join(valid) or '(none)'}"
        )
    if key in LLM_RERANKERS:
        if llm is None:
            from hoprank.tools.llm import make_llm

            if llm_config is None:
                from hoprank.agent.config import LLMConfig

                llm_config = LLMConfig()
            llm = make_llm(llm_config)
        return cls(llm=llm, **opts)
    if key == "embedding":
        return cls(embedder=embedder, **opts)
    return cls(**opts)
