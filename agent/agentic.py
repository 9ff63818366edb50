"""Agentic mode: the LLM chooses which tool to call next (search_bm25, search_dense,
search_qdrant, search_hybrid, rerank, answer), executed by LangGraph's ToolNode.

Budgets (agent.max_steps tool rounds, agent.max_tokens_budget) always end the loop with an
answer from the evidence gathered so far. A small model often calls no tool at all, so a
first turn without a tool call falls back to one hybrid search of the question.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import InjectedToolCallId, StructuredTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime
from langgraph.types import Command
from typing_extensions import TypedDict

from hoprank import prompts
from hoprank.agent import generate as gen
from hoprank.agent.context import AgentContext, hit_brief, step, usage_of
from hoprank.agent.state import count_or_reset, extend_or_reset
from hoprank.tools import safety
from hoprank.tools.ingest.index import Index
from hoprank.tools.retrieval.fusion import rrf
from hoprank.tools.types import Hit


def _keep_best(old: list[Hit] | None, new: list[Hit] | None) -> list[Hit]:
    """Evidence pool: RRF of everything retrieved so far; a reset marker empties it."""
    if not new:
        return old or []
    if isinstance(new[0], dict) and new[0].get("__reset__"):
        return []
    return rrf([old, new], k=60, top_k=50) if old else list(new)


class AgenticState(TypedDict, total=False):
    question: str
    messages: Annotated[list[BaseMessage], add_messages]
    evidence: Annotated[list[Hit], _keep_best]
    steps: Annotated[int, count_or_reset]
    tokens: Annotated[int, count_or_reset]
    ranked: list[Hit]
    answer: str
    citations: list
    status: str
    stop_reason: str | None
    trace: Annotated[list[dict[str, Any]], extend_or_reset]


def _format_hits(hits: list[Hit]) -> str:
    return "\n".join(f"- {h.title or h.id}: {h.text[:200]}" for h in hits) or "(no results)"


def make_tools(get_index: Callable[[], Index]) -> list[StructuredTool]:
    """The tools the LLM may call; each returns text for the model and hits for the state."""
    tools: list[StructuredTool] = []

    def search_tool(retriever_name: str, description: str) -> StructuredTool:
        def run(query: str, tool_call_id: Annotated[str, InjectedToolCallId], k: int = 5) -> Command:
            t0 = time.perf_counter()
            hits = get_index().retriever(retriever_name).search(query, max(1, min(int(k), 20)))
            return Command(
                update={
                    "evidence": hits,
                    "messages": [ToolMessage(_format_hits(hits), tool_call_id=tool_call_id)],
                    "trace": [
                        step(
                            "tool",
                            f"search_{retriever_name}: {query!r} -> {len(hits)} hits",
                            t0,
                            query=query,
                            hits=[hit_brief(h) for h in hits],
                        )
                    ],
                }
            )

        return StructuredTool.from_function(
            func=run, name=f"search_{retriever_name}".replace("-", "_"), description=description
        )

    tools.append(search_tool("hybrid", "Search the documents (keyword + semantic). Args: query (string)."))
    tools.append(search_tool("bm25", "Keyword search, best for exact names and numbers. Args: query (string)."))
    tools.append(search_tool("dense", "Semantic search, best for descriptions and paraphrases. Args: query (string)."))
    tools.append(search_tool("qdrant", "Vector search in Qdrant. Args: query (string)."))

    def answer(tool_call_id: Annotated[str, InjectedToolCallId]) -> Command:
        return Command(update={"messages": [ToolMessage("ok", tool_call_id=tool_call_id)]})

    tools.append(
        StructuredTool.from_function(
            func=answer, name="answer", description="Call when the search results contain what the question needs."
        )
    )
    return tools


def build_agentic_graph(ctx_tools: list[StructuredTool], checkpointer=None):
    tool_node = ToolNode(ctx_tools)
    tool_names = {t.name for t in ctx_tools}

    def agent(state: AgenticState, runtime: Runtime[AgentContext]) -> dict:
        t0 = time.perf_counter()
        ctx = runtime.context
        cfg = ctx.config.agent
        from hoprank.tools.llm.langchain_adapter import HoprankChatModel

        model = HoprankChatModel(llm=ctx.llm).bind_tools(ctx_tools)
        msgs = state.get("messages") or []
        if not msgs or not isinstance(msgs[0], SystemMessage):
            msgs = [SystemMessage(content=prompts.render("agentic.system")), HumanMessage(content=state["question"])]
            new_msgs: list[BaseMessage] = list(msgs)
        else:
            new_msgs = []
        ai: AIMessage = model.invoke(msgs)
        calls = [c for c in (ai.tool_calls or []) if c.get("name") in tool_names]
        tokens = int((ai.usage_metadata or {}).get("total_tokens", 0)) if getattr(ai, "usage_metadata", None) else 0
        fallback = None
        if not calls and not state.get("evidence"):
            # a small model that calls no tool: search the question itself, once
            fallback = "no tool call: searched the question with search_hybrid"
            calls = [
                {
                    "name": "search_hybrid",
                    "args": {"query": state["question"]},
                    "id": f"fallback-{uuid.uuid4().hex[:8]}",
                    "type": "tool_call",
                }
            ]
            ai = AIMessage(content=ai.content if isinstance(ai.content, str) else "", tool_calls=calls)
        elif calls != (ai.tool_calls or []):
            ai = AIMessage(content=ai.content if isinstance(ai.content, str) else "", tool_calls=calls)
        stop = None
        if (state.get("steps") or 0) + 1 >= cfg.max_steps:
            stop = f"step budget reached ({cfg.max_steps})"
        elif (state.get("tokens") or 0) + tokens >= cfg.max_tokens_budget:
            stop = f"token budget reached ({cfg.max_tokens_budget})"
        summary = ", ".join(f"{c['name']}({c.get('args', {})})" for c in calls) or "no tool call"
        return {
            "messages": new_msgs + [ai],
            "steps": 1,
            "tokens": tokens,
            "stop_reason": stop,
            "trace": [
                step(
                    "agent",
                    summary + (f"; {fallback}" if fallback else ""),
                    t0,
                    llm={
                        "calls": 1,
                        "prompt_tokens": int((ai.usage_metadata or {}).get("input_tokens", 0))
                        if getattr(ai, "usage_metadata", None)
                        else 0,
                        "completion_tokens": int((ai.usage_metadata or {}).get("output_tokens", 0))
                        if getattr(ai, "usage_metadata", None)
                        else 0,
                    },
                    raw=str(ai.content)[:500],
                )
            ],
        }

    def route(state: AgenticState) -> Literal["tools", "answer"]:
        last = (state.get("messages") or [None])[-1]
        calls = getattr(last, "tool_calls", None) or []
        if state.get("stop_reason") or not calls or any(c["name"] == "answer" for c in calls):
            return "answer"
        return "tools"

    def answer(state: AgenticState, runtime: Runtime[AgentContext]) -> dict:
        t0 = time.perf_counter()
        ctx = runtime.context
        pool = state.get("evidence") or []
        guard_mode = ctx.config.agent.injection_guard
        pool = safety.screen_hits(pool)[0] if safety.screens(guard_mode) else pool  # as in the pipeline's fuse node
        reranker = ctx.reranker
        ranked = (
            reranker.rerank(state["question"], pool[:20], top_k=ctx.config.agent.evidence_k)
            if reranker is not None and pool
            else pool
        )
        evidence = ranked[: ctx.config.agent.evidence_k]
        g = gen.generate(state["question"], evidence, ctx.llm, style=ctx.config.agent.answer_style)
        status = "partial" if g.status == "answered" and state.get("stop_reason") else g.status
        answer, status, guard = safety.guard_answer(
            g.answer, status, state["question"], g.citations, evidence, guard_mode
        )
        usage = usage_of(*g.responses)
        tokens = usage.tokens
        return {
            "answer": answer,
            "citations": g.citations,
            "status": status,
            "tokens": tokens,
            "steps": 1,
            "trace": [
                step(
                    "generate",
                    f"{status}; {len(g.citations)} citations",
                    t0,
                    llm=usage,
                    evidence=[hit_brief(h) for h in evidence],
                    raw=g.raw[:1000],
                    fallback=g.fallback,
                    **guard,
                )
            ],
            "ranked": evidence,
        }

    g = StateGraph(AgenticState, context_schema=AgentContext)
    g.add_node("agent", agent)
    g.add_node("tools", tool_node)
    g.add_node("answer", answer)
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route, ["tools", "answer"])
    g.add_edge("tools", "agent")
    g.add_edge("answer", END)
    return g.compile(checkpointer=checkpointer)
