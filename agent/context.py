"""What the graph's nodes need besides the state: settings and clients.

Kept out of the state (LangGraph runtime context) so checkpoints hold data only, and so one
compiled graph serves every request with the same clients."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hoprank.agent.config import Config
from hoprank.tools.ingest.index import Index
from hoprank.tools.llm.base import ChatLLM
from hoprank.tools.llm.base import usage_of as llm_usage_of
from hoprank.tools.types import Hit


@dataclass
class AgentContext:
    config: Config
    index: Index
    llm_factory: Any  # () -> ChatLLM, so a run that needs no LLM never loads one
    reranker_factory: Any  # () -> Reranker | None

    @property
    def llm(self) -> ChatLLM:
        return self.llm_factory()

    @property
    def reranker(self):
        return self.reranker_factory()

    def retriever(self):
        r = self.config.retrieval
        opts = {"url": r.qdrant_url} if r.retriever.startswith("qdrant") and r.qdrant_url else {}
        if r.stem:
            opts["stem"] = True
        return self.index.retriever(r.retriever, **opts)


def hit_brief(h: Hit) -> dict[str, Any]:
    """A hit as it appears in the trace: enough to audit, small enough to stream."""
    d = {"id": h.id, "title": h.title, "score": round(float(h.score), 4), "rank": h.rank}
    if h.rationale:
        d["rationale"] = h.rationale[:500]
    return d


def usage_of(*responses: Any) -> dict[str, int]:
    """LLM accounting of the calls a node made: cache hits count like paid calls (so budgets
    and eval costs do not depend on the cache's state) and again apart as ``cached_calls`` /
    ``cached_tokens``. One definition, in the LLM layer: :func:`hoprank.tools.llm.base.usage_of`."""
    return llm_usage_of(*responses)


def step(
    node: str, summary: str, t0: float, tokens: int = 0, llm: dict[str, int] | None = None, **data: Any
) -> dict[str, Any]:
    """One trace entry. ``llm`` carries the node's LLM usage (see :func:`usage_of`)."""
    llm = llm or {}
    tokens = tokens or int(llm.get("prompt_tokens", 0)) + int(llm.get("completion_tokens", 0))
    return {
        "node": node,
        "summary": summary,
        "elapsed_s": round(time.perf_counter() - t0, 4),
        "tokens": tokens,
        "llm": llm,
        "data": data,
    }
