"""The retriever registry: every retriever name, what it does and the options it takes, once.

Config validation (``retrieval.retriever``), the CLI help, the MCP tool's enum and
:func:`make_retriever` all read :data:`RETRIEVERS`, so adding a retriever is one entry here.
An unknown name or option is an error listing the valid ones, never silently ignored.

The builders import their module on first use: naming the retrievers (for a config check or a
``--help``) must not load bm25s, the Qdrant client or the encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hoprank.tools.errors import unknown_options
from hoprank.tools.retrieval.base import Retriever, SearchableIndex

if TYPE_CHECKING:
    from hoprank.tools.retrieval.tokenize import Tokenizer

# options of the query/passage tokenizer: accepted by every retriever, so one config sets them
# for whichever runs; those that match no words (dense, qdrant dense) ignore them
TOKENIZER_OPTIONS = ("stem", "stopwords")
# QdrantRetriever keywords a user may set (``mode`` is the registered name's, ``tokenizer`` built here)
_QDRANT_OPTIONS = ("url", "api_key", "collection", "depth", "hnsw_m", "hnsw_ef_construct", "hnsw_ef")
_FUSION_OPTIONS = ("parts", "method", "weights", "rrf_k", "depth")

# (index, tokenizer options, options)
Builder = Callable[[SearchableIndex, dict[str, Any], dict[str, Any]], Retriever]


@dataclass(frozen=True)
class RetrieverSpec:
    """One registered retriever: ``own_options`` are its constructor's keywords a user may set;
    ``agent_tool`` is how agentic mode describes it to the model as a ``search_<name>`` tool
    (None: not offered there, e.g. a reference implementation or a part of another)."""

    name: str
    description: str
    build: Builder
    own_options: tuple[str, ...] = ()
    agent_tool: str | None = None

    @property
    def options(self) -> tuple[str, ...]:
        """Every keyword :func:`make_retriever` accepts for this name."""
        return self.own_options + TOKENIZER_OPTIONS


def _tokenizer(tok_opts: dict[str, Any]) -> Tokenizer:
    from hoprank.tools.retrieval.tokenize import Tokenizer

    kwargs: dict[str, Any] = {"stem": bool(tok_opts.get("stem", False))}
    stopwords = tok_opts.get("stopwords", "english")
    if stopwords in (None, "none", False):
        kwargs["stopwords"] = None
    elif stopwords != "english":
        kwargs["stopwords"] = stopwords
    return Tokenizer(**kwargs)


def _bm25s(index: SearchableIndex, tok_opts: dict[str, Any], opts: dict[str, Any]) -> Retriever:
    from hoprank.tools.retrieval.bm25 import BM25SRetriever

    return BM25SRetriever(index.chunks, _tokenizer(tok_opts), **opts)


def _rank_bm25(index: SearchableIndex, tok_opts: dict[str, Any], opts: dict[str, Any]) -> Retriever:
    from hoprank.tools.retrieval.bm25 import RankBM25Retriever

    return RankBM25Retriever(index.chunks, _tokenizer(tok_opts), **opts)


def _dense(index: SearchableIndex, tok_opts: dict[str, Any], opts: dict[str, Any]) -> Retriever:
    from hoprank.tools.retrieval.dense import DenseRetriever

    return DenseRetriever(index.chunks, index.embeddings, index.embedder)


def _qdrant(mode: str) -> Builder:
    def build(index: SearchableIndex, tok_opts: dict[str, Any], opts: dict[str, Any]) -> Retriever:
        from hoprank.tools.retrieval.qdrant import QdrantRetriever

        given = {k: v for k, v in opts.items() if v is not None}  # url=None: the embedded store
        return QdrantRetriever(index, mode=mode, tokenizer=_tokenizer(tok_opts), **given)  # type: ignore[arg-type]

    return build


def _fusion(index: SearchableIndex, tok_opts: dict[str, Any], opts: dict[str, Any]) -> Retriever:
    from hoprank.tools.retrieval.fusion import FusionRetriever

    parts = opts.pop("parts", ("bm25", "dense"))
    return FusionRetriever([index.retriever(p, **tok_opts) for p in parts], **opts)  # parts tokenize like the whole


RETRIEVERS: dict[str, RetrieverSpec] = {
    s.name: s
    for s in (
        RetrieverSpec(
            "bm25",
            "BM25 keyword search (bm25s)",
            _bm25s,
            ("k1", "b"),
            "Keyword search, best for exact names and numbers.",
        ),
        RetrieverSpec("rank-bm25", "BM25 keyword search (rank-bm25, the reference)", _rank_bm25, ("k1", "b")),
        RetrieverSpec(
            "dense",
            "semantic search over the index's embeddings",
            _dense,
            agent_tool="Semantic search, best for descriptions and paraphrases.",
        ),
        RetrieverSpec(
            "qdrant", "dense vector search in Qdrant", _qdrant("dense"), _QDRANT_OPTIONS, "Vector search in Qdrant."
        ),
        RetrieverSpec("qdrant-sparse", "sparse BM25 vectors in Qdrant", _qdrant("sparse"), _QDRANT_OPTIONS),
        RetrieverSpec("qdrant-hybrid", "dense + sparse fused by RRF inside Qdrant", _qdrant("hybrid"), _QDRANT_OPTIONS),
        RetrieverSpec(
            "hybrid",
            "RRF of bm25 and dense, fused here",
            _fusion,
            _FUSION_OPTIONS,
            "Search the documents (keyword + semantic).",
        ),
    )
}


def retriever_names() -> list[str]:
    """The registered names, in registry order."""
    return list(RETRIEVERS)


def retriever_spec(name: str) -> RetrieverSpec:
    """The entry for ``name``; an unknown name is a ValueError listing the valid ones."""
    spec = RETRIEVERS.get(name)
    if spec is None:
        raise ValueError(f"unknown retriever {name!r}; choose one of: {', '.join(RETRIEVERS)}")
    return spec


def retriever_options(name: str, **candidates: Any) -> dict[str, Any]:
    """Of ``candidates`` (e.g. ``url=``, ``stem=`` from a config), those ``name`` takes and that are
    set: callers pass what they have and the registry decides what applies."""
    taken = retriever_spec(name).options
    return {k: v for k, v in candidates.items() if k in taken and v not in (None, False)}


def make_retriever(name: str, index: SearchableIndex, **opts: Any) -> Retriever:
    """Build ``name`` over ``index``. ``hybrid`` = RRF of bm25 and dense computed here;
    ``qdrant-hybrid`` = the same idea run inside Qdrant (prefetch + RRF): Qdrant Edge in the
    index folder, or a server with ``url=`` (``hnsw_m``, ``hnsw_ef_construct``, ``hnsw_ef``
    tune its HNSW index). ``stem`` / ``stopwords`` shape the tokenizer of the word-matching ones."""
    spec = retriever_spec(name)
    bad = [k for k in opts if k not in spec.options]
    if bad:
        raise ValueError(unknown_options("retriever", name, bad, list(spec.options)))
    tok_opts = {k: opts.pop(k) for k in TOKENIZER_OPTIONS if k in opts}
    retriever = spec.build(index, tok_opts, opts)
    retriever.name = spec.name  # the registry names what it builds (hits carry it as ``retriever``)
    return retriever
