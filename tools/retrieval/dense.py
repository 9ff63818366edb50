"""Dense retrieval: exact inner product over the index's (memory-mapped) embedding matrix.

Exact search is the right default below a few hundred thousand chunks: a 20k x 384 matrix
product takes milliseconds, needs no extra index, and is the recall reference for ANN."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hoprank.tools.embeddings import Encoder, EncoderMismatchError
from hoprank.tools.errors import validate_query
from hoprank.tools.retrieval.base import Retriever
from hoprank.tools.types import Chunk, Hit


class DenseRetriever(Retriever):
    name = "dense"
    description = "Semantic search (embeddings). Best for paraphrases and descriptive questions."

    def __init__(self, chunks: Sequence[Chunk], embeddings: np.ndarray, embedder: Encoder):
        super().__init__(chunks)
        if len(chunks) and embeddings.shape[1] != embedder.dim:
            raise EncoderMismatchError(
                f"the index holds {embeddings.shape[1]}-d vectors but encoder {embedder.name!r} gives {embedder.dim}-d"
            )
        self.embeddings = embeddings
        self.embedder = embedder

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        qs = [validate_query(q) for q in queries]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not len(self.chunks):
            return [[] for _ in qs]
        qv = self.embedder.encode_queries(qs)  # e5: "query: " (documents were "passage: ")
        scores = np.asarray(self.embeddings @ qv.T, dtype=np.float32)  # [n_chunks, n_queries]
        return [self._top_k(scores[:, j], k) for j in range(len(qs))]
