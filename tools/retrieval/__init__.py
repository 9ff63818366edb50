"""Retrieval tools: BM25 (bm25s, rank-bm25), dense (numpy), Qdrant, and fusion."""

from hoprank.tools.retrieval.base import Retriever
from hoprank.tools.retrieval.factory import RETRIEVERS, make_retriever

__all__ = ["RETRIEVERS", "Retriever", "make_retriever"]
