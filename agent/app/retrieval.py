"""Retrieval without an answer: the passages the agent would read for a single-hop question.

Why one module: :meth:`Agent.retrieve` and the LangChain retriever
(:class:`~hoprank.agent.app.langchain.HoprankRetriever`, which may have no agent) must return
the same passages, so both call these functions with a config, an index and a way to get the
reranker (built lazily: a caller that never reranks never loads a model).

The steps follow the graph's first round, with the counts of :meth:`Config.candidates`: the
configured retriever's ``per_query`` candidates, the injection screen of the fuse step
(``agent.injection_guard``), then the configured reranker over the first ``rerank_depth``,
the best ``k`` kept (default ``evidence``, what the generator reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hoprank.agent.config import Config
from hoprank.agent.context import AgentContext
from hoprank.tools import safety
from hoprank.tools.errors import MAX_QUESTION_CHARS, validate_query
from hoprank.tools.ingest.index import Index
from hoprank.tools.types import Hit

RerankerFactory = Callable[[], Any]  # () -> Reranker | None


def _candidates(config: Config, index: Index, reranker: RerankerFactory, query: str) -> tuple[list[Hit], Any]:
    """The screened candidates for ``query`` and the reranker (None: no reranking)."""
    context = AgentContext(config=config, index=index, llm_factory=None, reranker_factory=reranker)
    hits = context.retriever().search(query, config.candidates().per_query)
    if safety.screens(config.agent.injection_guard):
        hits, _ = safety.screen_hits(hits)
    return hits, reranker()


def retrieve(config: Config, index: Index, reranker: RerankerFactory, query: str, k: int | None = None) -> list[Hit]:
    """The best ``k`` passages for ``query`` (see the module docstring)."""
    q = validate_query(query, max_chars=MAX_QUESTION_CHARS)
    keep = k or config.candidates().evidence
    hits, rr = _candidates(config, index, reranker, q)
    if rr is None:
        return hits[:keep]
    return rr.rerank(q, hits[: config.candidates().rerank_depth], top_k=keep)


async def aretrieve(
    config: Config, index: Index, reranker: RerankerFactory, query: str, k: int | None = None
) -> list[Hit]:
    """Async :func:`retrieve`: the search (numpy or Qdrant, CPU-bound) and the reranker's
    construction in a worker thread, the reranking on the reranker's own async path."""
    q = validate_query(query, max_chars=MAX_QUESTION_CHARS)
    keep = k or config.candidates().evidence
    hits, rr = await asyncio.to_thread(_candidates, config, index, reranker, q)
    if rr is None:
        return hits[:keep]
    return await rr.arerank(q, hits[: config.candidates().rerank_depth], top_k=keep)
