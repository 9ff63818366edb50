"""Stage records shared by every stage: document -> chunk -> hit -> citation -> answer.

Small frozen dataclasses, so a record handed from one stage to the next cannot be changed
behind the back of the stage that produced it; use ``dataclasses.replace`` to derive.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Document:
    """One source document before chunking (a file, a JSON record, a dataset paragraph)."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: the unit that is embedded, retrieved and cited."""

    id: str
    doc_id: str
    text: str
    title: str = ""
    source: str = ""
    start: int = 0  # character offset of the chunk inside the document text
    end: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chunk:
        return cls(**d)


@dataclass(frozen=True)
class Hit:
    """A retrieved (and possibly reranked) chunk with its score.

    ``rank`` is 1-based in the list that produced it; ``retriever`` names the tool (or the
    reranker) that assigned ``score``; ``rationale`` holds a reranker's reasoning text.
    """

    id: str
    score: float
    text: str
    title: str = ""
    doc_id: str = ""
    rank: int = 0
    retriever: str = ""
    rationale: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_chunk(cls, chunk: Chunk, score: float, rank: int, retriever: str) -> Hit:
        meta = dict(chunk.metadata)
        meta.setdefault("source", chunk.source)
        meta.setdefault("start", chunk.start)
        meta.setdefault("end", chunk.end)
        return cls(
            id=chunk.id,
            score=float(score),
            text=chunk.text,
            title=chunk.title,
            doc_id=chunk.doc_id,
            rank=rank,
            retriever=retriever,
            metadata=meta,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hit:
        return cls(**d)


@dataclass(frozen=True)
class Citation:
    """A marker ``[n]`` in an answer and the chunk it points to (retrieved in this run)."""

    marker: int
    chunk_id: str
    title: str = ""
    text: str = ""
    score: float = 0.0
    supported: bool | None = None  # set by the verify step when it runs


def rerank_order(hits: list[Hit], retriever: str) -> list[Hit]:
    """Renumber ranks 1..n after a reorder, keeping scores; used by fusion and rerankers."""
    from dataclasses import replace

    return [replace(h, rank=i + 1, retriever=retriever or h.retriever) for i, h in enumerate(hits)]


@dataclass(frozen=True)
class Answer:
    """What the agent returns: the answer text, its citations, the evidence and the trace.

    ``status`` is one of ``answered``, ``not_found`` (the documents do not say),
    ``partial`` (a budget stopped the graph; best effort), ``failed`` (an error; ``error``
    says which). Every question ends in one of these, never in an exception mid-eval.
    """

    question: str
    answer: str
    citations: list[Citation] = field(default_factory=list)
    evidence: list[Hit] = field(default_factory=list)
    status: str = "answered"
    error: str | None = None
    thread_id: str | None = None
    trace: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# the spellings each Usage field has had in saved traces, rerank traces and eval rows, first wins
# ("llm_seconds" before "seconds": a rerank trace has both, and there "seconds" is wall time)
_USAGE_KEYS: dict[str, tuple[str, ...]] = {
    "calls": ("calls", "llm_calls"),
    "prompt_tokens": ("prompt_tokens",),
    "completion_tokens": ("completion_tokens",),
    "cached_calls": ("cached_calls", "cache_hits"),
    "cached_tokens": ("cached_tokens",),
    "seconds": ("llm_seconds", "seconds"),
    "retries": ("retries",),
    "failures": ("failures", "failed_calls"),
}


def _number(d: dict[str, Any], keys: tuple[str, ...]) -> float:
    """The first finite number under one of ``keys`` (a saved row may hold null or a string)."""
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return 0.0


@dataclass(frozen=True)
class Usage:
    """LLM accounting: the one record every layer counts in (a node's calls, a rerank call,
    a client's running totals, an answer, an eval row).

    Why one frozen record: usage used to be counted six ways (dicts with different key
    spellings, a mutable class, a recorder with its own fields), and every reader had to
    guess the spelling. Frozen, so a usage handed up cannot change behind its reader; sums
    are ``sum(usages, Usage())``.

    ``calls`` and the token counts include replies replayed from the cache (a budget or an
    eval's cost must not depend on the cache's state); ``cached_calls`` / ``cached_tokens``
    say how much of it the cache replayed (``paid_calls = calls - cached_calls``).
    ``seconds`` is the latency of paid calls only; ``retries`` are transient errors retried,
    ``failures`` calls that failed for good."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_calls: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    retries: int = 0
    failures: int = 0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __sub__(self, other: Usage) -> Usage:
        """What was spent between two snapshots of a running total: ``after - before``."""
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def __radd__(self, other: Any) -> Usage:
        """So plain ``sum(usages)`` (which starts from 0) works too."""
        if other == 0:
            return self
        return NotImplemented

    @property
    def paid_calls(self) -> int:
        """Calls that went to an endpoint (the rest were replayed from the cache)."""
        return self.calls - self.cached_calls

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens (cache replays included, like ``calls``)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def cache_hits(self) -> int:
        """The former name of ``cached_calls`` (old readers and saved rows use it)."""
        return self.cached_calls

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, under the field names (``seconds`` rounded to milliseconds)."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["seconds"] = round(self.seconds, 3)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Usage:
        """Read any spelling usage was saved in (``llm_calls``, ``cache_hits``,
        ``llm_seconds``, ``failed_calls``); missing or non-numeric values count as 0, so a
        row written by an older version still sums."""
        d = d if isinstance(d, dict) else {}
        values = {name: _number(d, keys) for name, keys in _USAGE_KEYS.items()}
        return cls(**{k: (v if k == "seconds" else int(v)) for k, v in values.items()})


@dataclass(frozen=True)
class Step:
    """One entry of an answer's trace: what a graph node did, how long it took, what its LLM
    calls cost, and (``fallback``) which named fallback it took when an LLM decision could
    not be used as is.

    Why a type: every node built its trace dict by hand and every reader (API, server,
    evals, benchmarks) dug into it by key; one record with :meth:`to_dict` keeps the JSON
    shape the readers and saved traces use: ``{"node", "summary", "elapsed_s", "tokens",
    "llm", "data"}``, node-specific fields (``detail``) under ``data`` and the fallback in
    ``data["fallback"]``."""

    node: str
    summary: str
    seconds: float = 0.0
    usage: Usage | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    fallback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.detail)
        if self.fallback is not None:
            data["fallback"] = self.fallback
        return {
            "node": self.node,
            "summary": self.summary,
            "elapsed_s": round(self.seconds, 4),
            "tokens": self.usage.tokens if self.usage is not None else 0,
            "llm": self.usage.to_dict() if self.usage is not None else {},
            "data": data,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        """The inverse of :meth:`to_dict` (an empty ``llm`` is no usage)."""
        data = dict(d.get("data") or {})
        fallback = data.pop("fallback", None)
        llm = d.get("llm")
        return cls(
            node=str(d.get("node", "")),
            summary=str(d.get("summary", "")),
            seconds=float(d.get("elapsed_s", 0.0) or 0.0),
            usage=Usage.from_dict(llm) if llm else None,
            detail=data,
            fallback=None if fallback is None else str(fallback),
        )
