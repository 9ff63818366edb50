"""Evidence that holds the chain, not k look-alikes.

The reranked list puts first what resembles the question; in a two-hop question that is
the first-hop document and its look-alikes, while the document the bridge leads to (a
person, a town) resembles the question little and falls below the cut. So the final order
is chosen by *pairs*:

1. candidates = the top ``n_candidates`` of the ranked list, plus every chunk whose subject
   the top ``n_seeds`` chunks mention (the entity link graph of
   :mod:`hoprank.tools.retrieval.links`; this is a hop that needs no query);
2. each candidate gets s = cosine(question, chunk) from the index's stored vectors,
   min-max scaled over the candidates;
3. each pair scores s(a) + s(b) + ``w_link`` * [a mentions b's subject or b mentions a's]
   + ``w_cover`` * (share of the question's names found in a or b)
   + ``w_terms`` * (share of the question's content words found in a or b: a pair whose
   second chunk adds what the first lacks, "born", "town", beats two look-alikes);
4. the best pair goes first (the more question-like chunk of it first), then the next
   pairs' new members, then the rest of the ranked list.

The weights were chosen on the first 40 questions of the shared HotpotQA sample and on the
fictional corpus of :mod:`hoprank.evals.fiction` (file-name titles, varied name forms);
questions 41-60 were held back (benchmarks/results/multihop.md reports them apart).
Comparison questions benefit through the coverage terms (each compared name in one chunk).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hoprank.agent.understand import stems
from hoprank.tools.names import names
from hoprank.tools.retrieval.links import link_graph
from hoprank.tools.types import Hit


@dataclass
class ChainSelection:
    """The new order and what decided it (for the trace)."""

    ranked: list[Hit]
    pairs: list[tuple[str, str, float, bool]] = field(default_factory=list)  # (a, b, score, linked)
    added: list[str] = field(default_factory=list)  # chunk ids brought in by entity links
    reason: str = ""


def select_chains(
    question: str,
    ranked: list[Hit],
    index: Any,
    *,
    n_candidates: int = 10,
    n_seeds: int = 3,
    w_link: float = 0.4,
    w_cover: float = 0.4,
    w_terms: float = 0.6,
    keep: int = 10,
) -> ChainSelection:
    """Reorder ``ranked`` so that its head is the best-scoring chain of two chunks."""
    if not ranked:
        return ChainSelection([], reason="no candidates")
    rows = index.row_by_id
    graph = link_graph(index)
    cands: list[Hit] = [h for h in ranked[:n_candidates] if h.id in rows]
    have = {h.id for h in cands}
    added: list[str] = []
    for seed in ranked[:n_seeds]:
        if seed.id not in rows:
            continue
        for row in graph.mentioned(seed.text, exclude=rows[seed.id]):
            chunk = index.chunks[row]
            if chunk.id not in have:
                have.add(chunk.id)
                added.append(chunk.id)
                cands.append(Hit.from_chunk(chunk, score=0.0, rank=0, retriever="link"))
    if len(cands) < 2:
        return ChainSelection(list(ranked), reason="fewer than two candidates in the index")
    qv = np.asarray(index.embedder.encode_queries([question]), dtype=np.float32)[0]
    vecs = np.asarray(index.embeddings[[rows[h.id] for h in cands]], dtype=np.float32)
    sims = vecs @ qv
    lo, hi = float(sims.min()), float(sims.max())
    s = (sims - lo) / (hi - lo + 1e-9)
    q_names = [n.lower() for n in names(question)]
    blobs = [f"{h.title} {h.text}".lower() for h in cands]
    q_stems = stems(question)
    c_stems = [stems(b) & q_stems for b in blobs]
    cand_rows = [rows[h.id] for h in cands]
    pairs: list[tuple[float, int, int, bool]] = []
    for a, b in itertools.combinations(range(len(cands)), 2):
        linked = graph.linked(cands[a].text, cand_rows[b]) or graph.linked(cands[b].text, cand_rows[a])
        cover = sum(n in blobs[a] or n in blobs[b] for n in q_names) / len(q_names) if q_names else 0.0
        terms = len(c_stems[a] | c_stems[b]) / len(q_stems) if q_stems else 0.0
        score = s[a] + s[b] + w_link * linked + w_cover * cover + w_terms * terms
        pairs.append((float(score), a, b, linked))
    pairs.sort(key=lambda p: -p[0])
    order: list[int] = []
    for _, a, b, _ in pairs:
        for i in sorted((a, b), key=lambda i: -s[i]):
            if i not in order:
                order.append(i)
        if len(order) >= keep:
            break
    head = [replace(cands[i], rank=r) for r, i in enumerate(order, 1)]
    head_ids = {h.id for h in head}
    tail = [h for h in ranked if h.id not in head_ids]
    out = head + [replace(h, rank=len(head) + r) for r, h in enumerate(tail, 1)]
    top = [(cands[a].id, cands[b].id, round(sc, 4), linked) for sc, a, b, linked in pairs[:3]]
    return ChainSelection(out, top, added, f"{len(cands)} candidates ({len(added)} via entity links)")
