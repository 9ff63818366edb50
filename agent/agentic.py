"""Agentic mode: the LLM chooses which tool to call next, executed by LangGraph's ToolNode:
``search_hybrid`` / ``search_bm25`` / ``search_dense`` / ``search_qdrant``, ``rerank_<name>``
and ``answer``.

Rerank tools: every registered reranker (``hoprank.tools.rerank.factory``) has a tool built
from its ``as_tool_spec()``; the model is offered the configured ``rerank.method`` (whatever
it costs: the user chose it) plus every reranker that needs no LLM and builds from the
config (today ``embedding``; ``cross-encoder`` needs a model path and ``none`` reorders
nothing, so neither is offered unless configured). Why not every LLM reranker: each call
costs several LLM calls over up to 20 passages, and a model trying them all would spend the
token budget on reranking. A rerank tool reorders the evidence gathered so far with
:func:`hoprank.agent.nodes.rerank_step`, the pipeline's rerank step (``rerank.options.depth``,
``Config.candidates().keep``, the same trace record, its tokens counted against the budget),
and returns the new order with the reranker's rationales.

Answer: the answer node reads the model's last rerank when it covers all the evidence;
otherwise (no rerank, or a search after it) the configured reranker runs first, as in the
pipeline. Then :func:`hoprank.agent.nodes.answer_step`, the pipeline's answer step.

Budgets (``agent.max_steps`` agent turns, ``agent.max_tokens_budget`` for the agent's,
the rerankers' and the answer's tokens) always end the loop with an answer from the evidence
gathered so far. A small model often calls no tool at all, so a first turn without a tool
call falls back to one hybrid search of the question.
"""

from __future__ import annotations

import operator
import time
import uuid
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, ToolRuntime
from langgraph.prebuilt.tool_node import ToolInvocationError
from langgraph.runtime import Runtime
from langgraph.types import Command
from typing_extensions import TypedDict

from hoprank import prompts
from hoprank.agent import nodes
from hoprank.agent.config import POOL_SIZE, make_reranker_from_config
from hoprank.agent.context import AgentContext, hit_brief, step
from hoprank.agent.state import TURN_FIELDS, TurnInput, turn_start
from hoprank.tools import safety
from hoprank.tools.errors import HoprankError
from hoprank.tools.rerank.base import Reranker
from hoprank.tools.rerank.factory import RERANKERS
from hoprank.tools.retrieval.factory import RETRIEVERS
from hoprank.tools.retrieval.fusion import rrf
from hoprank.tools.types import Citation, Hit, Usage


def _keep_best(old: list[Hit], new: list[Hit]) -> list[Hit]:
    """Evidence: the RRF of everything retrieved this turn, the best ``Config.candidates().pool``."""
    if not new:
        return old
    return rrf([old, new], k=60, top_k=POOL_SIZE) if old else list(new)


def _latest(old: list[Hit], new: list[Hit]) -> list[Hit]:
    """The last rerank's order (two rerank calls in one round may both write it)."""
    return new


class AgenticState(TypedDict, total=False):
    question: str
    messages: Annotated[list[BaseMessage], add_messages]
    evidence: Annotated[list[Hit], _keep_best]
    ranked: Annotated[list[Hit], _latest]
    steps: Annotated[int, operator.add]  # agent turns
    tokens: Annotated[int, operator.add]
    answer: str
    citations: list[Citation]
    status: str
    stop_reason: str | None
    trace: Annotated[list[dict[str, Any]], operator.add]  # Step.to_dict() entries


def start(state: TurnInput) -> dict:
    """Start a turn: the conversation with the model, the evidence and every per-turn field
    begin empty (agent/state.py)."""
    return turn_start(AgenticState, {**TURN_FIELDS, "messages": [], "evidence": []})


def _format_hits(hits: list[Hit]) -> str:
    return "\n".join(f"- [{h.id}] {h.title or h.id}: {h.text[:200]}" for h in hits) or "(no results)"


def _format_order(name: str, ranked: list[Hit], keep: int) -> str:
    """A rerank tool's answer to the model: the new order, best first, with rationales."""
    lines = [f"Evidence reranked by {name}, best first:"]
    for n, h in enumerate(ranked[:keep], 1):
        why = f" - {' '.join(h.rationale.split())[:200]}" if h.rationale else ""
        lines.append(f"{n}. [{h.id}] {h.title or h.id} (score {h.score:.3f}){why}")
    return "\n".join(lines) if ranked else "(no evidence to rerank yet: search first)"


def _search_tool(retriever: str, description: str) -> StructuredTool:
    def run(query: str, runtime: ToolRuntime[AgentContext], k: int | None = None) -> Command:
        t0 = time.perf_counter()
        ctx = runtime.context
        n = ctx.config.candidates()
        hits = ctx.index.retriever(retriever).search(
            query, n.tool_default if k is None else max(1, min(k, n.per_query))
        )
        screened: list[dict] = []
        if safety.screens(ctx.config.agent.injection_guard):  # as the pipeline's fuse node, before the model reads
            hits, screened = safety.screen_hits(hits)
        summary = f"search_{retriever}: {query!r} -> {len(hits)} hits"
        return Command(
            update={
                "evidence": hits,
                "messages": [ToolMessage(_format_hits(hits), tool_call_id=runtime.tool_call_id)],
                "trace": [step("tool", summary, t0, query=query, hits=[hit_brief(h) for h in hits], screened=screened)],
            }
        )

    return StructuredTool.from_function(func=run, name=f"search_{retriever}", description=description)


def _reranker(ctx: AgentContext, name: str) -> Reranker | None:
    """The configured reranker (the agent's, built once) or another one built from the config."""
    if name == ctx.config.rerank.method:
        return ctx.reranker
    return make_reranker_from_config(ctx.config, ctx.index, method=name, llm=ctx.llm_factory)


def offered_rerankers(ctx: AgentContext) -> list[str]:
    """The rerankers the model may call (the rule in the module docstring)."""
    names = [ctx.config.rerank.method] if ctx.reranker is not None else []
    for name, cls in RERANKERS.items():
        if name in names or cls.needs_llm:
            continue
        try:
            built = _reranker(ctx, name)
        except HoprankError:  # e.g. a cross-encoder without a model
            continue
        if built is not None:
            names.append(name)
    return names


def _positive_int(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


def _rerank_tool(name: str, cls: type[Reranker]) -> StructuredTool:
    # as_tool_spec reads only the class's name and description: no reranker is built here
    spec = Reranker.as_tool_spec(cls)  # type: ignore[arg-type]

    def run(runtime: ToolRuntime[AgentContext], **args: Any) -> Command:
        ctx, state = runtime.context, runtime.state
        evidence: list[Hit] = state.get("evidence") or []
        chosen = {str(i) for i in args.get("hit_ids") or []}
        pool = [h for h in evidence if h.id in chosen] or evidence  # ids not in the evidence: all of it
        subqueries = [s for s in args.get("subqueries") or [] if isinstance(s, str)] or None
        query = str(args.get("query") or "").strip() or state["question"]
        keep = _positive_int(args.get("top_k")) or ctx.config.candidates().keep
        update = nodes.rerank_step(ctx, query, pool, _reranker(ctx, name), subqueries, keep=keep)
        ranked = update["ranked"] + [h for h in evidence if h not in pool]  # passages not chosen stay below
        message = ToolMessage(_format_order(name, ranked, keep), tool_call_id=runtime.tool_call_id)
        return Command(update={**update, "ranked": ranked, "messages": [message]})

    return StructuredTool.from_function(
        func=run,
        name=spec["name"],
        description=spec["description"],
        args_schema=spec["parameters"],
        metadata={"reranker": name},
    )


def _answer_tool() -> StructuredTool:
    def answer(runtime: ToolRuntime[AgentContext]) -> Command:
        return Command(update={"messages": [ToolMessage("ok", tool_call_id=runtime.tool_call_id)]})

    return StructuredTool.from_function(
        func=answer, name="answer", description="Call when the search results contain what the question needs."
    )


def make_tools() -> list[StructuredTool]:
    """Every tool the graph can run; which of them the model is offered is decided per turn
    from the config (:func:`offered_rerankers`)."""
    return [
        *(_search_tool(s.name, f"{s.agent_tool} Args: query (string).") for s in RETRIEVERS.values() if s.agent_tool),
        *(_rerank_tool(name, cls) for name, cls in RERANKERS.items()),
        _answer_tool(),
    ]


def _usage(ai: AIMessage) -> Usage:
    """The agent call's usage, from the LangChain message's ``usage_metadata`` (HoprankChatModel
    fills it from the hoprank response)."""
    meta = ai.usage_metadata or {}
    prompt, completion = int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))
    cached = bool((ai.response_metadata or {}).get("cached"))
    return Usage(1, prompt, completion, int(cached), (prompt + completion) if cached else 0)


def build_agentic_graph(tools: list[BaseTool] | None = None, checkpointer: Any = None) -> Any:
    tools = make_tools() if tools is None else tools

    def offered(ctx: AgentContext) -> list[BaseTool]:
        """The tools bound for the model this turn: all but the rerankers the config does not offer."""
        rerankers = set(offered_rerankers(ctx))
        return [t for t in tools if (t.metadata or {}).get("reranker") in rerankers | {None}]

    def agent(state: AgenticState, runtime: Runtime[AgentContext]) -> dict:
        t0 = time.perf_counter()
        ctx = runtime.context
        cfg = ctx.config.agent
        from hoprank.tools.llm.langchain_adapter import HoprankChatModel

        bound = offered(ctx)
        model = HoprankChatModel(llm=ctx.llm).bind_tools(bound)
        new_msgs: list[BaseMessage] = []
        if not state.get("messages"):
            new_msgs = [
                SystemMessage(content=prompts.render("agentic.system")),
                HumanMessage(content=state["question"]),
            ]
        ai: AIMessage = model.invoke((state.get("messages") or []) + new_msgs)
        names = {t.name for t in bound}
        calls = [c for c in (ai.tool_calls or []) if c.get("name") in names]
        usage = _usage(ai)
        fallback = None
        if not calls and not state.get("evidence"):
            # a small model that calls no tool: search the question itself, once
            fallback = "no tool call: searched the question with search_hybrid"
            call_id = f"fallback-{uuid.uuid4().hex[:8]}"
            calls = [
                {"name": "search_hybrid", "args": {"query": state["question"]}, "id": call_id, "type": "tool_call"}
            ]
        if calls != (ai.tool_calls or []):
            ai = AIMessage(content=ai.content if isinstance(ai.content, str) else "", tool_calls=calls)
        stop = None
        if (state.get("steps") or 0) + 1 >= cfg.max_steps:
            stop = f"step budget reached ({cfg.max_steps})"
        elif (state.get("tokens") or 0) + usage.tokens >= cfg.max_tokens_budget:
            stop = f"token budget reached ({cfg.max_tokens_budget})"
        summary = ", ".join(f"{c['name']}({c.get('args', {})})" for c in calls) or "no tool call"
        summary += f"; {fallback}" if fallback else ""
        return {
            "messages": new_msgs + [ai],
            "steps": 1,
            "tokens": usage.tokens,
            "stop_reason": stop,
            "trace": [step("agent", summary, t0, llm=usage, fallback=fallback, raw=str(ai.content)[:500])],
        }

    def route(state: AgenticState) -> Literal["tools", "answer"]:
        last = (state.get("messages") or [None])[-1]
        calls = getattr(last, "tool_calls", None) or []
        if state.get("stop_reason") or not calls or any(c["name"] == "answer" for c in calls):
            return "answer"
        return "tools"

    def answer(state: AgenticState, runtime: Runtime[AgentContext]) -> dict:
        ctx = runtime.context
        evidence, ranked = state.get("evidence") or [], state.get("ranked") or []
        reranked: dict[str, Any] = {}
        if not {h.id for h in evidence} <= {h.id for h in ranked}:  # no rerank since the last search
            reranked = nodes.rerank_step(ctx, state["question"], evidence, ctx.reranker)
            ranked = reranked["ranked"]
        out = nodes.answer_step(ctx, state["question"], ranked, state.get("stop_reason"))
        return {
            **out,
            "ranked": ranked,
            "steps": 1,
            "tokens": reranked.get("tokens", 0) + out["tokens"],
            "trace": reranked.get("trace", []) + out["trace"],
        }

    g = StateGraph(AgenticState, input_schema=TurnInput, context_schema=AgentContext)
    g.add_node("start", start)
    g.add_node("agent", agent)
    # bad arguments and a tool's own error (a reranker that cannot run) go back to the model as the tool's answer
    g.add_node("tools", ToolNode(tools, handle_tool_errors=(ToolInvocationError, HoprankError)))
    g.add_node("answer", answer)
    g.add_edge(START, "start")
    g.add_edge("start", "agent")
    g.add_conditional_edges("agent", route, ["tools", "answer"])
    g.add_edge("tools", "agent")
    g.add_edge("answer", END)
    return g.compile(checkpointer=checkpointer)
