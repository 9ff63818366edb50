"""Listwise reranking (RankGPT / rank_llm): the LLM writes a permutation ``[3] > [1] > ...``.

A sliding window (20 documents, stride 10) moves from the back of the list to the front, so
a strong document found low can climb up to the top in one pass. The windows overlap, so
they are sequential by nature (each one reads the previous one's result); a list of at most
``window`` documents is a single call.

``scoring="first"`` (FIRST, Reddy et al. 2024) asks the same question with the documents
labelled A, B, C... and reads the window's ranking off the log-probabilities of the reply's
first token, the first identifier a listwise model would write: one forward pass per
window, no permutation to generate or parse. Letters, not numbers: each is one token, while
"12" starts with the token of "1". The letters' prior on the same prompt with "N/A"
passages is divided out (``calibrate``), as for setwise. A backend that cannot score falls
back to the generated permutation for the rest of the call (counted in ``fallbacks``).
"""

from __future__ import annotations

from typing import Any, Literal

from hoprank import prompts
from hoprank.tools.rerank.base import (
    LETTERS,
    CallRecorder,
    Reranker,
    RerankError,
    Scored,
    by_label,
    calibrate,
    content_free,
    doc_text,
    lettered,
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
    needs_llm = True

    def __init__(
        self,
        llm: Any,
        window: int = 20,
        stride: int = 10,
        max_doc_words: int = 80,
        max_tokens: int | None = None,
        scoring: Literal["text", "first"] = "text",
        calibrate: bool = True,
    ) -> None:
        super().__init__()
        self.check_int("window", window, 2)
        self.check_choices(scoring=scoring)
        if scoring == "first" and window > len(LETTERS):
            raise RerankError(
                f"listwise scoring 'first' labels a window with letters: window must be <= {len(LETTERS)}, got {window}"
            )
        if not isinstance(stride, int) or not 1 <= stride <= window:
            raise RerankError(f"listwise stride must be an integer in 1..window ({window}), got {stride!r}")
        self.llm = llm
        self.window = window
        self.stride = stride
        self.max_doc_words = max_doc_words
        self.max_tokens = max_tokens
        self.scoring = scoring
        self.calibrate = bool(calibrate)

    def options(self) -> dict[str, Any]:
        calib = {"calibrate": self.calibrate} if self.scoring == "first" else {}
        return {
            "scoring": self.scoring,
            **calib,
            "window": self.window,
            "stride": self.stride,
            "max_doc_words": self.max_doc_words,
        }

    def _first(self, query: str, part: list[int], texts: list[str], rec: CallRecorder) -> list[int] | None:
        """The window's order from the first token's label log-probabilities (None: not scored).

        With ``calibrate`` the labels' prior on the same prompt with "N/A" passages is divided
        out (asked once per window size and rerank call): a 135M model's first token favours
        some letters whatever the passages say ("I" and "A" start English sentences)."""
        labels = list(LETTERS[: len(part)])
        priors: dict[str, dict[str, float]] = rec.extra.setdefault("label_prior", {}) if self.calibrate else {}
        docs = [[texts[i] for i in part]]
        if self.calibrate and str(len(part)) not in priors:
            docs.append(content_free(len(part)))
        example = " > ".join(labels[:3][::-1])  # "C > B > A": an example that is not the shown order
        msgs = [
            prompts.chat("rerank_listwise_first", query=query, num=len(part), example=example, documents=lettered(d))
            for d in docs
        ]
        scored = rec.score_many(self.llm, msgs, [labels] * len(msgs), "listwise-first")
        if scored is None:
            return None
        if len(scored) > 1:
            priors[str(len(part))] = {k: round(v, 4) for k, v in scored[1].items()}
        rec.count("logprob")
        return by_label(calibrate(scored[0], priors.get(str(len(part)))), labels)

    def _score(
        self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder
    ) -> list[Scored]:
        n = len(hits)
        texts = [doc_text(h, self.max_doc_words) for h in hits]
        ranking = list(range(n))
        if n == 1:
            return positional_scores(ranking)
        for start, end in sliding_windows(n, self.window, self.stride):
            part = ranking[start:end]
            m = len(part)
            if self.scoring == "first":
                order = None if rec.extra.get("scoring_fallback") else self._first(query, part, texts, rec)
                if order is not None:
                    ranking[start:end] = [part[j] for j in order]
                    continue
                rec.extra["scoring_fallback"] = "text"
                rec.fallback("listwise first -> text")
            msgs = prompts.chat("rerank_listwise", query=query, num=m, documents=numbered([texts[i] for i in part]))
            # about 5 tokens per "[12] > "; a cap stops a rambling small model early
            r = rec.chat(self.llm, msgs, "listwise", max_tokens=self.max_tokens or 6 * m + 16, temperature=0)
            perm = parse_permutation(r.text, m)
            rec.count(perm.status)
            ranking[start:end] = [part[j] for j in perm.order]
        return positional_scores(ranking)
