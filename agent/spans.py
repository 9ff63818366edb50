"""Short answers chosen among candidate spans of the evidence, by the model's likelihood.

Asked for "a short answer", SmolLM2-135M writes a sentence, a wrong name or nothing; but it
can still *rank* candidate answers: the log-likelihood of "Answer: <span>" after the
evidence and the question (cloze scoring, as lm-eval-harness scores multiple choice). So
the short-answer step (1) extracts candidate spans of the evidence — names kept whole,
dates, numbers with their unit, yes/no for yes/no questions, the compared items for "X or
Y" questions — (2) filters them by what the question asks for (who -> a name, when -> a
date, how many -> a number), and (3) picks the span the model finds most likely. Free
generation stays the fallback (no candidates, or a backend that cannot score), and the
trace names which path answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hoprank import prompts
from hoprank.agent.understand import comparison_parts, content_terms
from hoprank.tools.llm.base import ChatLLM, LLMResponse
from hoprank.tools.llm.scoring import continuation_logprobs
from hoprank.tools.names import MONTHS, names
from hoprank.tools.types import Hit

_YESNO_Q = re.compile(r"^\s*(is|are|was|were|do|does|did|has|have|had|can|could|will|would|should)\b", re.I)
_MONTH = "|".join(MONTHS)
_DATE = re.compile(
    rf"\b(?:(?:\d{{1,2}}\s+)?(?:{_MONTH})(?:\s+\d{{1,2}})?,?\s+\d{{3,4}}|(?:{_MONTH})\s+\d{{1,2}}|\d{{3,4}})\b"
)
# a number with what it counts: "3,677 seated", "7 million", "31 years", "1.5 km"
_NUMBER = re.compile(r"\b\d[\d,.]*(?:\s+(?:million|billion|thousand|hundred|percent|%))?(?:\s+[a-z]+)?")
_SENT = re.compile(r"[^.!?]+(?:[.!?]+|$)")


@dataclass
class SpanChoice:
    """The chosen span and how: ``method`` is spans | yes/no | choice (or None: not used)."""

    answer: str | None
    method: str | None
    candidates: list[tuple[str, float]] = field(default_factory=list)  # (span, score), best first
    chunk_index: int | None = None  # 0-based evidence position the answer came from
    reason: str = ""
    response: LLMResponse | None = None  # the scoring call's usage record


def answer_kind(question: str) -> str:
    """What the question asks for: yesno | choice | date | number | name | other.

    "other" (what/which ...) takes names: most such answers are titles, places, organisations."""
    q = question.strip()
    low = q.lower()
    if _YESNO_Q.match(q) and " or " not in low:
        return "yesno"
    if " or " in low and len(comparison_parts(q)) >= 2:
        return "choice"
    if re.search(r"\b(when|what year|which year|what date|what month)\b", low):
        return "date"
    if re.search(r"\b(how many|how much|how long|how old|how tall|how far|how big|what number|population)\b", low):
        return "number"
    if re.search(r"\b(who|whom|whose)\b", low):
        return "name"
    return "other"


def candidates(question: str, evidence: list[Hit], kind: str, max_candidates: int = 24) -> list[tuple[str, int]]:
    """Candidate answer spans with the 0-based evidence index they come from, best first.

    Spans from sentences that share words with the question come first; a span that the
    question already contains is not an answer to it (except the items of a choice)."""
    q_low = question.lower()
    q_terms = set(content_terms(question))
    if kind == "yesno":
        return [("yes", -1), ("no", -1)]
    if kind == "choice":
        return [(p, -1) for p in comparison_parts(question)]
    scored: dict[str, tuple[float, int]] = {}
    for n, h in enumerate(evidence):
        for s in _SENT.findall(h.text):
            overlap = len(q_terms & set(content_terms(s)))
            spans: list[str] = []
            if kind == "date":
                spans += [m.group(0).strip() for m in _DATE.finditer(s)]
            if kind == "number":
                spans += [m.group(0).strip(" ,.") for m in _NUMBER.finditer(s)]
            if kind in ("name", "other"):
                spans += names(s)
            for span in spans:
                low = span.lower()
                if not span or low in q_low or low in ("the", "a", "an"):
                    continue
                prior = overlap + 1.0 / (n + 1)
                if span not in scored or scored[span][0] < prior:
                    scored[span] = (prior, n)
    ranked = sorted(scored.items(), key=lambda kv: -kv[1][0])
    return [(span, n) for span, (_, n) in ranked[:max_candidates]]


def choose_span(question: str, evidence: list[Hit], llm: ChatLLM, max_words: int = 120) -> SpanChoice:
    """Pick the most likely candidate span (log-likelihood per token of " <span>")."""
    kind = answer_kind(question)
    cands = candidates(question, evidence, kind)
    if not cands:
        return SpanChoice(None, None, reason=f"no candidate spans for a {kind} question")
    docs = "\n".join(f"{h.title}: {' '.join(h.text.split()[:max_words])}" for h in evidence)
    prompt = prompts.render("answer_span", documents=docs, question=question.strip())
    scores, resp = continuation_logprobs(llm, prompt, [" " + c for c, _ in cands])
    # per-token mean: a long span is not penalised for its length, a 1-token one not favoured
    ranked = sorted(((c, s.mean, n) for (c, n), s in zip(cands, scores)), key=lambda t: -t[1])
    best, _, n = ranked[0]
    method = {"yesno": "yes/no", "choice": "choice"}.get(kind, "spans")
    top = [(c, round(v, 4)) for c, v, _ in ranked[:10]]
    return SpanChoice(best, method, top, None if n < 0 else n, kind, resp)
