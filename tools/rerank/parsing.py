"""Parsers for what rerank LLMs write, built to survive a 135M model.

Every parser returns a usable value on any input (empty, prose, wrong ids, truncated tags,
duplicates) together with how confident the parse was, so the caller can fall back to the
current order and the trace can count how often the model followed the format.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# ---- setwise (Rank-R1) ----------------------------------------------------------------------

_R1 = re.compile(r"<think>(.*?)</think>\s*<answer>(.*?)</answer>", re.DOTALL)
_THINK_OPEN = re.compile(r"<think>(.*?)(?:</think>|<answer>|$)", re.DOTALL)
_ANSWER_OPEN = re.compile(r"<answer>\s*(.*)", re.DOTALL)
_LABEL = re.compile(r"\[\s*(\d+)\s*\]")
_INT = re.compile(r"(?<![\d.])(\d{1,3})(?![\d.])")


LENIENT_MAX_WORDS = 12


@dataclass(frozen=True)
class SetwiseAnswer:
    label: int | None  # 1-based label of the chosen document, None when unparseable
    reasoning: str
    status: str  # "ok" (the Rank-R1 format), "lenient" (a fallback rule), "failed"


def parse_setwise(text: str | None, n_docs: int) -> SetwiseAnswer:
    """Rank-R1 answer: ``<think>...</think> <answer>[3]</answer>`` (lower-cased first).

    Fallbacks, in order, for models that do not follow the format: an ``<answer>`` whose
    closing tag was cut off; a short text (at most 12 words) naming exactly one valid ``[n]``.
    Anything else is ``failed`` (label None): the caller keeps the current order."""
    raw = (text or "").strip()
    low = raw.lower()
    m = _R1.search(low)
    if m:
        label = _first_label(m.group(2), n_docs)
        reasoning = raw[m.start(1) : m.end(1)].strip()
        if label is not None:
            return SetwiseAnswer(label, reasoning, "ok")
        return SetwiseAnswer(None, reasoning, "failed")
    t = _THINK_OPEN.search(low)
    reasoning = raw[t.start(1) : t.end(1)].strip() if t else ""
    a = _ANSWER_OPEN.search(low)
    if a:
        label = _first_label(a.group(1)[:40], n_docs)
        if label is not None:
            return SetwiseAnswer(label, reasoning, "lenient")
    # a short reply naming one label ("[3]", "The answer is [3].") counts; a long one that
    # merely echoes "[1] <document text>" (what a 135M model often does) does not
    labels = {int(x) for x in _LABEL.findall(low) if 1 <= int(x) <= n_docs}
    if len(labels) == 1 and len(low.split()) <= LENIENT_MAX_WORDS:
        return SetwiseAnswer(labels.pop(), reasoning or raw[:500], "lenient")
    return SetwiseAnswer(None, reasoning or raw[:500], "failed")


def _first_label(answer: str, n_docs: int) -> int | None:
    """The label inside an answer: ``[3]``, ``3``, ``document 3``; must be in 1..n_docs."""
    for pat in (_LABEL, _INT):
        for x in pat.findall(answer):
            if 1 <= int(x) <= n_docs:
                return int(x)
    return None


# ---- listwise (RankGPT) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Permutation:
    order: list[int]  # 0-based, a full permutation of range(n)
    parsed: int  # how many positions came from the model (the rest were appended)
    status: str  # "ok" (all n from the model), "partial", "failed"


_ARROW_INT = re.compile(r"(\d+)\s*(?=>|$)")


def parse_permutation(text: str | None, n: int) -> Permutation:
    """``[3] > [1] > [2]`` -> [2, 0, 1]; dedupe, drop unknown ids, append missing in order.

    Bare ``3 > 1 > 2`` is accepted when no bracketed id appears. Prose around the ranking
    and a ranking truncated mid-way are fine: whatever valid ids appear, in order, win."""
    raw = text or ""
    ids = [int(x) for x in _LABEL.findall(raw)]
    if not ids and ">" in raw:
        ids = [int(x) for x in re.findall(r"(?<![\d.])(\d{1,3})(?![\d.])", raw)]
    seen: set[int] = set()
    order: list[int] = []
    for i in ids:
        if 1 <= i <= n and (i - 1) not in seen:
            seen.add(i - 1)
            order.append(i - 1)
    parsed = len(order)
    order += [i for i in range(n) if i not in seen]
    status = "ok" if parsed == n else ("partial" if parsed else "failed")
    return Permutation(order, parsed, status)


# ---- REBEL ----------------------------------------------------------------------------------

_DOC_LINE = re.compile(r"doc(?:ument)?\s*(?:#|no\.?|number)?\s*[:=]?\s*\[?\s*(\d+)\s*\]?", re.IGNORECASE)
_KV = re.compile(r"([a-z][a-z _/-]*?)\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class RebelLine:
    doc: int  # 1-based document number in the prompt
    relevance: float | None  # the 0-10 relevance when criteria were given, else None
    criteria: dict[str, float] = field(default_factory=dict)
    final: float = 0.0  # the score the document is ranked by


def _criterion_key(name: str, criteria: list[str]) -> str | None:
    """Map a label the model wrote (``Depth``, ``authority``) to a configured criterion."""
    n = name.strip().lower()
    for c in criteria:
        c_low = c.lower()
        if n == c_low or n in c_low.split() or c_low.startswith(n) or n.startswith(c_low.split()[0][:5]):
            return c
    return None


def parse_rebel(
    text: str | None, n_docs: int, criteria: list[str], weight: float = 0.5, max_relevance: float = 10.0
) -> list[RebelLine]:
    """One entry per valid document line, first mention wins.

    ``Doc: 3, Relevance: 14.5`` -> final 14.5 (the model did the arithmetic).
    ``Doc: 3, Relevance: 8, Depth: 4, ...`` -> relevance 8, criteria parsed, final computed here
    as relevance + weight x sum(criteria) (we trust our arithmetic over a small model's).
    Numbers are clipped to their scales; lines without a valid doc number are skipped."""
    out: dict[int, RebelLine] = {}
    for line in (text or "").splitlines():
        m = _DOC_LINE.search(line)
        if not m:
            continue
        doc = int(m.group(1))
        if not 1 <= doc <= n_docs or doc in out:
            continue
        rest = line[m.end() :]
        relevance: float | None = None
        crit: dict[str, float] = {}
        for key, val in _KV.findall(rest):
            v = float(val)
            if not math.isfinite(v):
                continue
            k = key.strip().lower()
            if k.startswith(("relevance", "score", "final")):
                if relevance is None:
                    relevance = v
                continue
            c = _criterion_key(k, criteria)
            if c is not None and c not in crit:
                crit[c] = min(max(v, 0.0), 5.0)
        if relevance is None:
            continue
        if crit:
            rel = min(max(relevance, 0.0), max_relevance)
            final = rel + weight * sum(crit.values())
            out[doc] = RebelLine(doc, rel, crit, final)
        else:
            cap = max_relevance + weight * 5.0 * max(len(criteria), 0)
            out[doc] = RebelLine(doc, None, {}, min(max(relevance, 0.0), cap))
    return list(out.values())


# ---- pointwise ------------------------------------------------------------------------------

_RATING_KEYED = re.compile(r"(?:rating|score|relevance)\D{0,12}?(\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d])")


def parse_rating(text: str | None, lo: float = 0.0, hi: float = 10.0) -> float | None:
    """A 0-10 rating: ``7``, ``Rating: 7``, ``7/10``, ``I'd say 8.5``; None when absent."""
    raw = text or ""
    for pat in (_RATING_KEYED, _NUMBER):
        for x in pat.findall(raw):
            v = float(x)
            if lo <= v <= hi:
                return v
    return None


_YES = ("yes", "true", "relevant")
_NO = ("no", "false", "irrelevant", "not")


def parse_yes_no(text: str | None) -> float | None:
    """1.0 for an answer starting yes, 0.0 for no, None for anything else."""
    words = re.findall(r"[a-z]+", (text or "").lower())
    if not words:
        return None
    if words[0] in _YES:
        return 1.0
    if words[0] in _NO:
        return 0.0
    return None


def yes_probability(logprobs: list[dict] | None, max_tokens_scanned: int = 3) -> float | None:
    """P(yes) / (P(yes) + P(no)) from the first content token's top alternatives.

    Tokens are compared stripped and lower-cased (``" Yes"``, ``"yes"``, ``"YES"`` count as
    yes). When neither appears among the alternatives, None (the caller uses the text)."""
    if not logprobs:
        return None
    for entry in logprobs[:max_tokens_scanned]:
        if not isinstance(entry, dict):
            continue
        tok = str(entry.get("token", "")).strip().lower()
        if not tok or not re.search(r"[a-z]", tok):
            continue  # whitespace / punctuation before the answer word
        top = dict(entry.get("top") or {})
        if entry.get("logprob") is not None:
            top.setdefault(str(entry.get("token")), entry["logprob"])
        p_yes = p_no = 0.0
        for t, lp in top.items():
            try:
                p = math.exp(float(lp))
            except (TypeError, ValueError, OverflowError):
                continue
            w = str(t).strip().lower()
            if w in ("yes", "y"):
                p_yes += p
            elif w in ("no", "n"):
                p_no += p
        if p_yes + p_no > 0:
            return p_yes / (p_yes + p_no)
        return None
    return None
