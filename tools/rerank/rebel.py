"""REBEL multi-criteria reranking ("Relevance Isn't All You Need", microsoft/REBEL).

``one-turn`` (static prompt): relevance 0-10 (below ``min_relevance`` dropped) plus five
criteria 0-5, final = relevance + weight x sum (max 22.5 with the defaults); ties go to the
higher authoritativeness. ``two-turn``: a meta prompt first writes query-specific scoring
instructions, then the documents are scored with them in batches (sent concurrently).

Cross-batch normalisation (the reference has none). A model's scores drift with the batch
it sees: a batch full of strong documents makes it stingy, a weak batch generous, so raw
scores from different batches are not comparable. We put one shared *anchor* document (the
retriever's top hit) into every batch and shift each batch so the anchor gets the same
score everywhere; that measures the drift directly instead of assuming it. z-scoring each
batch (``normalize="zscore"``) assumes every batch holds equally good documents, which is
false for a ranked candidate list (the first batch holds the retriever's best), so it is
only the fallback for a batch whose anchor the model did not score.

Defaults for what a small model leaves out: a document it never mentions gets score -1.0
and ranks below every scored document, in original order; a document it scores with
relevance below ``min_relevance`` ranks below kept ones (REBEL drops those); output with
no parseable line at all keeps the original order.
"""

from __future__ import annotations

import statistics
from typing import Any, Literal

from hoprank import prompts
from hoprank.tools.rerank.base import (
    CallRecorder,
    Reranker,
    RerankError,
    Scored,
    doc_text,
    numbered,
)
from hoprank.tools.rerank.parsing import RebelLine, parse_rebel
from hoprank.tools.types import Hit

UNMENTIONED_SCORE = -1.0


def default_criteria() -> list[tuple[str, str]]:
    """The five REBEL criteria, read from prompts/rerank_rebel.criteria.txt (name: description)."""
    out = []
    for line in prompts.load("rerank_rebel.criteria").splitlines():
        if ":" in line:
            name, desc = line.split(":", 1)
            out.append((name.strip(), desc.strip()))
    return out


def _norm_criteria(criteria: Any) -> list[tuple[str, str]]:
    if criteria is None:
        return default_criteria()
    known = dict(default_criteria())
    out: list[tuple[str, str]] = []
    items = criteria.items() if isinstance(criteria, dict) else criteria
    for c in items:
        if isinstance(c, str):
            out.append((c.strip(), known.get(c.strip().lower(), c.strip())))
        elif isinstance(c, (tuple, list)) and len(c) == 2:
            out.append((str(c[0]).strip(), str(c[1]).strip()))
        else:
            raise RerankError(f"rebel criteria must be names or (name, description) pairs, got {c!r}")
    if not out or any(not n for n, _ in out):
        raise RerankError(f"rebel criteria must be a non-empty list of names, got {criteria!r}")
    return out


def normalize_batches(
    batch_scores: list[dict[int, float]], anchor: int | None, method: str
) -> tuple[list[dict[int, float]], list[str]]:
    """Make scores from different batches comparable. Returns new dicts and what was done per batch.

    ``anchor``: shift each batch so the anchor's score equals its mean over batches that
    scored it; a batch without an anchor score falls back to z-scoring. ``zscore``: each
    batch to the pooled mean / standard deviation. ``none``: untouched. One batch: untouched."""
    if method == "none" or len(batch_scores) <= 1:
        return [dict(b) for b in batch_scores], ["none"] * len(batch_scores)
    pooled = [v for b in batch_scores for v in b.values()]
    mu = statistics.fmean(pooled) if pooled else 0.0
    sd = statistics.pstdev(pooled) if len(pooled) > 1 else 0.0
    anchor_vals = [b[anchor] for b in batch_scores if anchor is not None and anchor in b]
    target = statistics.fmean(anchor_vals) if anchor_vals else None
    out: list[dict[int, float]] = []
    how: list[str] = []
    for b in batch_scores:
        if method == "anchor" and target is not None and anchor in b:
            shift = target - b[anchor]
            out.append({i: v + shift for i, v in b.items()})
            how.append(f"anchor{shift:+.2f}")
        elif len(b) >= 2 and statistics.pstdev(b.values()) > 0:
            m, s = statistics.fmean(b.values()), statistics.pstdev(b.values())
            out.append({i: mu + (v - m) / s * (sd or 1.0) for i, v in b.items()})
            how.append("zscore")
        else:
            out.append(dict(b))
            how.append("none")
    return out, how


class RebelReranker(Reranker):
    name = "rebel"
    description = (
        "Rerank passages with an LLM that scores each passage's relevance plus quality criteria "
        "(depth, diversity, clarity, authority, recency), REBEL style. Returns passages best first."
    )
    needs_llm = True

    def __init__(
        self,
        llm: Any,
        variant: Literal["one-turn", "two-turn"] = "one-turn",
        criteria: Any = None,
        weight: float = 0.5,
        min_relevance: float = 3.0,
        batch_size: int | None = None,
        normalize: Literal["anchor", "zscore", "none"] = "anchor",
        max_doc_words: int = 80,
        max_tokens: int = 400,
        meta_max_tokens: int = 200,
    ) -> None:
        super().__init__()
        self.check_choices(variant=variant, normalize=normalize)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 2):
            raise RerankError(f"rebel batch_size must be an integer >= 2 or None, got {batch_size!r}")
        self.llm = llm
        self.variant = variant
        self.criteria = _norm_criteria(criteria)
        self.weight = float(weight)
        self.min_relevance = float(min_relevance)
        # one-turn: the static 0-10 scales are fairly absolute, so 20 documents in one prompt;
        # two-turn: the reference's batches of 10
        self.batch_size = batch_size or (20 if variant == "one-turn" else 10)
        self.normalize = normalize
        self.max_doc_words = max_doc_words
        self.max_tokens = max_tokens
        self.meta_max_tokens = meta_max_tokens

    def options(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "criteria": [n for n, _ in self.criteria],
            "weight": self.weight,
            "min_relevance": self.min_relevance,
            "batch_size": self.batch_size,
            "normalize": self.normalize,
            "max_doc_words": self.max_doc_words,
        }

    def _batches(self, n: int) -> tuple[list[list[int]], int | None]:
        """Batches of input indices; with several batches, index 0 (the anchor) joins each."""
        if n <= self.batch_size:
            return [list(range(n))], None
        anchor = 0 if self.normalize == "anchor" else None
        size = self.batch_size - 1 if anchor is not None else self.batch_size
        rest = list(range(1, n)) if anchor is not None else list(range(n))
        batches = [rest[i : i + size] for i in range(0, len(rest), size)]
        if anchor is not None:
            batches = [[anchor, *b] for b in batches]
        return batches, anchor

    def _instructions(self, query: str, rec: CallRecorder) -> str:
        """Two-turn step 1: query-specific criteria; a useless reply falls back to the static list."""
        static = "\n".join(f"- {n}: {d}" for n, d in self.criteria)
        msgs = prompts.chat("rerank_rebel_meta", query=query, max_criteria=len(self.criteria))
        r = rec.chat(self.llm, msgs, "rebel_meta", max_tokens=self.meta_max_tokens, temperature=0)
        text = (r.text or "").strip()
        words = text.split()
        if len(words) < 5 or len(set(words)) < 4:
            rec.count("meta_fallback")
            return static
        rec.count("meta_ok")
        return " ".join(words[:150])

    def _score(
        self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder
    ) -> list[Scored]:
        n = len(hits)
        texts = [doc_text(h, self.max_doc_words) for h in hits]
        batches, anchor = self._batches(n)
        names = [c for c, _ in self.criteria]
        if self.variant == "one-turn":
            crit_text = "\n".join(f"   - {c}: {d}" for c, d in self.criteria)
            msgs = [
                prompts.chat(
                    "rerank_rebel",
                    query=query,
                    documents=numbered([texts[i] for i in b]),
                    criteria=crit_text,
                    min_relevance=f"{self.min_relevance:g}",
                    weight=f"{self.weight:g}",
                )
                for b in batches
            ]
        else:
            instructions = self._instructions(query, rec)
            rec.extra["rebel_instructions"] = instructions
            msgs = [
                prompts.chat(
                    "rerank_rebel_score",
                    query=query,
                    instructions=instructions,
                    documents=numbered([texts[i] for i in b]),
                )
                for b in batches
            ]
        responses = rec.chat_many(self.llm, msgs, "rebel", max_tokens=self.max_tokens, temperature=0)
        batch_scores: list[dict[int, float]] = []
        lines: dict[int, RebelLine] = {}
        for b, r in zip(batches, responses):
            parsed = parse_rebel(r.text, len(b), names, self.weight)
            rec.count("ok" if parsed else "failed")
            scores: dict[int, float] = {}
            for ln in parsed:
                idx = b[ln.doc - 1]
                scores[idx] = ln.final
                lines.setdefault(idx, ln)
            batch_scores.append(scores)
        normed, how = normalize_batches(batch_scores, anchor, self.normalize)
        if len(batches) > 1:
            rec.extra["rebel_normalisation"] = how
        collected: dict[int, list[float]] = {}
        for b_scores in normed:
            for idx, v in b_scores.items():
                collected.setdefault(idx, []).append(v)
        final = {idx: statistics.fmean(vs) for idx, vs in collected.items()}  # the anchor: mean
        return self._order(n, final, lines)

    def _order(self, n: int, final: dict[int, float], lines: dict[int, RebelLine]) -> list[Scored]:
        auth = next((c for c, _ in self.criteria if c.lower().startswith("authorit")), None)

        def key(i: int) -> tuple:
            ln = lines.get(i)
            if i not in final:
                tier = 2
            elif ln is not None and ln.relevance is not None and ln.relevance < self.min_relevance:
                tier = 1
            else:
                tier = 0
            a = ln.criteria.get(auth, 0.0) if (ln is not None and auth) else 0.0
            return (tier, -final.get(i, UNMENTIONED_SCORE), -a, i)

        out = []
        for i in sorted(range(n), key=key):
            ln = lines.get(i)
            rationale = None
            if ln is not None:
                parts = [f"relevance {ln.relevance:g}"] if ln.relevance is not None else []
                parts += [f"{c} {v:g}" for c, v in ln.criteria.items()]
                rationale = f"final {ln.final:g}" + (f" ({', '.join(parts)})" if parts else "")
            out.append(Scored(i, round(final.get(i, UNMENTIONED_SCORE), 4), rationale))
        return out
