"""Build a retriever by name. Unknown names get an error listing the valid ones."""

from __future__ import annotations

from typing import Any

from hoprank.tools.retrieval.base import Retriever, SearchableIndex

RETRIEVERS = ("bm25", "rank-bm25", "dense", "qdrant", "qdrant-hybrid", "hybrid")


def make_retriever(name: str, index: SearchableIndex, **opts: Any) -> Retriever:
    """``hybrid`` = RRF of bm25 and dense computed here; ``qdrant-hybrid`` = the same idea
    run inside Qdrant (prefetch + RRF): Qdrant Edge in the index folder, or a server with
    ``url=`` (options ``hnsw_m``, ``hnsw_ef_construct``, ``hnsw_ef`` tune its HNSW index)."""
    from hoprank.tools.retrieval.tokenize import Tokenizer

    stem = bool(opts.pop("stem", False))
    stopwords = opts.pop("stopwords", "english")
    tok_kwargs: dict[str, Any] = {"stem": stem}
    if stopwords in (None, "none", False):
        tok_kwargs["stopwords"] = None
    elif stopwords != "english":
        tok_kwargs["stopwords"] = stopwords
    if name == "bm25":
        from hoprank.tools.retrieval.bm25 import BM25SRetriever

        return BM25SRetriever(index.chunks, Tokenizer(**tok_kwargs), **opts)
    if name == "rank-bm25":
        from hoprank.tools.retrieval.bm25 import RankBM25Retriever

        return RankBM25Retriever(index.chunks, Tokenizer(**tok_kwargs), **opts)
    if name == "dense":
        from hoprank.tools.retrieval.dense import DenseRetriever

        return DenseRetriever(index.chunks, index.embeddings, index.embedder)
    if name in ("qdrant", "qdrant-hybrid", "qdrant-sparse"):
        from hoprank.tools.retrieval.qdrant import QdrantRetriever

        mode = {"qdrant": "dense", "qdrant-hybrid": "hybrid", "qdrant-sparse": "sparse"}[name]
        opts = {k: v for k, v in opts.items() if v is not None}
        return QdrantRetriever(index, mode=opts.pop("mode", mode), tokenizer=Tokenizer(**tok_kwargs), **opts)
    if name == "hybrid":
        from hoprank.tools.retrieval.fusion import FusionRetriever

        parts = opts.pop("parts", ("bm25", "dense"))
        return FusionRetriever([index.retriever(p) for p in parts], **opts)
    raise ValueError(f"unknown retriever {name!r}; choose one of: {', '.join(RETRIEVERS)}")
