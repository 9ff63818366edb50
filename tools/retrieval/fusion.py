"""Fusion of ranked lists: reciprocal rank fusion and weighted (min-max normalised) scores."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from hoprank.tools.errors import validate_query
from hoprank.tools.retrieval.base import Retriever
from hoprank.tools.types import Hit


def rrf(
    runs: Sequence[Sequence[Hit]], k: int = 60, weights: Sequence[float] | None = None, top_k: int | None = None
) -> list[Hit]:
    """Reciprocal rank fusion: score(d) = sum_i w_i / (k + rank_i(d)).

    Rank-based, so it needs no score calibration between BM25 and cosine; k=60 as in
    Cormack et al. (2009). Ties break on first appearance for reproducibility."""

    def contributions(w: float, run: Sequence[Hit]) -> Iterator[tuple[Hit, float]]:
        for r, h in enumerate(run, 1):
            yield h, w / (k + r)

    return _fuse(runs, weights, top_k, "rrf", contributions)


def weighted_fusion(
    runs: Sequence[Sequence[Hit]], weights: Sequence[float] | None = None, top_k: int | None = None
) -> list[Hit]:
    """Min-max normalise each run's scores to [0, 1], then a weighted sum (missing = 0)."""

    def contributions(w: float, run: Sequence[Hit]) -> Iterator[tuple[Hit, float]]:
        if not run:
            return
        vals = [h.score for h in run]
        lo, hi = min(vals), max(vals)
        for h in run:
            norm = (h.score - lo) / (hi - lo) if hi > lo else 1.0
            yield h, w * norm

    return _fuse(runs, weights, top_k, "weighted", contributions)


def _fuse(
    runs: Sequence[Sequence[Hit]],
    weights: Sequence[float] | None,
    top_k: int | None,
    label: str,
    contributions: Callable[[float, Sequence[Hit]], Iterator[tuple[Hit, float]]],
) -> list[Hit]:
    """What both fusions share: each run's weighted contributions summed per chunk id, best first, ties broken
    on first appearance (sorted() is stable), so a fused list is reproducible."""
    weights = list(weights) if weights is not None else [1.0] * len(runs)
    if len(weights) != len(runs):
        raise ValueError("one weight per run")
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for w, run in zip(weights, runs):
        for h, value in contributions(w, run):
            scores[h.id] = scores.get(h.id, 0.0) + value
            first.setdefault(h.id, h)
    order = sorted(scores, key=lambda i: -scores[i])
    out = [replace(first[i], score=scores[i], rank=n + 1, retriever=label) for n, i in enumerate(order)]
    return out[:top_k] if top_k else out


class FusionRetriever(Retriever):
    """Runs several retrievers and fuses their lists (RRF by default)."""

    name = "hybrid"
    description = "Hybrid search: keyword and semantic results fused. The best general default."

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        method: str = "rrf",
        weights: Sequence[float] | None = None,
        rrf_k: int = 60,
        depth: int = 50,
    ):
        if method not in ("rrf", "weighted"):
            raise ValueError(f"fusion method must be 'rrf' or 'weighted', got {method!r}")
        super().__init__(retrievers[0].chunks if retrievers else [])
        self.retrievers = list(retrievers)
        self.method = method
        self.weights = weights
        self.rrf_k = rrf_k
        self.depth = depth

    def search_batch(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        qs = [validate_query(q) for q in queries]
        depth = max(self.depth, k)
        per_retriever = [r.search_batch(qs, depth) for r in self.retrievers]
        out = []
        for j in range(len(qs)):
            runs = [res[j] for res in per_retriever]
            fused = (
                rrf(runs, self.rrf_k, self.weights, k)
                if self.method == "rrf"
                else weighted_fusion(runs, self.weights, k)
            )
            out.append([replace(h, retriever=self.name) for h in fused])
        return out
