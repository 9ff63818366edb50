"""BM25 over the index's chunks: ``bm25s`` (default, sparse matrices) or ``rank-bm25``
(the reference implementation), fed by the same tokeniser so their results compare."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from hoprank.tools.retrieval.base import Retriever
from hoprank.tools.retrieval.tokenize import Tokenizer
from hoprank.tools.types import Chunk


def chunk_terms(chunk: Chunk, tokenizer: Tokenizer) -> list[str]:
    """Lexical view of a chunk: its title plus its text (titles name the entities)."""
    if chunk.title and not chunk.text.startswith(chunk.title):
        return tokenizer(chunk.title + "\n" + chunk.text)
    return tokenizer(chunk.text)


logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG


class BM25SRetriever(Retriever):
    name = "bm25"
    description = "Keyword search (BM25). Best for exact names, numbers and rare words."

    def __init__(self, chunks: Sequence[Chunk], tokenizer: Tokenizer | None = None, k1: float = 1.5, b: float = 0.75):
        super().__init__(chunks)
        import bm25s
        from bm25s.tokenization import Tokenized

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s resets it on import

        self.tokenizer = tokenizer or Tokenizer()
        docs = [chunk_terms(c, self.tokenizer) for c in chunks]
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(t, len(vocab)) for t in d] for d in docs]
        if not vocab:  # bm25s cannot index an empty vocabulary
            vocab[""] = 0
        self._vocab = vocab
        self._model = bm25s.BM25(k1=k1, b=b)
        if chunks:
            self._model.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)

    def _scores(self, query: str) -> np.ndarray:
        terms = [t for t in self.tokenizer(query) if t in self._vocab]
        if not terms or not self.chunks:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self._model.get_scores(terms), dtype=np.float32)

    def _top_k(self, scores: np.ndarray, k: int):
        # a document that shares no term with the query is not a BM25 hit
        hits = super()._top_k(scores, k)
        return [h for h in hits if h.score > 0]


class RankBM25Retriever(BM25SRetriever):
    name = "rank-bm25"

    def __init__(self, chunks: Sequence[Chunk], tokenizer: Tokenizer | None = None, k1: float = 1.5, b: float = 0.75):
        Retriever.__init__(self, chunks)
        from rank_bm25 import BM25Okapi

        self.tokenizer = tokenizer or Tokenizer()
        docs = [chunk_terms(c, self.tokenizer) or ["\x00"] for c in chunks]
        self._vocab = {t for d in docs for t in d}
        self._model = BM25Okapi(docs, k1=k1, b=b) if docs else None

    def _scores(self, query: str) -> np.ndarray:
        terms = [t for t in self.tokenizer(query) if t in self._vocab]
        if not terms or self._model is None:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self._model.get_scores(terms), dtype=np.float32)
