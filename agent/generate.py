"""Write the answer from the ranked evidence, with citations that can only point at chunks
retrieved in this run, and check the cited claims.

Retrieved text is data, not instructions (OWASP LLM01): it is wrapped in <documents>
delimiters, any delimiter-looking text inside a chunk is neutralised, and the system prompt
says to ignore instructions found there. A citation marker that does not point at one of
the numbered chunks is dropped, whatever the model wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from hoprank import prompts
from hoprank.agent.spans import answer_kind, choose_span
from hoprank.agent.tokens import answer_chat
from hoprank.agent.understand import content_terms, entities
from hoprank.tools.errors import LLMError
from hoprank.tools.llm.base import ChatLLM, LLMResponse
from hoprank.tools.llm.scoring import ScoringUnsupported
from hoprank.tools.types import Citation, Hit

_MARK = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_NOT_FOUND = re.compile(r"\bNOT[_ ]?FOUND\b", re.I)
_SENT = re.compile(r"[^.!?]+(?:[.!?]+|$)")
NOT_FOUND_TEXT = "I could not find the answer in the documents."


def format_evidence(hits: list[Hit], max_words: int = 120) -> str:
    lines = []
    for n, h in enumerate(hits, 1):
        words = h.text.split()
        text = " ".join(words[:max_words]) + (" …" if len(words) > max_words else "")
        text = re.sub(r"</?\s*documents?\s*>", " ", text, flags=re.I)
        title = f"{h.title}: " if h.title and not text.startswith(h.title) else ""
        lines.append(f"[{n}] {title}{text}")
    return "\n".join(lines)


@dataclass
class Generated:
    answer: str
    citations: list[Citation]
    status: str  # answered | not_found
    fallback: str | None = None  # why the raw model output was not used as is
    raw: str = ""
    responses: list[LLMResponse] = field(default_factory=list)
    method: str = "generate"  # generate | spans | yes/no | choice: which path wrote the answer


def parse_citations(text: str, evidence: list[Hit]) -> tuple[str, list[Citation]]:
    """Keep markers that point at evidence; drop the others from the text."""
    cited: dict[int, Citation] = {}

    def keep(m: re.Match) -> str:
        nums = [int(x) for x in re.split(r"\s*,\s*", m.group(1))]
        valid = [n for n in nums if 1 <= n <= len(evidence)]
        for n in valid:
            h = evidence[n - 1]
            cited.setdefault(n, Citation(marker=n, chunk_id=h.id, title=h.title, text=h.text, score=h.score))
        return "".join(f"[{n}]" for n in valid)

    cleaned = _MARK.sub(keep, text)
    cleaned = re.sub(r"\s+([.,;:])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip()
    return cleaned, [cited[k] for k in sorted(cited)]


def _clean_short(text: str) -> str:
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = re.sub(r"^(short answer|answer)\s*[:\-]\s*", "", line.strip(), flags=re.I)
    line = _MARK.sub("", line).strip().strip('"').rstrip(".").strip()
    return " ".join(line.split()[:20])


_YESNO = re.compile(r"^\s*(yes|no)\b", re.I)
_NUMBER = re.compile(r"\b\d[\d,.]*\b")


def shorten(answer: str, question: str, evidence: list[Hit]) -> tuple[str, str | None]:
    """Cut a sentence-long "short" answer down to the span it states.

    Small models answer "Ingrid Holloway was born in Saltmere." when asked for a span. The
    span is taken only from the model's own words: a yes/no lead, or the last span of the
    kind the question asks for (a number or date for how many / when, a name otherwise)
    that occurs in the evidence and not in the question (the new information usually ends
    the sentence). Returns (answer, how) with ``how`` None when
    nothing was cut."""
    words = answer.split()
    if len(words) <= 4:
        return answer, None
    m = _YESNO.match(answer)
    if m and re.match(r"^(is|are|was|were|do|does|did|has|have|can|could|will|would)\b", question.strip(), re.I):
        return m.group(1).lower(), "yes/no lead of a sentence answer"
    blob = " ".join(h.title + " " + h.text for h in evidence).lower()
    q_low = question.lower()
    # what the question asks for decides the kind of span: "who kept the light" wants the
    # name, not the "31 years" that happens to end the sentence
    kind = answer_kind(question)
    names_ = [e for e in entities(answer) if e.lower() in blob and e.lower() not in q_low]
    numbers = [n for n in _NUMBER.findall(answer) if n in blob and n not in q_low]
    candidates = numbers if kind in ("number", "date") and numbers else names_ or numbers
    if not candidates:
        return answer, None
    last = max(candidates, key=lambda c: answer.rfind(c))
    return last, "span cut from a sentence answer"


def best_sentence(question: str, evidence: list[Hit]) -> tuple[str, int] | None:
    """The evidence sentence sharing most words with the question (extractive fallback)."""
    q = set(content_terms(question))
    best: tuple[float, str, int] | None = None
    for n, h in enumerate(evidence, 1):
        for s in _SENT.findall(h.text):
            s = s.strip()
            if len(s) < 10 or s.startswith("#"):
                continue
            score = len(q & set(content_terms(s))) + 0.01 / n
            if best is None or score > best[0]:
                best = (score, s, n)
    return (best[1], best[2]) if best and best[0] >= 1 else None


def _cite_span(answer: str, evidence: list[Hit], prefer: int | None = None) -> list[Citation]:
    """A short answer cites the chunk that contains it (the one it was taken from first)."""
    order = ([prefer] if prefer is not None else []) + list(range(len(evidence)))
    n = next((i for i in order if 0 <= i < len(evidence) and answer.lower() in evidence[i].text.lower()), None)
    if n is None:
        return []
    h = evidence[n]
    return [Citation(marker=n + 1, chunk_id=h.id, title=h.title, text=h.text, score=h.score)]


def span_answer(question: str, evidence: list[Hit], llm: ChatLLM) -> tuple[Generated | None, str]:
    """The likelihood path for short answers; (None, why) when it cannot answer."""
    try:
        choice = choose_span(question, evidence, llm)
    except ScoringUnsupported as e:
        return None, f"span scoring unsupported: {e}"
    except LLMError as e:
        return None, f"span scoring failed: {e}"
    if choice.answer is None:
        return None, choice.reason
    cites = _cite_span(choice.answer, evidence, choice.chunk_index)
    raw = "; ".join(f"{c} ({v:.2f})" for c, v in choice.candidates)
    responses = [choice.response] if choice.response is not None else []
    return Generated(
        choice.answer, cites, "answered", fallback=None, raw=raw, responses=responses, method=choice.method or "spans"
    ), ""


def generate(
    question: str,
    evidence: list[Hit],
    llm: ChatLLM,
    style: str = "full",
    max_tokens: int = 160,
    answer_mode: str = "generate",
) -> Generated:
    if not evidence:
        return Generated(NOT_FOUND_TEXT, [], "not_found", fallback="no evidence")
    span_why = ""
    if style == "short" and answer_mode == "spans":
        picked, span_why = span_answer(question, evidence, llm)
        if picked is not None:
            return picked
    name = "answer_short" if style == "short" else "answer"
    msgs = prompts.chat(name, question=question, documents=format_evidence(evidence))
    if style == "short":  # rewritten whole below, so shown only when finished
        resp = answer_chat(llm, msgs, 32, question, evidence)
    else:  # shown token by token when the run streams (agent/tokens.py)
        resp = answer_chat(llm, msgs, max_tokens, question, evidence, clean=parse_citations)
    raw = resp.text or ""
    if _NOT_FOUND.search(raw) and len(raw.split()) <= 6:
        return Generated(NOT_FOUND_TEXT, [], "not_found", raw=raw, responses=[resp])
    if style == "short":
        ans = _clean_short(raw)
        if not ans or not re.search(r"\w", ans):
            return Generated(NOT_FOUND_TEXT, [], "not_found", fallback="empty model output", raw=raw, responses=[resp])
        ans, how = shorten(ans, question, evidence)
        if span_why:
            how = f"free generation ({span_why})" + (f"; {how}" if how else "")
        return Generated(ans, _cite_span(ans, evidence), "answered", fallback=how, raw=raw, responses=[resp])
    text, cites = parse_citations(raw.strip(), evidence)
    if not re.search(r"\w{2,}", text):
        picked = best_sentence(question, evidence)
        if picked is None:
            return Generated(NOT_FOUND_TEXT, [], "not_found", fallback="empty model output", raw=raw, responses=[resp])
        s, n = picked
        text, cites = parse_citations(f"{s} [{n}]", evidence)
        return Generated(text, cites, "answered", fallback="extractive: empty model output", raw=raw, responses=[resp])
    if not cites:
        # the model answered without citing: cite the chunk that best supports the answer
        n = _best_support(text, evidence)
        if n is not None:
            text, cites = parse_citations(f"{text} [{n}]", evidence)
            return Generated(
                text,
                cites,
                "answered",
                fallback="auto-cited: the model gave no valid citation",
                raw=raw,
                responses=[resp],
            )
        # no citation and no chunk that supports it: an echo or an invention, not an answer
        return Generated(
            NOT_FOUND_TEXT,
            [],
            "not_found",
            fallback="unsupported: no evidence chunk supports the model's uncited answer",
            raw=raw,
            responses=[resp],
        )
    return Generated(text, cites, "answered", raw=raw, responses=[resp])


def _best_support(claim: str, evidence: list[Hit]) -> int | None:
    """The chunk that best supports an uncited answer: most of its names and content words,
    the higher-ranked chunk on a tie (the top chunk holds the fact more often than not)."""
    terms = set(content_terms(claim))
    if not terms:
        return None
    key_spans = [e.lower() for e in entities(claim)] + _NUMBER.findall(claim)
    best: tuple[float, int] | None = None
    for n, h in enumerate(evidence, 1):
        blob = f"{h.title} {h.text}"
        share = len(terms & set(content_terms(blob))) / len(terms)
        names_in = sum(k in blob.lower() for k in key_spans) / len(key_spans) if key_spans else 0.0
        score = share + names_in
        if best is None or score > best[0]:
            best = (score, n)
    return best[1] if best is not None and best[0] >= 0.3 else None


def claim_support(sentence: str, chunk_text: str) -> float:
    """Share of a claim's content words found in the cited chunk (0..1)."""
    terms = set(content_terms(_MARK.sub("", sentence)))
    if not terms:
        return 1.0
    return len(terms & set(content_terms(chunk_text))) / len(terms)


def verify(answer: str, citations: list[Citation], threshold: float = 0.5) -> tuple[list[Citation], list[str]]:
    """Mark each citation supported or not; return unsupported sentences."""
    by_marker = {c.marker: c for c in citations}
    support: dict[int, bool] = {}
    unsupported: list[str] = []
    for sent in _SENT.findall(answer):
        marks = [int(x) for m in _MARK.findall(sent) for x in re.split(r"\s*,\s*", m)]
        marks = [m for m in marks if m in by_marker]
        if not marks:
            continue
        ok = max(claim_support(sent, by_marker[m].title + " " + by_marker[m].text) for m in marks) >= threshold
        for m in marks:
            support[m] = support.get(m, False) or ok
        if not ok:
            unsupported.append(sent.strip())
    return [replace(c, supported=support.get(c.marker)) for c in citations], unsupported


def revise(
    question: str, answer: str, unsupported: list[str], evidence: list[Hit], llm: ChatLLM
) -> tuple[str, list[Citation], LLMResponse]:
    msgs = prompts.chat(
        "revise",
        question=question,
        answer=answer,
        unsupported=" | ".join(unsupported),
        documents=format_evidence(evidence),
    )
    resp = llm.chat(msgs, max_tokens=160, temperature=0.0)
    text, cites = parse_citations((resp.text or "").strip(), evidence)
    return text, cites, resp
