"""Understand a question: its type and its sub-questions.

A 135M model invents sub-questions about things the question never mentions, so every LLM
decomposition is checked (non-empty, on-topic, few) and replaced by the rule-based one when
it fails. The rules cover the shapes multi-hop datasets use: comparisons ("X or Y", "both X
and Y", "Is X older than Y"), bridges ("the founder of X", "whose", "that ..."), quoted
entities, and conjunctions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from hoprank import prompts
from hoprank.tools.llm.base import ChatLLM, LLMResponse
from hoprank.tools.names import names
from hoprank.tools.retrieval.tokenize import ENGLISH_STOPWORDS

QType = Literal["single-hop", "bridge", "comparison", "aggregation"]
QTYPES = ("single-hop", "bridge", "comparison", "aggregation")

_QWORDS = {
    "which",
    "what",
    "who",
    "whom",
    "whose",
    "when",
    "where",
    "why",
    "how",
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "name",
    "many",
    "much",
    "also",
}
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)
_QUOTED = re.compile(r"[\"“”]([^\"“”]{2,80})[\"“”]")
# a capitalised span: "Osric Dynamics", "River Vell", "Kraków-on-Vell", "The Copper Lanterns"
_ENTITY = re.compile(
    r"\b(?:[A-Z0-9][\w'’.-]*(?:\s+(?:of|on|the|de|du|van|von|upon|la|le)\s+|\s+)?)*[A-Z0-9][\w'’.-]*", re.UNICODE
)
_BRIDGE_CUES = re.compile(
    r"\b(whose|who (?:founded|wrote|invented|created|built|designed|directed|made)"
    r"|that (?:was|is|were|are|founded|made|built|released)|which (?:was|is) (?:founded|made|built|released)"
    r"|(?:the|a|an)\s+\w+\s+(?:who|which|that)\s+\w+)\b",
    re.I,
)
# "the founder of Osric Dynamics": a role of a named entity, i.e. the first hop
_ROLE_OF = re.compile(
    r"\b(?:the|a|an)\s+((?:[a-z][\w-]*\s+){0,2}?[a-z][\w-]*)\s+(?:of|by|behind)\s+(?:the\s+)?", re.UNICODE
)
_CMP_CUES = re.compile(
    r"\b(or|both|either|than|same|compared|older|younger|longer|shorter|larger|smaller|earlier|later|first"
    r"|more|fewer|higher|lower|bigger|before|after)\b",
    re.I,
)
_AGG_CUES = re.compile(r"\b(how many (?:of|different)|list all|all the|in total|altogether|combined)\b", re.I)


def content_terms(text: str) -> list[str]:
    """Lower-cased words that carry meaning (no stopwords, no question words)."""
    return [
        w
        for w in (t.lower().strip("'’-") for t in _WORD.findall(text))
        if w and w not in ENGLISH_STOPWORDS and w not in _QWORDS
    ]


def stems(text: str) -> set[str]:
    """Content words cut to 5 letters: a crude stemmer so founder ~ founded, born ~ born."""
    return {t[:5] for t in content_terms(text)}


def entities(text: str) -> list[str]:
    """Names and titles, kept whole (:func:`hoprank.tools.names.names`): no years, citation
    markers, nationality adjectives or sentence-initial question words."""
    return names(text)


@dataclass
class Understanding:
    qtype: str
    subquestions: list[str]
    source: str  # "llm" | "rules" | "none"
    entities: list[str] = field(default_factory=list)
    rejected: str | None = None  # why an LLM decomposition was discarded
    raw: str | None = None


class _Decomposition(BaseModel):
    type: str = Field(description="single-hop | bridge | comparison | aggregation")
    subquestions: list[str] = Field(default_factory=list)


def _role_phrases(question: str) -> list[str]:
    """'the founder of Osric Dynamics' -> ['founder of Osric Dynamics'] (role + named entity)."""
    out = []
    for m in _ROLE_OF.finditer(question):
        rest = question[m.end() :]
        ents = entities(rest)
        if ents and rest.lstrip().startswith(ents[0].split()[0]):
            out.append(f"{m.group(1)} of {ents[0]}")
    return out


def classify_rules(question: str) -> str:
    q = question.strip()
    ents = entities(q)
    low = q.lower()
    if _AGG_CUES.search(low):
        return "aggregation"
    starts_yesno = re.match(r"^(is|are|was|were|do|does|did|have|has|can)\b", low)
    if " or " in low and len(ents) >= 1:
        return "comparison"
    if len(ents) >= 2 and (starts_yesno or _CMP_CUES.search(low)) and (" and " in low or _CMP_CUES.search(low)):
        return "comparison"
    if _BRIDGE_CUES.search(q):
        return "bridge"
    roles = _role_phrases(q)
    if roles:
        # a bridge only if the question asks something *about* the role-holder
        rest = q
        for r in roles:
            rest = rest.replace(r, " ")
        if set(content_terms(rest)) - set(content_terms(" ".join(roles))):
            return "bridge"
    return "single-hop"


def comparison_parts(question: str) -> list[str]:
    """The two (or more) compared items: 'Which is older, X or Y?' -> [X, Y]."""
    q = question.strip().rstrip("?")
    if "," in q and " or " in q:
        tail = q.rsplit(",", 1)[1] if q.count(",") == 1 else q.split(",", 1)[1]
        parts = re.split(r",?\s+or\s+|,\s*", tail)
    elif " or " in q:
        left, right = q.rsplit(" or ", 1)
        ents_left = entities(left)
        parts = [ents_left[-1] if ents_left else left.split()[-1], right]
    else:
        ents = entities(q)
        parts = ents[:2] if len(ents) >= 2 else re.split(r"\s+and\s+", q, maxsplit=1)
    return [p.strip(" ,.?") for p in parts if p.strip(" ,.?")]


def decompose_rules(question: str, qtype: str | None = None) -> Understanding:
    qtype = qtype or classify_rules(question)
    ents = entities(question)
    quoted = _QUOTED.findall(question)
    subs: list[str] = []
    if qtype == "comparison":
        attribute = " ".join(
            t for t in content_terms(question) if all(t not in content_terms(p) for p in comparison_parts(question))
        )
        for part in comparison_parts(question):
            subs.append(f"{part} {attribute}".strip())
    elif qtype == "bridge":
        subs.extend(_role_phrases(question))
        for e in quoted + ents:
            if all(e.lower() not in s.lower() for s in subs):
                subs.append(e)
    else:
        subs.extend(quoted)
    subs = [s for s in dict.fromkeys(s.strip() for s in subs) if s and s.lower() != question.lower()][:4]
    return Understanding(qtype=qtype, subquestions=subs, source="rules", entities=ents)


def validate_subquestions(question: str, subs: list[str]) -> str | None:
    """Why an LLM decomposition is unusable, or None when it is fine."""
    if not subs:
        return "no sub-questions"
    if len(subs) > 5:
        return f"{len(subs)} sub-questions (max 5)"
    q_terms = set(content_terms(question))
    for s in subs:
        if not isinstance(s, str) or not s.strip():
            return "empty sub-question"
        if len(s) > 3 * max(len(question), 40):
            return "sub-question longer than the question allows"
        if not q_terms & set(content_terms(s)):
            return f"off-topic sub-question: {s[:80]!r}"
    return None


def understand(question: str, llm: ChatLLM | None, mode: str = "auto") -> tuple[Understanding, LLMResponse | None]:
    """Classify and decompose. ``mode``: auto (LLM, rules on failure) | llm | rules | none."""
    if mode == "none":
        return Understanding(
            qtype=classify_rules(question), subquestions=[], source="none", entities=entities(question)
        ), None
    rules = decompose_rules(question)
    if mode == "rules" or llm is None:
        return rules, None
    msgs = prompts.chat("understand", question=question)
    parsed, resp = llm.structured(msgs, _Decomposition, default=None, max_tokens=200, temperature=0.0)
    if parsed is None:
        rules.rejected = "LLM output was not valid JSON for the schema"
        rules.raw = resp.text if resp else None
        return rules, resp
    subs = [s.strip() for s in parsed.subquestions if isinstance(s, str)]
    why = validate_subquestions(question, subs)
    qtype = parsed.type.strip().lower() if parsed.type.strip().lower() in QTYPES else rules.qtype
    if why is not None:
        rules.rejected = why
        rules.raw = resp.text if resp else None
        return rules, resp
    return Understanding(
        qtype=qtype, subquestions=subs, source="llm", entities=rules.entities, raw=resp.text if resp else None
    ), resp
