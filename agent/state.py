"""The graph's typed state and its reducers.

Per-turn fields are reset at the start of every question (a checkpointer keeps state across
turns of a thread, and a reducer that only appends would carry one turn's trace into the
next); ``history`` is the one field that persists, so follow-ups can be rewritten.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from hoprank.tools.types import Citation, Hit

RESET: list[Any] = [{"__reset__": True}]


def extend_or_reset(old: list | None, new: list | None) -> list:
    """Append, except that the ``RESET`` marker empties the list."""
    if new == RESET:
        return []
    return (old or []) + (new or [])


def merge_or_reset(old: dict | None, new: dict | None) -> dict:
    """Merge dicts (parallel ``Send`` branches each add their query's hits)."""
    if new == {"__reset__": True}:
        return {}
    out = dict(old or {})
    out.update(new or {})
    return out


def count_or_reset(old: int | None, new: int | None) -> int:
    """Add to a counter; a negative value resets it (the start of a new turn)."""
    if new is None:
        return old or 0
    if new < 0:
        return 0
    return (old or 0) + new


class AgentState(TypedDict, total=False):
    # the turn's input
    question: str  # as asked
    standalone: str  # rewritten with the chat history (equals question on a first turn)
    history: Annotated[list[dict[str, str]], extend_or_reset]  # persists across turns
    # understand
    qtype: str  # single-hop | bridge | comparison | aggregation
    subqueries: list[str]
    decomposer: str  # llm | rules | none
    # retrieval rounds
    pending: list[str]  # queries the next retrieve round runs
    asked: Annotated[list[str], extend_or_reset]  # every query run so far (no repeats)
    hits_by_query: Annotated[dict[str, list[Hit]], merge_or_reset]
    pool: list[Hit]  # fused candidates of all rounds
    ranked: list[Hit]  # after reranking
    hop: int
    steps: Annotated[int, count_or_reset]  # nodes run this turn (parallel searches included)
    tokens: Annotated[int, count_or_reset]  # LLM tokens spent this turn
    sufficient: bool
    stop_reason: str | None
    # output
    answer: str
    citations: list[Citation]
    status: str
    trace: Annotated[list[dict[str, Any]], extend_or_reset]


class SearchTask(TypedDict):
    """The payload of one ``Send`` to the search node (one sub-query)."""

    query: str
    hop: int
