"""The reranker registry (:data:`RERANKERS`, the one list of names) and ``make_reranker(name,
...)``, the one entry point for the CLI, the agent and the benchmarks. Config validation, the
CLI help and the MCP enum read the registry, so adding a reranker is one class and one entry.

Options are checked against the reranker's own constructor so a typo (``num_childs=3``) is
an error naming the option and listing the valid ones, never silently ignored. ``llm``,
``llm_config`` and ``embedder`` are accepted for every name (the CLI passes them all) and
only used by the rerankers that need them.
"""

from __future__ import annotations

import inspect
from typing import Any

from hoprank.tools.errors import unknown_options
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


# The registry: one entry per reranker, keyed by its class's ``name``. Whether a reranker needs an
# LLM or an embedder is its class's ``needs_llm`` / ``needs_embedder``; its options are its
# constructor's keywords. The order is the one users see (CLI help, MCP enum).
RERANKERS: dict[str, type[Reranker]] = {
    cls.name: cls
    for cls in (
        SetwiseReranker,
        RebelReranker,
        ListwiseReranker,
        PointwiseReranker,
        CrossEncoderReranker,
        EmbeddingReranker,
        IdentityReranker,
    )
}
# other spellings users type (the papers' names); ``_`` and case are normalised before the lookup
ALIASES: dict[str, str] = {"crossencoder": "cross-encoder", "rank-r1": "setwise", "rankgpt": "listwise"}
# constructor keywords the factory supplies itself (never user options)
_SUPPLIED = ("self", "llm", "embedder")


def reranker_names() -> list[str]:
    """The registered names, in registry order (config validation, CLI help and MCP enums use it)."""
    return list(RERANKERS)


def llm_rerankers() -> list[str]:
    """The names whose reranker asks an LLM (derived from ``needs_llm``)."""
    return [name for name, cls in RERANKERS.items() if cls.needs_llm]


def reranker_class(name: str) -> type[Reranker]:
    """The class registered for ``name`` or one of its aliases; an unknown name is a
    :class:`RerankError` listing the valid ones."""
    key = str(name).strip().lower().replace("_", "-")
    cls = RERANKERS.get(ALIASES.get(key, key))
    if cls is None:
        raise RerankError(f"unknown reranker {name!r}; choose one of: {', '.join(RERANKERS)}")
    return cls


def reranker_options(name: str) -> list[str]:
    """The options ``name`` takes: its constructor's keywords minus what the factory supplies."""
    return [p for p in inspect.signature(reranker_class(name).__init__).parameters if p not in _SUPPLIED]


def make_reranker(name: str, llm: Any = None, llm_config: Any = None, embedder: Any = None, **opts: Any) -> Reranker:
    """Build a reranker by name; an LLM reranker without ``llm`` builds one from ``llm_config``."""
    cls = reranker_class(name)
    valid = reranker_options(name)
    bad = [k for k in opts if k not in valid]
    if bad:
        raise RerankError(unknown_options("reranker", cls.name, bad, list(valid)))
    supplied: dict[str, Any] = {}
    if cls.needs_llm:
        if llm is None:
            from hoprank.tools.llm import make_llm

            llm = make_llm(llm_config)  # None: the default LLMConfig
        supplied["llm"] = llm
    if cls.needs_embedder:
        supplied["embedder"] = embedder
    return cls(**supplied, **opts)
