"""Follow-up queries for the next hop, built from the evidence found so far.

In a bridge question the second document is usually never named ("the town where the
founder of Osric Dynamics was born"): its title is a *bridge entity* that appears in the
first document ("founded in 1962 by Ingrid Holloway"). So the next queries pair names that
occur in the top evidence but not in the question with what the question still asks.
"""

from __future__ import annotations

import re
from collections import Counter

from hoprank.agent.understand import content_terms, entities, stems
from hoprank.tools.types import Hit

_SENT = re.compile(r"[^.!?\n]+[.!?]?")


def bridge_entities(question: str, hits: list[Hit], max_entities: int = 3) -> list[str]:
    """Names in the top hits that the question does not mention, best first.

    A name scores higher when it sits in a sentence that shares words with the question
    (the sentence that answers the first hop) and when it recurs across hits."""
    q_low = question.lower()
    q_terms = stems(question)
    q_entities = [e.lower() for e in entities(question)]
    scores: Counter[str] = Counter()
    for rank, h in enumerate(hits, 1):
        for sent in _SENT.findall(h.text):
            overlap = len(q_terms & stems(sent))
            if overlap == 0:
                continue
            for e in entities(sent):
                el = e.lower()
                if el in q_low or el == h.title.lower() or e.isdigit() or len(e) < 3:
                    continue
                if any(qe in el or el in qe for qe in q_entities):  # a variant of a name the question has
                    continue
                scores[e] += overlap / rank
    return [e for e, _ in scores.most_common(max_entities)]


def hop_queries(
    question: str, subquestions: list[str], ranked: list[Hit], asked: list[str], max_queries: int = 3, top_hits: int = 3
) -> list[str]:
    """Queries for the next retrieval round, never repeating one already asked."""
    seen = {a.lower() for a in asked}
    covered = set()
    for h in ranked[:top_hits]:
        covered |= set(content_terms(h.title))
    # what the question still asks once the first-hop entity is found
    open_terms = [t for t in content_terms(question) if t not in covered]
    # drop the words of the first-hop phrase itself ("founder of Osric Dynamics")
    first_hop = set(content_terms(" ".join(subquestions[:1]))) if subquestions else set()
    rest = " ".join(t for t in open_terms if t not in first_hop) or " ".join(open_terms)
    queries: list[str] = []
    for e in bridge_entities(question, ranked[:top_hits]):
        q = f"{e} {rest}".strip()
        if q.lower() not in seen and q not in queries:
            queries.append(q)
    # sub-questions never run on their own yet
    for s in subquestions:
        if s.lower() not in seen and s not in queries:
            queries.append(s)
    return queries[:max_queries]
