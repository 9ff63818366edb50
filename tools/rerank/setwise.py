"""Rank-R1 setwise reranking: the LLM picks the most relevant document of a set, with reasoning.

Sorting follows ielab/llm-rankers: ``heapsort`` (a num_child-ary max-heap where one prompt
holds a parent and its children) or ``bubblesort`` (a window of num_child+1 sliding bottom-up).
Only the top ``k`` are sorted; the rest keep their original order below them.

Heap building is done level by level: heapify calls on nodes of one level touch disjoint
subtrees, so their prompts go out together through ``chat_many`` and the result is exactly
the sequential algorithm's, in fewer round trips. Permutation voting sends its shuffled
copies of a set concurrently too.

``scoring="likelihood"`` (the setwise paper's likelihood variant for open models) labels the
documents of a comparison A, B, C... and takes as winner the label with the highest
log-probability as the first token of the reply: one forward pass, nothing generated, no
format to follow, which is what a model too small to write ``<answer>[3]</answer>`` needs.
The labels' content-free prior (the same prompt with "N/A" passages) is divided out, and a
set is shown in retrieval order, so the model's taste for "A" does not decide. A backend
that cannot score falls back to the text prompt for the rest of the call, and the trace
counts the comparisons that fell back (``fallbacks``).
"""

from __future__ import annotations

import math
import random
import zlib
from collections import Counter
from typing import Any, Literal

from hoprank import prompts
from hoprank.tools.rerank.base import (
    LETTERS,
    CallRecorder,
    Reranker,
    RerankError,
    Scored,
    calibrate,
    content_free,
    doc_text,
    lettered,
    numbered,
)
from hoprank.tools.rerank.parsing import parse_setwise
from hoprank.tools.types import Hit


class SetwiseReranker(Reranker):
    name = "setwise"
    description = (
        "Rerank passages with an LLM that repeatedly picks the most relevant passage of a set "
        "after reasoning about it (Rank-R1 setwise, heapsort or bubblesort); slow but careful. "
        "Returns passages best first with the model's reasoning."
    )
    needs_llm = True

    def __init__(
        self,
        llm: Any,
        method: Literal["heapsort", "bubblesort"] = "heapsort",
        num_child: int = 19,
        k: int = 10,
        num_permutation: int = 1,
        max_doc_words: int = 80,
        max_tokens: int = 256,
        seed: int = 0,
        scoring: Literal["text", "likelihood"] = "text",
        calibrate: bool = True,
    ) -> None:
        super().__init__()
        self.check_choices(method=method, scoring=scoring)
        if scoring == "likelihood" and isinstance(num_child, int) and num_child + 1 > len(LETTERS):
            raise RerankError(
                "setwise likelihood scoring labels a set with letters: "
                f"num_child must be <= {len(LETTERS) - 1}, got {num_child}"
            )
        self.check_int("num_child", num_child, 1)
        self.check_int("num_permutation", num_permutation, 1)
        self.check_int("k", k, 1)
        self.llm = llm
        self.method = method
        self.num_child = num_child
        self.k = k
        self.num_permutation = num_permutation
        self.max_doc_words = max_doc_words
        self.max_tokens = max_tokens
        self.seed = seed
        self.scoring = scoring
        self.calibrate = bool(calibrate)

    def options(self) -> dict[str, Any]:
        return {
            "scoring": self.scoring,
            **({"calibrate": self.calibrate} if self.scoring == "likelihood" else {}),
            "method": self.method,
            "num_child": self.num_child,
            "k": self.k,
            "num_permutation": self.num_permutation,
            "max_doc_words": self.max_doc_words,
            "max_tokens": self.max_tokens,
        }

    # ---- one set comparison (batched) ---------------------------------------------------
    def _compare_many(
        self, query: str, sets: list[list[int]], texts: list[str], rec: CallRecorder, wins: dict[int, str]
    ) -> list[int]:
        """For each set of input indices, the position (0-based, in that set) of the winner.

        With ``num_permutation > 1`` each set is also asked in shuffled orders and the
        winner is the most voted document; a failed parse casts no vote. Ties, and sets with
        no vote at all, go to the document ranked highest by the retriever. (llm-rankers
        lets the heap parent win a failed comparison; in a heap that is not the retrieval
        order, so a model that never answers would scramble the list. With this rule it
        returns the retrieval order unchanged.)"""
        if self.scoring == "likelihood" and not rec.extra.get("scoring_fallback"):
            won = self._compare_likelihood(query, sets, texts, rec, wins)
            if won is not None:
                return won
            rec.extra["scoring_fallback"] = "text"
        if self.scoring == "likelihood":
            for _ in sets:
                rec.fallback("setwise likelihood -> text")
        layouts = self._layouts(query, sets)
        messages = [
            prompts.chat("rerank_setwise", query=query, documents=numbered([texts[sets[s_i][j]] for j in perm]))
            for s_i, perm in layouts
        ]
        responses = rec.chat_many(self.llm, messages, "setwise", max_tokens=self.max_tokens, temperature=0)
        votes: list[Counter[int]] = [Counter() for _ in sets]
        reasons: list[dict[int, str]] = [{} for _ in sets]
        for (s_i, perm), r in zip(layouts, responses):
            ans = parse_setwise(r.text, len(perm))
            rec.count(ans.status)
            if ans.label is None:
                continue
            pos = perm[ans.label - 1]
            votes[s_i][pos] += 1
            if ans.reasoning:
                reasons[s_i].setdefault(pos, ans.reasoning)
        winners: list[int] = []
        for s_i, s in enumerate(sets):
            if votes[s_i]:
                best = max(votes[s_i].values())
                tied = [p for p, v in votes[s_i].items() if v == best]
            else:
                tied = list(range(len(s)))
            pos = min(tied, key=lambda p: s[p])  # ties and failures: the retriever's order decides
            if pos in reasons[s_i]:
                wins[s[pos]] = reasons[s_i][pos]
            winners.append(pos)
        return winners

    def _layouts(self, query: str, sets: list[list[int]]) -> list[tuple[int, list[int]]]:
        """(set number, order of the set's positions shown) for every prompt: the set as
        given, then ``num_permutation - 1`` seeded shuffles of it."""
        out = []
        for s_i, s in enumerate(sets):
            for p in range(self.num_permutation):
                perm = list(range(len(s)))
                if p > 0:
                    key = f"{self.seed}|{query}|{','.join(map(str, s))}|{p}".encode()
                    random.Random(zlib.crc32(key)).shuffle(perm)
                out.append((s_i, perm))
        return out

    def _compare_likelihood(
        self, query: str, sets: list[list[int]], texts: list[str], rec: CallRecorder, wins: dict[int, str]
    ) -> list[int] | None:
        """Winners by label likelihood, or None when the backend could not score (fall back).

        A set is shown in retrieval order (label A = the retriever's best of the set), so a
        position bias left after calibration leans towards the retrieval order, never a
        scramble. With ``calibrate`` each label's log-probability is divided by its prior on
        the same prompt with "N/A" documents (one extra call per set size and rerank call).
        Each prompt's label probabilities (renormalised over the set's labels) are mapped
        back to set positions and summed over the permutations: the winner has the highest
        total, ties go to the document ranked highest by the retriever."""
        shown_sets = [sorted(range(len(s)), key=lambda p, s=s: s[p]) for s in sets]
        layouts = [(s_i, [shown_sets[s_i][j] for j in perm]) for s_i, perm in self._layouts(query, sets)]
        messages, labels = [], []
        for s_i, perm in layouts:
            shown = [texts[sets[s_i][j]] for j in perm]
            messages.append(prompts.chat("rerank_setwise_likelihood", query=query, documents=lettered(shown)))
            labels.append(list(LETTERS[: len(perm)]))
        priors: dict[str, dict[str, float]] = rec.extra.setdefault("label_prior", {}) if self.calibrate else {}
        new_sizes = sorted({len(s) for s in sets} - {int(k) for k in priors}) if self.calibrate else []
        for n in new_sizes:
            messages.append(prompts.chat("rerank_setwise_likelihood", query=query, documents=lettered(content_free(n))))
            labels.append(list(LETTERS[:n]))
        scored = rec.score_many(self.llm, messages, labels, "setwise-likelihood")
        if scored is None:
            return None
        for n, lp in zip(new_sizes, scored[len(layouts) :]):
            priors[str(n)] = {k: round(v, 4) for k, v in lp.items()}
        totals = [[0.0] * len(s) for s in sets]
        for (s_i, perm), labs, lp in zip(layouts, labels, scored):
            rec.count("logprob")
            lp = calibrate(lp, priors.get(str(len(labs))))
            probs = _normalised([lp[lab] for lab in labs])
            for j, p in enumerate(probs):
                totals[s_i][perm[j]] += p
        winners = []
        for s_i, s in enumerate(sets):
            best = max(totals[s_i])
            pos = min((p for p, v in enumerate(totals[s_i]) if v == best), key=lambda p: s[p])
            wins[s[pos]] = f"label likelihood {best / self.num_permutation:.2f} among {len(s)}"
            winners.append(pos)
        return winners

    # ---- heapsort -----------------------------------------------------------------------
    def _heapify_many(
        self,
        query: str,
        arr: list[int],
        n: int,
        roots: list[int],
        texts: list[str],
        rec: CallRecorder,
        wins: dict[int, str],
    ) -> None:
        """Sift down several roots with disjoint subtrees in lockstep (one batch per step)."""
        c = self.num_child
        active = [i for i in roots if c * i + 1 < n]
        while active:
            sets_pos = [[i, *range(c * i + 1, min(c * (i + 1) + 1, n))] for i in active]
            winners = self._compare_many(query, [[arr[p] for p in sp] for sp in sets_pos], texts, rec, wins)
            nxt = []
            for i, sp, w in zip(active, sets_pos, winners):
                largest = sp[w]
                if largest != i:
                    arr[i], arr[largest] = arr[largest], arr[i]
                    if c * largest + 1 < n:
                        nxt.append(largest)
            active = nxt

    def _heapsort(
        self, query: str, n: int, k: int, texts: list[str], rec: CallRecorder, wins: dict[int, str]
    ) -> list[int]:
        c = self.num_child
        arr = list(range(n))
        # build: llm-rankers goes from n // c down to 0; nodes of one depth go together
        start = n // c
        by_depth: dict[int, list[int]] = {}
        for i in range(start, -1, -1):
            d, j = 0, i
            while j > 0:
                j = (j - 1) // c
                d += 1
            by_depth.setdefault(d, []).append(i)
        for d in sorted(by_depth, reverse=True):
            self._heapify_many(query, arr, n, by_depth[d], texts, rec, wins)
        ranked: list[int] = []
        size = n
        while size > 0 and len(ranked) < k:
            ranked.append(arr[0])
            size -= 1
            arr[0], arr[size] = arr[size], arr[0]
            if len(ranked) < k and size > 1:
                self._heapify_many(query, arr, size, [0], texts, rec, wins)
        return ranked

    # ---- bubblesort ---------------------------------------------------------------------
    def _bubblesort(
        self, query: str, n: int, k: int, texts: list[str], rec: CallRecorder, wins: dict[int, str]
    ) -> list[int]:
        c = self.num_child
        ranking = list(range(n))
        for i in range(min(k, n - 1)):
            end = n
            start = max(n - (c + 1), i)
            while True:
                window = ranking[start:end]
                w = self._compare_many(query, [window], texts, rec, wins)[0]
                if w != 0:
                    ranking.insert(start, ranking.pop(start + w))
                if start == i:
                    break
                start = max(start - c, i)
                end -= c
        return ranking[:k]

    def _score(
        self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder
    ) -> list[Scored]:
        n = len(hits)
        k = min(top_k or self.k, n)
        texts = [doc_text(h, self.max_doc_words) for h in hits]
        wins: dict[int, str] = {}
        if n == 1:
            top = [0]
        elif self.method == "heapsort":
            top = self._heapsort(query, n, k, texts, rec, wins)
        else:
            top = self._bubblesort(query, n, k, texts, rec, wins)
        chosen = set(top)
        order = top + [i for i in range(n) if i not in chosen]
        return [Scored(idx, float(n - pos), wins.get(idx) if pos < len(top) else None) for pos, idx in enumerate(order)]


def _normalised(logprobs: list[float]) -> list[float]:
    """Probabilities of the labels renormalised among themselves (a softmax of log-probs)."""
    top = max(logprobs)
    exp = [math.exp(v - top) for v in logprobs]
    total = sum(exp)
    return [e / total for e in exp]
