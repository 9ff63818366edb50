"""Every node and edge of the pipeline graph, in one place: read it like the diagram.

The input is a :class:`~hoprank.agent.state.TurnInput` (the question); ``start`` writes the
turn's fields, so a checkpointed thread keeps only its ``history`` from turn to turn.

start -> contextualize -> understand -> search x N (Send) -> fuse -> rerank -> chain -> assess
                                             ^                                   |
                                             +------ hop (bridge entities) <-----+ insufficient
                                                                                 | enough / budget
                                                                   generate -> [verify] -> finalize
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from hoprank.agent import nodes
from hoprank.agent.context import AgentContext
from hoprank.agent.state import AgentState, TurnInput


def fan_out(state: AgentState) -> list[Send] | Literal["generate"]:
    """One parallel search per pending query; nothing new to search -> answer now."""
    asked = set(state.get("asked") or [])
    todo = [q for q in state.get("pending") or [] if q not in asked]
    if not todo:
        return "generate"
    return [Send("search", {"query": q, "hop": state.get("hop", 0)}) for q in todo]


def after_assess(state: AgentState) -> Literal["hop", "generate"]:
    return "generate" if state.get("sufficient") else "hop"


def after_generate(state: AgentState, verify: bool) -> Literal["verify", "finalize"]:
    return "verify" if verify and state.get("citations") else "finalize"


def build_graph(verify: bool = False, checkpointer=None):
    g = StateGraph(AgentState, input_schema=TurnInput, context_schema=AgentContext)
    g.add_node("start", nodes.start)
    g.add_node("contextualize", nodes.contextualize)
    g.add_node("understand", nodes.understand_node)
    g.add_node("search", nodes.search)
    g.add_node("fuse", nodes.fuse)
    g.add_node("rerank", nodes.rerank)
    g.add_node("chain", nodes.chain)
    g.add_node("assess", nodes.assess)
    g.add_node("hop", nodes.hop)
    g.add_node("generate", nodes.generate)
    g.add_node("verify", nodes.verify)
    g.add_node("finalize", nodes.finalize)

    g.add_edge(START, "start")
    g.add_edge("start", "contextualize")
    g.add_edge("contextualize", "understand")
    g.add_conditional_edges("understand", fan_out, ["search", "generate"])
    g.add_edge("search", "fuse")
    g.add_edge("fuse", "rerank")
    g.add_edge("rerank", "chain")
    g.add_edge("chain", "assess")
    g.add_conditional_edges("assess", after_assess, ["hop", "generate"])
    g.add_conditional_edges("hop", fan_out, ["search", "generate"])
    g.add_conditional_edges("generate", lambda s: after_generate(s, verify), ["verify", "finalize"])
    g.add_edge("verify", "finalize")
    g.add_edge("finalize", END)
    return g.compile(checkpointer=checkpointer)
