"""Pointwise reranking: the LLM judges each document on its own, all in one concurrent batch.

``mode="auto"`` asks yes/no with logprobs and scores P(yes) when the backend returns them
(a smooth score, one generated token); a backend without logprobs is remembered and gets the
0-10 rating prompt instead (its first batch is asked again as ratings: a yes/no text alone
gives only two levels). Unparseable output gets the neutral default (5 of 10, or 0.5 for
yes/no) and ties keep the original order.

``scoring="calibrated"`` needs no generation and no logprobs option on the chat call: the
log-odds of "Yes" vs "No" as the reply's first token (:func:`label_logprobs`, exact on
llama.cpp), minus the same log-odds on content-free inputs (the prompt with an "N/A" and an
empty document, averaged: Zhao et al. 2021, "Calibrate Before Use"). Why calibrate: a small
model's P(yes) carries a large prompt-level bias (it says yes to anything, or to nothing);
after the shift, 0 means "as likely relevant as no document at all", a score that reads the
same across queries. Within one query the shift is the same for every document, so the
order is that of the raw log-odds. A backend that cannot score falls back to ``mode``'s text
path (counted in the trace's ``fallbacks``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from hoprank import prompts
from hoprank.tools.rerank.base import CallRecorder, Reranker, Scored, doc_text
from hoprank.tools.rerank.parsing import parse_rating, parse_yes_no, yes_probability
from hoprank.tools.types import Hit

NEUTRAL_RATING = 5.0
NEUTRAL_YES = 0.5
CONTENT_FREE = ("N/A", "")  # the documents of the calibration prompts
YES_LABELS = ("Yes", "yes")
NO_LABELS = ("No", "no")


class PointwiseReranker(Reranker):
    name = "pointwise"
    description = (
        "Rerank passages with an LLM that judges each passage's relevance independently "
        "(yes/no probability or a 0-10 rating); all passages are judged concurrently."
    )
    needs_llm = True

    def __init__(
        self,
        llm: Any,
        mode: Literal["auto", "yesno", "rating"] = "auto",
        max_doc_words: int = 120,
        top_logprobs: int = 10,
        scoring: Literal["text", "calibrated"] = "text",
    ) -> None:
        super().__init__()
        self.check_choices(mode=mode, scoring=scoring)
        self.scoring = scoring
        self.llm = llm
        self.mode = mode
        self.max_doc_words = max_doc_words
        self.top_logprobs = top_logprobs
        self._logprobs_ok: bool | None = None  # learnt from the first response in auto mode

    def options(self) -> dict[str, Any]:
        return {"scoring": self.scoring, "mode": self.mode, "max_doc_words": self.max_doc_words}

    def _calibrated(self, query: str, texts: list[str], rec: CallRecorder) -> list[float] | None:
        """Calibrated log-odds of "Yes" per document, or None when the backend cannot score."""
        docs = [*texts, *CONTENT_FREE]
        msgs = [prompts.chat("rerank_pointwise_yesno", query=query, document=d) for d in docs]
        labels = [*YES_LABELS, *NO_LABELS]
        scored = rec.score_many(self.llm, msgs, [labels] * len(msgs), "pointwise-calibrated")
        if scored is None:
            return None
        odds = [_log_odds(lp) for lp in scored]
        bias = sum(odds[len(texts) :]) / len(CONTENT_FREE)
        rec.extra["content_free_log_odds"] = round(bias, 4)
        for _ in texts:
            rec.count("logprob")
        return [o - bias for o in odds[: len(texts)]]

    def _yesno(self, query: str, texts: list[str], rec: CallRecorder) -> tuple[list[float | None], bool]:
        msgs = [prompts.chat("rerank_pointwise_yesno", query=query, document=t) for t in texts]
        rs = rec.chat_many(
            self.llm,
            msgs,
            "pointwise_yesno",
            max_tokens=3,
            temperature=0,
            logprobs=True,
            top_logprobs=self.top_logprobs,
        )
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

    def _score(
        self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder
    ) -> list[Scored]:
        texts = [doc_text(h, self.max_doc_words) for h in hits]
        if self.scoring == "calibrated":
            calibrated = self._calibrated(query, texts, rec)
            if calibrated is not None:
                rec.extra["pointwise_mode"] = "calibrated-likelihood"
                return self._sorted(calibrated, "calibrated log-odds(yes)")
            rec.extra["scoring_fallback"] = "text"
            rec.fallback("pointwise calibrated -> text")
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


def _log_odds(lp: dict[str, float]) -> float:
    """log P(yes) - log P(no), each summed over its spellings."""

    def total(labels: tuple[str, ...]) -> float:
        top = max(lp[lab] for lab in labels)
        return top + math.log(sum(math.exp(lp[lab] - top) for lab in labels))

    return total(YES_LABELS) - total(NO_LABELS)
