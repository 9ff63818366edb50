"""The one retrieval interface: ``search(query, k)`` and ``search_batch(queries, k)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hoprank.tools.embeddings import Encoder
from hoprank.tools.errors import validate_query
from hoprank.tools.types import Chunk, Hit


class SearchableIndex(Protocol):
    """What retrievers read from an index: chunks, their embeddings, the encoder to embed
    queries with, and its other retrievers (a fusion combines them).

    Why a protocol and not :class:`hoprank.tools.ingest.index.Index`: the index builds and
    caches its retrievers (``index.retriever(name)``) and syncs the Qdrant store when it is
    built, so ingest imports retrieval; retrieval naming the index class back would make an
    import circle. The index satisfies this protocol; retrieval never imports ingest."""

    path: Path
    manifest: dict[str, Any]
    chunks: list[Chunk]
    embeddings: np.ndarray

    @property
    def generation(self) -> int: ...

    @property
    def embedder(self) -> Encoder: ...

    @property
    def chunk_by_id(self) -> dict[str, Chunk]: ...

    def __len__(self) -> int: ...

    def retriever(self, name: str, **opts: Any) -> Retriever: ...


class Retriever:
    """Base class. Subclasses implement ``_scores`` or override ``search_batch``.

    Every query is validated first (empty, whitespace-only and absurdly long queries raise
    :class:`~hoprank.tools.errors.InvalidQueryError`), so no backend returns quiet nonsense.
    """

    name: str = "retriever"
    description: str = ""

    def __init__(self, chunks: Sequence[Chunk]):
        self.chunks = chunks

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        qs = [validate_query(q) for q in queries]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return [self._top_k(self._scores(q), k) for q in qs]

    def _scores(self, query: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _top_k(self, scores: np.ndarray, k: int) -> list[Hit]:
        n = len(scores)
        if n == 0:
            return []
        k = min(k, n)
        idx = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        # stable tie-break on corpus order so runs are reproducible
        idx = sorted(idx.tolist(), key=lambda i: (-float(scores[i]), i))
        return [Hit.from_chunk(self.chunks[i], float(scores[i]), r + 1, self.name) for r, i in enumerate(idx)]

    def as_tool_spec(self) -> dict:
        """Name, description and JSON schema, so an LLM agent can call this retriever."""
        return {
            "name": f"search_{self.name}",
            "description": self.description or f"Search the document index with {self.name}.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "what to search for"},
                    "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                },
                "required": ["query"],
            },
        }
