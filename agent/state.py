"""The graphs' typed state: what a turn takes in (:class:`TurnInput`), what it carries
(:class:`AgentState`, and the agentic mode's ``AgenticState``), and how a turn starts.

Why an input schema and one start node: a checkpointer keeps a thread's state across turns,
and fields with an appending reducer (the trace, the queries asked, the step and token
counters) would carry one turn into the next. The caller passes only the question
(``{"question": ...}``; anything else in the input is ignored by the input schema), and the
graph's first node, ``start``, writes every per-turn field (:func:`turn_start`). ``history``
is the one field it does not touch, so it persists across the turns of a thread and nothing
else does.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, get_origin, get_type_hints

from langgraph.types import Overwrite
from typing_extensions import TypedDict  # pydantic (LangGraph's input JSON schema) needs it on Python 3.11

from hoprank.tools.types import Citation, Hit


class TurnInput(TypedDict):
    """The graphs' input schema: one question per turn."""

    question: str


def merge(old: dict, new: dict) -> dict:
    """Merge dicts (parallel ``Send`` branches each add their query's hits)."""
    return {**old, **new}


class AgentState(TypedDict, total=False):
    # the turn's input
    question: str  # as asked
    standalone: str  # rewritten with the chat history (equals question on a first turn)
    history: Annotated[list[dict[str, str]], operator.add]  # persists across turns
    # understand
    qtype: str  # single-hop | bridge | comparison | aggregation
    subqueries: list[str]
    decomposer: str | None  # llm | rules | none
    # retrieval rounds
    pending: list[str]  # queries the next retrieve round runs
    asked: Annotated[list[str], operator.add]  # every query run so far (no repeats)
    hits_by_query: Annotated[dict[str, list[Hit]], merge]
    pool: list[Hit]  # fused candidates of all rounds
    ranked: list[Hit]  # after reranking
    hop: int
    steps: Annotated[int, operator.add]  # nodes run this turn (parallel searches included)
    tokens: Annotated[int, operator.add]  # LLM tokens spent this turn
    sufficient: bool
    stop_reason: str | None
    # output
    answer: str
    citations: list[Citation]
    status: str
    trace: Annotated[list[dict[str, Any]], operator.add]  # Step.to_dict() entries


class SearchTask(TypedDict):
    """The payload of one ``Send`` to the search node (one sub-query)."""

    query: str
    hop: int


# the per-turn fields both graphs have, as a turn starts
TURN_FIELDS: dict[str, Any] = {
    "ranked": [],
    "steps": 0,
    "tokens": 0,
    "stop_reason": None,
    "answer": "",
    "citations": [],
    "status": "answered",
    "trace": [],
}


def turn_start(schema: type, values: dict[str, Any]) -> dict[str, Any]:
    """The start node's update: ``values`` for the turn's fields, each field that has a
    reducer wrapped in LangGraph's ``Overwrite`` so the value replaces the previous turn's
    instead of being appended or added to it."""
    hints = get_type_hints(schema, include_extras=True)
    return {k: Overwrite(v) if get_origin(hints[k]) is Annotated else v for k, v in values.items()}
