"""Retrieval tools: BM25 (bm25s, rank-bm25), dense (numpy), Qdrant, and fusion."""

from hoprank.tools.retrieval.base import Retriever
from hoprank.tools.retrieval.factory import (
    RETRIEVERS,
    RetrieverSpec,
    make_retriever,
    retriever_names,
    retriever_options,
    retriever_spec,
)

__all__ = [
    "RETRIEVERS",
    "Retriever",
    "RetrieverSpec",
    "make_retriever",
    "retriever_names",
    "retriever_options",
    "retriever_spec",
]
