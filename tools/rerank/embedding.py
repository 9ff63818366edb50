"""Embedding reranking: cosine of each hit to the question and its sub-questions.

The cheap default (no LLM, milliseconds). For a multi-hop question the evidence for a hop
often matches a sub-question far better than the whole question, so each hit's score mixes
its similarity to the main question with its best (``agg="max"``) or average
(``agg="mean"``) similarity to the sub-questions: ``w * main + (1 - w) * agg(subs)``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from hoprank.tools.rerank.base import CallRecorder, Reranker, RerankError, Scored, doc_text
from hoprank.tools.types import Hit


class EmbeddingReranker(Reranker):
    name = "embedding"
    description = (
        "Rerank passages by embedding similarity to the question and its sub-questions "
        "(fast, no LLM). Good first pass before a reasoning reranker."
    )
    needs_embedder = True

    def __init__(
        self,
        embedder: Any = None,
        agg: Literal["max", "mean"] = "max",
        main_weight: float = 0.5,
        max_doc_words: int | None = 256,
    ) -> None:
        super().__init__()
        self.check_choices(agg=agg)
        if not 0.0 <= float(main_weight) <= 1.0:
            raise RerankError(f"embedding main_weight must be in [0, 1], got {main_weight!r}")
        if embedder is None:  # callers with an index pass its encoder (index.embedder)
            from hoprank.tools.embeddings import make_encoder

            embedder = make_encoder()
        self.embedder = embedder
        self.agg = agg
        self.main_weight = float(main_weight)
        self.max_doc_words = max_doc_words

    def use_index(self, index: Any) -> None:
        """Score hits that ``index`` holds with their stored passage vectors (same encoder),
        instead of encoding them again: a rerank of 20 candidates per hop otherwise costs
        20 passage encodings each time (seconds with e5 on 2 cores)."""
        self._index = index

    def _passage_vectors(self, hits: list[Hit]) -> np.ndarray:
        index = getattr(self, "_index", None)
        rows = index.row_by_id if index is not None else {}
        known = [rows.get(h.id) for h in hits]
        missing = [i for i, r in enumerate(known) if r is None]
        out = np.zeros((len(hits), 0), dtype=np.float32)
        if len(missing) < len(hits):
            stored = np.asarray(index.embeddings[[r for r in known if r is not None]], dtype=np.float32)
            out = np.zeros((len(hits), stored.shape[1]), dtype=np.float32)
            out[[i for i, r in enumerate(known) if r is not None]] = stored
        if missing:
            fresh = np.asarray(
                self.embedder.encode_passages([doc_text(hits[i], self.max_doc_words) for i in missing]),
                dtype=np.float32,
            )
            if out.shape[1] == 0:
                out = np.zeros((len(hits), fresh.shape[1]), dtype=np.float32)
            out[missing] = fresh
        return out

    def options(self) -> dict[str, Any]:
        return {"agg": self.agg, "main_weight": self.main_weight}

    def _score(
        self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder
    ) -> list[Scored]:
        subs = [s for s in (subqueries or []) if s.strip().lower() != query.strip().lower()]
        # asymmetric encoders (e5) need the question side as queries and the hits as passages
        q = np.asarray(self.embedder.encode_queries([query, *subs]), dtype=np.float32)
        d = self._passage_vectors(hits)
        sims = d @ q.T  # (n_hits, 1 + n_subs); vectors are L2-normalised
        main = sims[:, 0]
        if subs:
            sub = sims[:, 1:]
            agg = sub.max(axis=1) if self.agg == "max" else sub.mean(axis=1)
            scores = self.main_weight * main + (1.0 - self.main_weight) * agg
            best = sub.argmax(axis=1)
        else:
            scores = main
        order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))
        out = []
        for i in order:
            why = f"cos(question)={main[i]:.3f}"
            if subs:
                why += f"; best sub-question {subs[int(best[i])]!r} ({sims[i, 1 + int(best[i])]:.3f})"
            out.append(Scored(i, round(float(scores[i]), 6), why))
        rec.extra["subqueries"] = subs
        return out
