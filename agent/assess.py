"""Is the evidence enough to answer? A cheap, deterministic judgement.

An LLM judge of 135M parameters says "yes" to everything, so sufficiency is decided from
the evidence itself: how much of the question the top chunks cover, whether every compared
entity is present, and whether a bridge question has had its second hop.
"""

from __future__ import annotations

from dataclasses import dataclass

from hoprank.agent.understand import content_terms, entities
from hoprank.tools.types import Hit


@dataclass
class Assessment:
    sufficient: bool
    coverage: float  # share of the question's content words found in the evidence
    missing: list[str]  # content words / entities not found
    reason: str


def assess(
    question: str, qtype: str, ranked: list[Hit], hop: int, evidence_k: int = 5, min_coverage: float = 0.6
) -> Assessment:
    top = ranked[:evidence_k]
    if not top:
        return Assessment(False, 0.0, content_terms(question), "no evidence retrieved")
    blob = " ".join(f"{h.title} {h.text}" for h in top).lower()
    terms = list(dict.fromkeys(content_terms(question)))
    found = [t for t in terms if t in blob]
    coverage = len(found) / len(terms) if terms else 1.0
    missing = [t for t in terms if t not in blob]
    if qtype == "comparison":
        absent = [e for e in entities(question) if e.lower() not in blob]
        if absent:
            return Assessment(False, coverage, absent, f"compared entities not in evidence: {', '.join(absent)}")
    if qtype in ("bridge", "aggregation") and hop == 0:
        return Assessment(False, coverage, missing, "bridge question: the second hop has not run yet")
    if coverage < min_coverage:
        return Assessment(False, coverage, missing, f"evidence covers {coverage:.0%} of the question's terms")
    return Assessment(True, coverage, missing, f"evidence covers {coverage:.0%} of the question's terms")
