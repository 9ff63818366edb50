"""Pointwise reranking: the LLM judges each document on its own, all in one concurrent batch.

``mode="auto"`` asks yes/no with logprobs and scores P(yes) when the backend returns them
(a smooth score, one generated token); a backend without logprobs is remembered and gets the
0-10 rating prompt instead (its first batch is asked again as ratings: a yes/no text alone
gives only two levels). Unparseable output gets the neutral default (5 of 10, or 0.5 for
yes/no) and ties keep the original order.
"""

from __future__ import annotations

from typing import Any, Literal

from hoprank import prompts
from hoprank.tools.rerank.base import CallRecorder, Reranker, RerankError, Scored, doc_text
from hoprank.tools.rerank.parsing import parse_rating, parse_yes_no, yes_probability
from hoprank.tools.types import Hit

NEUTRAL_RATING = 5.0
NEUTRAL_YES = 0.5


class PointwiseReranker(Reranker):
    name = "pointwise"
    description = (
        "Rerank passages with an LLM that judges each passage's relevance independently "
        "(yes/no probability or a 0-10 rating); all passages are judged concurrently."
    )
    uses_llm = True

    def __init__(self, llm: Any, mode: Literal["auto", "yesno", "rating"] = "auto", max_doc_words: int = 120, top_logprobs: int = 10) -> None:
        super().__init__()
        if mode not in ("auto", "yesno", "rating"):
            raise RerankError(f"pointwise mode must be 'auto', 'yesno' or 'rating', got {mode!r}")
        self.llm = llm
        self.mode = mode
        self.max_doc_words = max_doc_words
        self.top_logprobs = top_logprobs
        self._logprobs_ok: bool | None = None  # learnt from the first response in auto mode

    def options(self) -> dict[str, Any]:
        return {"mode": self.mode, "max_doc_words": self.max_doc_words}

    def _yesno(self, query: str, texts: list[str], rec: CallRecorder) -> tuple[list[float | None], bool]:
        msgs = [prompts.chat("rerank_pointwise_yesno", query=query, document=t) for t in texts]
        rs = rec.chat_many(self.llm, msgs, "pointwise_yesno", max_tokens=3, temperature=0, logprobs=True, top_logprobs=self.top_logprobs)
        has_lp = any(r.logprobs for r in rs)
        out: list[float | None] = []
        for r in rs:
            p = yes_probability(r.logprobs)
            if p is not None:
                rec.count("logprob")
            else:
                p = parse_yes_no(r.text)
                rec.count("text" if p is not None else "failed")
            out.append(p)
        return out, has_lp

    def _rating(self, query: str, texts: list[str], rec: CallRecorder) -> list[float | None]:
        msgs = [prompts.chat("rerank_pointwise_rating", query=query, document=t) for t in texts]
        rs = rec.chat_many(self.llm, msgs, "pointwise_rating", max_tokens=8, temperature=0)
        out = []
        for r in rs:
            v = parse_rating(r.text)
            rec.count("ok" if v is not None else "failed")
            out.append(v)
        return out

    def _score(self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder) -> list[Scored]:
        texts = [doc_text(h, self.max_doc_words) for h in hits]
        mode = self.mode
        if mode == "auto" and self._logprobs_ok is False:
            mode = "rating"
        scores: list[float]
        if mode in ("auto", "yesno"):
            probs, has_lp = self._yesno(query, texts, rec)
            if mode == "auto" and self._logprobs_ok is None:
                self._logprobs_ok = has_lp
            if mode == "yesno" or has_lp:
                rec.extra["pointwise_mode"] = "yesno-logprob" if has_lp else "yesno-text"
                scores = [NEUTRAL_YES if p is None else p for p in probs]
                return self._sorted(scores, "P(yes)")
        rec.extra["pointwise_mode"] = "rating"
        ratings = self._rating(query, texts, rec)
        scores = [NEUTRAL_RATING if v is None else v for v in ratings]
        return self._sorted(scores, "rating")

    @staticmethod
    def _sorted(scores: list[float], label: str) -> list[Scored]:
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return [Scored(i, round(scores[i], 4), f"{label} {scores[i]:.3g}") for i in order]
