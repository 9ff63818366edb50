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
from hoprank.tools.llm.base import usage_of as usage_of  # the nodes' one accounting of their calls
from hoprank.tools.retrieval.factory import retriever_options
from hoprank.tools.types import Hit, Step, Usage


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
        return self.index.retriever(r.retriever, **retriever_options(r.retriever, url=r.qdrant_url, stem=r.stem))


def hit_brief(h: Hit) -> dict[str, Any]:
    """A hit as it appears in the trace: enough to audit, small enough to stream."""
    d = {"id": h.id, "title": h.title, "score": round(float(h.score), 4), "rank": h.rank}
    if h.rationale:
        d["rationale"] = h.rationale[:500]
    return d


def step(
    node: str,
    summary: str,
    t0: float,
    llm: Usage | dict[str, Any] | None = None,
    fallback: str | None = None,
    **detail: Any,
) -> dict[str, Any]:
    """One trace entry: a :class:`~hoprank.tools.types.Step` as the dict the graph state,
    the API and saved traces carry. ``llm`` is the node's LLM usage (:func:`usage_of` of its
    responses; a dict in any spelling :meth:`Usage.from_dict` reads), ``fallback`` the named
    fallback the node took, ``detail`` its node-specific fields."""
    usage = Usage.from_dict(llm) if isinstance(llm, dict) else llm
    return Step(node, summary, time.perf_counter() - t0, usage, detail, fallback).to_dict()
