"""Listwise reranking (RankGPT / rank_llm): the LLM writes a permutation ``[3] > [1] > ...``.

A sliding window (20 documents, stride 10) moves from the back of the list to the front, so
a strong document found low can climb up to the top in one pass. The windows overlap, so
they are sequential by nature (each one reads the previous one's result); a list of at most
``window`` documents is a single call.
"""

from __future__ import annotations

from typing import Any

from hoprank import prompts
from hoprank.tools.rerank.base import (
    CallRecorder,
    Reranker,
    RerankError,
    Scored,
    doc_text,
    numbered,
    positional_scores,
)
from hoprank.tools.rerank.parsing import parse_permutation
from hoprank.tools.types import Hit


def sliding_windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) windows from the back to the front, as RankGPT does."""
    out = []
    end = n
    start = max(0, end - window)
    while True:
        out.append((start, end))
        if start == 0:
            break
        end -= stride
        start = max(0, end - window)
    return out


class ListwiseReranker(Reranker):
    name = "listwise"
    description = (
        "Rerank passages with an LLM that reads a window of passages at once and writes their "
        "order ([3] > [1] > ...), RankGPT style, sliding from the bottom of the list to the top."
    )
    uses_llm = True

    def __init__(self, llm: Any, window: int = 20, stride: int = 10, max_doc_words: int = 80, max_tokens: int | None = None) -> None:
        super().__init__()
        if not isinstance(window, int) or window < 2:
            raise RerankError(f"listwise window must be an integer >= 2, got {window!r}")
        if not isinstance(stride, int) or not 1 <= stride <= window:
            raise RerankError(f"listwise stride must be an integer in 1..window ({window}), got {stride!r}")
        self.llm = llm
        self.window = window
        self.stride = stride
        self.max_doc_words = max_doc_words
        self.max_tokens = max_tokens

    def options(self) -> dict[str, Any]:
        return {"window": self.window, "stride": self.stride, "max_doc_words": self.max_doc_words}

    def _score(self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder) -> list[Scored]:
        n = len(hits)
        texts = [doc_text(h, self.max_doc_words) for h in hits]
        ranking = list(range(n))
        if n == 1:
            return positional_scores(ranking)
        for start, end in sliding_windows(n, self.window, self.stride):
            part = ranking[start:end]
            m = len(part)
            msgs = prompts.chat("rerank_listwise", query=query, num=m, documents=numbered([texts[i] for i in part]))
            # about 5 tokens per "[12] > "; a cap stops a rambling small model early
            r = rec.chat(self.llm, msgs, "listwise", max_tokens=self.max_tokens or 6 * m + 16, temperature=0)
            perm = parse_permutation(r.text, m)
            rec.count(perm.status)
            ranking[start:end] = [part[j] for j in perm.order]
        return positional_scores(ranking)
