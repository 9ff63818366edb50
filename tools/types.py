"""Stage records shared by every stage: document -> chunk -> hit -> citation -> answer.

Small frozen dataclasses, so a record handed from one stage to the next cannot be changed
behind the back of the stage that produced it; use ``dataclasses.replace`` to derive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
