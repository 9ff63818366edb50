"""The one reranker interface (answerdotai/rerankers style) and the plumbing every method shares.

A reranker only decides an *order* (plus a score and, when it has one, a reasoning text per
hit); this base class turns that decision into renumbered :class:`Hit` records, applies
``top_k``, and records what the call cost in ``last_trace`` so the agent's trace (and the
benchmarks) can show LLM calls, tokens and seconds per rerank.

Each call gets its own :class:`CallRecorder`, so two reranks running at once on the same
reranker do not mix their usage; ``last_trace`` is simply the trace of the call that finished
last (use :meth:`Reranker.rerank_with_trace` when calls overlap).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import typing
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from hoprank.tools.errors import HoprankError, validate_query
from hoprank.tools.llm.base import LLMResponse, UsageMeter
from hoprank.tools.types import Hit, Usage

RAW_CHARS = 4000  # raw LLM output kept per call in the trace (a runaway generation is cut)


class RerankError(HoprankError, ValueError):
    """A reranker was asked for something it cannot do (bad name, option, top_k, model)."""


@dataclass(frozen=True)
class Scored:
    """One method's verdict on one input hit: its position in the input, score, reasoning."""

    index: int
    score: float
    rationale: str | None = None


@dataclass
class CallRecorder:
    """Usage of one rerank call, counted from the responses themselves (not a global diff).

    Counted in a :class:`~hoprank.tools.llm.base.UsageMeter`, like every LLM client: a
    response replayed from the cache is a call with its tokens like a paid one (the agent's
    token budget must not depend on the cache's state), and is counted again apart in
    ``cached_calls`` / ``cached_tokens``; a call that failed for good is a ``failures``.
    Likelihood scoring calls (:meth:`score_many`) count the same way, and each fall back from
    a scoring mode to text is tallied by name in ``fallbacks``."""

    meter: UsageMeter = field(default_factory=UsageMeter)
    raw: list[dict[str, Any]] = field(default_factory=list)
    parse: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def usage(self) -> Usage:
        """The usage of this rerank call so far."""
        return self.meter.snapshot()

    def add(self, r: LLMResponse | None) -> None:
        """Count one response (paid or replayed from the cache); ``None`` is no call."""
        self.meter.add(r)

    def chat_many(self, llm: Any, batch: Sequence[list[dict[str, str]]], kind: str, **params: Any) -> list[Any]:
        """Run independent prompts concurrently through ``llm.chat_many`` and count them."""
        if not batch:
            return []
        try:
            responses = llm.chat_many(list(batch), **params)
        except Exception as e:  # noqa: BLE001 - an LLM failure must not take the rerank down
            # one prompt failed after its retries: ask one by one (finished ones come from the
            # cache) and give the failures an empty reply, which every parser maps to its
            # fallback (the current order)
            self.errors.append(f"{kind}: {type(e).__name__}: {str(e)[:300]}")
            if len(batch) == 1:  # the LLM layer already retried what was worth retrying
                batch = []
            responses = [] if batch else [LLMResponse(text="", finish_reason="error")]
            for m in batch:
                try:
                    responses.append(llm.chat(m, **params))
                except Exception as e1:  # noqa: BLE001
                    self.errors.append(f"{kind}: {type(e1).__name__}: {str(e1)[:300]}")
                    responses.append(LLMResponse(text="", finish_reason="error"))
        for r in responses:
            if r.finish_reason == "error" and not r.text:
                self.meter.add_failure()  # the placeholder of a failed call: no tokens to count
            else:
                self.add(r)
            with self._lock:
                self.raw.append({"kind": kind, "text": (r.text or "")[:RAW_CHARS]})
        return responses

    def chat(self, llm: Any, messages: list[dict[str, str]], kind: str, **params: Any) -> Any:
        return self.chat_many(llm, [messages], kind, **params)[0]

    def score_many(
        self, llm: Any, batch: Sequence[list[dict[str, str]]], labels: Sequence[Sequence[str]], kind: str
    ) -> list[dict[str, float]] | None:
        """Log-probabilities of each prompt's ``labels`` as the reply's first token
        (:func:`~hoprank.tools.llm.scoring.label_logprobs`), the prompts concurrently.

        Returns None when any prompt could not be scored (a backend without
        log-probabilities, a label outside a server's top log-probabilities, an error): the
        caller then falls back to its text mode, and the reason is in ``errors``. After a
        failure the prompts not yet started are skipped; every call made is counted (a failed
        one in ``failures``)."""
        from hoprank.tools.llm.scoring import label_logprobs

        if not batch:
            return []
        workers = max(1, min(len(batch), int(getattr(llm, "max_concurrency", 1) or 1)))
        failures: list[str] = []
        stop = threading.Event()  # after one failure the rest is not asked: the caller falls back

        def one(job: tuple[list[dict[str, str]], Sequence[str]]) -> dict[str, float] | None:
            if stop.is_set():
                return None
            try:
                scores, r = label_logprobs(llm, job[0], job[1])
            except Exception as e:  # noqa: BLE001 - ScoringUnsupported, LLMError, a backend bug: fall back
                stop.set()
                self.meter.add_failure()
                with self._lock:
                    failures.append(f"{kind}: {type(e).__name__}: {str(e)[:300]}")
                return None
            self.add(r)
            return scores

        jobs = list(zip(batch, labels, strict=True))
        if workers == 1:
            out = [one(j) for j in jobs]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                out = list(pool.map(one, jobs))
        with self._lock:
            self.raw.extend({"kind": kind, "text": _top_labels(s)} for s in out if s is not None)
            if failures:
                self.errors.append(failures[0] + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""))
        if any(s is None for s in out):
            return None
        return [s for s in out if s is not None]

    def fallback(self, name: str) -> None:
        """Record that a scoring mode fell back (``name`` says from what to what)."""
        with self._lock:
            self.fallbacks[name] = self.fallbacks.get(name, 0) + 1

    def count(self, outcome: str) -> None:
        """Tally parse outcomes (``ok`` / ``lenient`` / ``failed``...) for honest reporting."""
        with self._lock:
            self.parse[outcome] = self.parse.get(outcome, 0) + 1


def _top_labels(scores: dict[str, float], n: int = 5) -> str:
    """The raw record of a scoring call: its most likely labels with their log-probabilities."""
    best = sorted(scores.items(), key=lambda kv: -kv[1])[:n]
    return " ".join(f"{k}:{v:.2f}" for k, v in best)


def content_free(n: int) -> list[str]:
    """The ``n`` documents of a calibration prompt, each "N/A" (Zhao et al. 2021)."""
    return ["N/A"] * n


def calibrate(scores: dict[str, float], prior: dict[str, float] | None) -> dict[str, float]:
    """Label log-probabilities minus their content-free prior: log p(label) - log p_cf(label).

    Why: a small model's first token carries a strong label prior, from the position ("A"
    first) and from the label as a word ("I" and "A" start English sentences); the same
    prompt with "N/A" documents measures that prior, and dividing it out ("Calibrate Before
    Use", Zhao et al. 2021) leaves what the documents changed. A label a server left out of
    its top log-probabilities (exactly :data:`FLOOR_LOGPROB`) gets no credit from calibration, and a
    prior below every other observed one is clipped to the lowest observed, so a label the
    content-free prompt never produced is not boosted by 30 nats."""
    from hoprank.tools.llm.scoring import FLOOR_LOGPROB

    if not prior:
        return dict(scores)
    seen = [v for v in prior.values() if v != FLOOR_LOGPROB]
    if not seen:
        return dict(scores)
    low = min(seen)
    return {k: (v if v == FLOOR_LOGPROB else v - max(prior.get(k, low), low)) for k, v in scores.items()}


def by_label(scores: dict[str, float], labels: Sequence[str]) -> list[int]:
    """Positions of ``labels`` from most to least likely; ties keep the shown order."""
    return sorted(range(len(labels)), key=lambda j: (-scores.get(labels[j], float("-inf")), j))


class Reranker:
    """Reorder hits for a query. Subclasses implement :meth:`_score`.

    ``rerank`` returns the kept hits in their new order with ``score``, ``rank`` (1..n),
    ``rationale`` and ``retriever`` set to the reranker name; the retrieval score and rank
    are kept in ``metadata`` (``retrieval_score``, ``retrieval_rank``). Hits outside
    ``top_k`` are not returned; ``top_k=None`` keeps all.
    """

    name: str = "base"
    description: str = "Rerank retrieved passages by relevance to the query."
    # what the factory must hand the constructor (``llm=`` / ``embedder=``); the registry in
    # ``tools/rerank/factory.py`` derives "which rerankers need an LLM" from these, nowhere else
    needs_llm: bool = False
    needs_embedder: bool = False

    def __init__(self) -> None:
        self.last_trace: dict[str, Any] = {}

    # ---- option checks (one wording for every reranker) ------------------------------------
    def check_choices(self, **values: Any) -> None:
        """Each value must be one of the ``Literal`` choices its constructor parameter declares: the signature
        is the one list of a reranker's choices, and the error names reranker, option and choices alike."""
        hints = typing.get_type_hints(type(self).__init__)
        for option, value in values.items():
            choices = typing.get_args(hints[option])
            if value not in choices:
                *rest, last = (repr(c) for c in choices)
                listed = f"{', '.join(rest)} or {last}" if rest else last
                raise RerankError(f"{self.name} {option} must be {listed}, got {value!r}")

    def check_int(self, option: str, value: Any, minimum: int) -> None:
        """``value`` must be an integer of at least ``minimum`` (sizes and counts of a reranker's sets)."""
        if not isinstance(value, int) or value < minimum:
            raise RerankError(f"{self.name} {option} must be an integer >= {minimum}, got {value!r}")

    # ---- subclass hook ----------------------------------------------------------------
    def _score(
        self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder
    ) -> list[Scored]:
        """Return every input index exactly once, best first."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The settings that shaped this reranker's decisions (shown in the trace)."""
        return {}

    # ---- public API -------------------------------------------------------------------
    def rerank(
        self, query: str, hits: list[Hit], top_k: int | None = None, subqueries: list[str] | None = None
    ) -> list[Hit]:
        return self.rerank_with_trace(query, hits, top_k=top_k, subqueries=subqueries)[0]

    async def arerank(
        self, query: str, hits: list[Hit], top_k: int | None = None, subqueries: list[str] | None = None
    ) -> list[Hit]:
        # the LLM work inside already runs concurrently (chat_many); a thread keeps the loop free
        return await asyncio.to_thread(self.rerank, query, hits, top_k, subqueries)

    def rerank_with_trace(
        self, query: str, hits: list[Hit], top_k: int | None = None, subqueries: list[str] | None = None
    ) -> tuple[list[Hit], dict[str, Any]]:
        query = validate_query(query)
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise RerankError(f"top_k must be a positive integer or None, got {top_k!r}")
        subs = [s.strip() for s in (subqueries or []) if isinstance(s, str) and s.strip()]
        hits = list(hits)
        rec = CallRecorder()
        t0 = time.perf_counter()
        order = self._score(query, hits, top_k, subs, rec) if hits else []
        order = _complete_order(order, len(hits))
        kept = order if top_k is None else order[:top_k]
        out = [
            replace(
                hits[s.index],
                score=float(s.score),
                rank=i + 1,
                retriever=self.name,
                rationale=s.rationale if s.rationale else None,
                metadata={
                    **hits[s.index].metadata,
                    "retrieval_score": hits[s.index].score,
                    "retrieval_rank": hits[s.index].rank or s.index + 1,
                },
            )
            for i, s in enumerate(kept)
        ]
        u = rec.usage
        trace = {
            "reranker": self.name,
            "options": self.options(),
            "n_in": len(hits),
            "n_out": len(out),
            "top_k": top_k,
            # the keys rerank traces have always had (Usage.from_dict reads them back)
            "llm_calls": u.calls,
            "cached_calls": u.cached_calls,
            "cached_tokens": u.cached_tokens,
            "cache_hits": u.cached_calls,
            "failed_calls": u.failures,
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "llm_seconds": round(u.seconds, 3),
            "seconds": round(time.perf_counter() - t0, 3),
            "parse": dict(rec.parse),
            "fallbacks": dict(rec.fallbacks),
            "errors": list(rec.errors),
            "order": [h.id for h in out],
            "raw": rec.raw,
            **rec.extra,
        }
        self.last_trace = trace
        return out, trace

    def as_tool_spec(self) -> dict[str, Any]:
        """A tool description (OpenAI function style) so an agent can call this reranker."""
        return {
            "name": f"rerank_{re.sub(r'[^a-z0-9]+', '_', self.name.lower())}",
            "description": self.description,
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "The question to rank the passages against."},
                    "hit_ids": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Ids of already retrieved passages to rerank (default: all current evidence).",
                    },
                    "top_k": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "How many passages to keep (default: all).",
                    },
                    "subqueries": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Sub-questions of a multi-hop question (used by the embedding reranker).",
                    },
                },
                "required": ["query"],
                "additionalProperties": False,
            },
        }

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


def _complete_order(order: list[Scored], n: int) -> list[Scored]:
    """Guard against a method bug: drop duplicates / out-of-range, append any missing index."""
    seen: set[int] = set()
    out: list[Scored] = []
    for s in order:
        if 0 <= s.index < n and s.index not in seen:
            seen.add(s.index)
            out.append(s)
    floor = min((s.score for s in out), default=0.0)
    for i in range(n):
        if i not in seen:
            out.append(Scored(i, floor - 1.0))
    return out


_WS = re.compile(r"\s+")


def doc_text(hit: Hit, max_words: int | None) -> str:
    """The text an LLM sees for a hit: title + text on one line, cut to ``max_words`` words.

    One line per document keeps the ``[i] text`` layout unambiguous; small models lose the
    thread on long prompts, so documents are truncated (the title is kept, it often carries
    the entity a multi-hop question needs)."""
    text = _WS.sub(" ", hit.text or "").strip()
    title = _WS.sub(" ", hit.title or "").strip()
    if title and not text.lower().startswith(title.lower()):
        text = f"{title}: {text}"
    if max_words is not None and max_words > 0:
        words = text.split(" ")
        if len(words) > max_words:
            text = " ".join(words[:max_words]) + " ..."
    return text


def numbered(texts: Sequence[str]) -> str:
    """``[1] text`` lines, the layout every LLM prompt here uses."""
    return "\n".join(f"[{i + 1}] {t}" for i, t in enumerate(texts))


# Labels of the likelihood modes: each capital letter is one token, with or without a leading
# space, in SmolLM2's tokenizer (and the usual BPE vocabularies), so the first token of the
# reply names exactly one document; "10" would start like "1".
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def lettered(texts: Sequence[str], prefix: str = "Passage ") -> str:
    """``Passage A: text`` lines for the likelihood prompts (at most 26 documents)."""
    if len(texts) > len(LETTERS):
        raise RerankError(f"at most {len(LETTERS)} documents can be labelled by letters, got {len(texts)}")
    return "\n".join(f"{prefix}{LETTERS[i]}: {t}" for i, t in enumerate(texts))


def positional_scores(order: Sequence[int], rationales: dict[int, str] | None = None) -> list[Scored]:
    """Scores for methods that only produce an order: n, n-1, ..., 1."""
    n = len(order)
    rationales = rationales or {}
    return [Scored(idx, float(n - pos), rationales.get(idx)) for pos, idx in enumerate(order)]
