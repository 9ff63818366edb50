"""Rerankers behind one interface: ``make_reranker(name, ...).rerank(query, hits, top_k)``.

LLM rerankers: ``setwise`` (Rank-R1), ``rebel`` (multi-criteria), ``listwise`` (RankGPT),
``pointwise``; model rerankers: ``cross-encoder`` (user-given model), ``embedding``
(bundled MiniLM, the cheap default); ``none`` keeps the retrieval order. Setwise, listwise
and pointwise also score without generating (``scoring="likelihood"`` / ``"first"`` /
``"calibrated"``: label log-probabilities, for open models too small to follow a format).
"""

from hoprank.tools.rerank.base import Reranker, RerankError
from hoprank.tools.rerank.cross_encoder import CrossEncoderReranker
from hoprank.tools.rerank.embedding import EmbeddingReranker
from hoprank.tools.rerank.factory import (
    ALIASES,
    RERANKERS,
    IdentityReranker,
    llm_rerankers,
    make_reranker,
    reranker_class,
    reranker_names,
    reranker_options,
)
from hoprank.tools.rerank.listwise import ListwiseReranker
from hoprank.tools.rerank.pointwise import PointwiseReranker
from hoprank.tools.rerank.rebel import RebelReranker
from hoprank.tools.rerank.setwise import SetwiseReranker

__all__ = [
    "ALIASES",
    "RERANKERS",
    "CrossEncoderReranker",
    "EmbeddingReranker",
    "IdentityReranker",
    "ListwiseReranker",
    "PointwiseReranker",
    "RebelReranker",
    "RerankError",
    "Reranker",
    "SetwiseReranker",
    "llm_rerankers",
    "make_reranker",
    "reranker_class",
    "reranker_names",
    "reranker_options",
]
