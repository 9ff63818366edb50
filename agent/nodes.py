"""The graph's nodes: each does one thing and returns a partial state update plus one
trace entry (a :class:`~hoprank.tools.types.Step`, kept in the state as its ``to_dict()``:
the checkpointer restores only the record types it is allowed to, and the API, the server
and saved traces read that dict shape). Routing decisions live in ``graph.py``.

:func:`rerank_step` and :func:`answer_step` are the one rerank step and the one answer step
of both graphs: the pipeline's ``rerank`` and ``generate`` nodes call them, and so do the
agentic mode's ``rerank_<name>`` tools and its ``answer`` node (agent/agentic.py), so both
modes read the same settings, spend within the same budgets and write the same trace records."""

from __future__ import annotations

import re
import time
from typing import Any

from langgraph.runtime import Runtime

from hoprank import prompts
from hoprank.agent import generate as gen
from hoprank.agent.assess import assess as assess_evidence
from hoprank.agent.chain import select_chains
from hoprank.agent.context import AgentContext, hit_brief, step, usage_of
from hoprank.agent.hop import hop_queries
from hoprank.agent.state import TURN_FIELDS, AgentState, SearchTask, TurnInput, turn_start
from hoprank.agent.understand import content_terms, entities, understand
from hoprank.tools import safety
from hoprank.tools.errors import HoprankError
from hoprank.tools.rerank.base import Reranker
from hoprank.tools.retrieval.fusion import rrf
from hoprank.tools.types import Hit, Usage

_FOLLOW_UP = re.compile(
    r"\b(he|she|it|they|him|her|his|hers|its|their|them|this|that|these|those|there|then"
    r"|the same|what about|how about)\b",
    re.I,
)


def _tokens(*responses: Any) -> int:
    return usage_of(*responses).tokens


_PERSONAL = re.compile(r"\b(he|she|him|her|his|hers)\b", re.I)


def referents(question: str, turns: list[dict[str, str]]) -> list[str]:
    """Names a follow-up may refer to, most likely first.

    The topic of a conversation is what the user asked about, so names from earlier *user*
    turns (latest first) come before names the assistant's answers introduced ("born in
    Saltmere [1]" must not make "she" Saltmere), except that after a who-question the person
    the answer named comes first; for he/she/him/her a multi-word name comes first."""
    user = [e for m in reversed(turns) if m["role"] == "user" for e in entities(m["content"])]
    other = [e for m in reversed(turns) if m["role"] != "user" for e in entities(m["content"])]
    first = []
    last_user = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
    last_answer = next((m["content"] for m in reversed(turns) if m["role"] != "user"), "")
    if _PERSONAL.search(question) and re.match(r"\s*(who|whom|whose)\b", last_user, re.I):
        # "Who founded X?" -> "Y founded X." -> "where was she born?": she is the answer's person
        first = [e for e in entities(last_answer) if e.lower() not in last_user.lower() and len(e.split()) >= 2]
    found = [e for e in dict.fromkeys(first + user + other) if e.lower() not in question.lower()]
    if _PERSONAL.search(question):
        found.sort(key=lambda e: len(e.split()) < 2)  # stable: keeps the order otherwise
    return found


def acceptable_rewrite(candidate: str, question: str, names_: list[str]) -> bool:
    """An LLM rewrite is used only when it is a question that keeps the follow-up's words,
    names someone from the history and carries no citation markers or statements."""
    c = candidate.strip()
    if not c or len(c) > 4 * len(question) + 80 or not c.endswith("?") or re.search(r"\[\d+\]", c):
        return False
    if c.count(".") > 1 or "\n" in c:
        return False
    keeps_words = set(content_terms(question)) <= set(content_terms(c)) | {"she", "he"}
    return keeps_words and any(e.lower() in c.lower() for e in names_)


def start(state: TurnInput) -> dict:
    """Start a turn: every per-turn field gets its first value (agent/state.py), so nothing
    but ``history`` carries over from the thread's previous turn. Not a step of the trace."""
    first = {
        "standalone": state["question"],
        "qtype": "single-hop",
        "subqueries": [],
        "decomposer": None,
        "pending": [],
        "asked": [],
        "hits_by_query": {},
        "pool": [],
        "hop": 0,
        "sufficient": False,
    }
    return turn_start(AgentState, {**TURN_FIELDS, **first})


def contextualize(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Rewrite a follow-up ("where was she born?") into a standalone question."""
    t0 = time.perf_counter()
    q = state["question"]
    history = state.get("history") or []
    if not history or not _FOLLOW_UP.search(q):
        return {
            "standalone": q,
            "steps": 1,
            "trace": [step("contextualize", "first turn or standalone question", t0, standalone=q)],
        }
    turns = history[-6:]
    hist_text = "\n".join(f"{m['role']}: {m['content'][:300]}" for m in turns)
    names_ = referents(q, turns)
    rewritten, resp, how = None, None, "llm"
    try:
        msgs = prompts.chat("contextualize", history=hist_text, question=q)
        resp = runtime.context.llm.chat(msgs, max_tokens=60, temperature=0.0)
        cand = (resp.text or "").strip().splitlines()[0].strip().strip('"') if (resp.text or "").strip() else ""
        if acceptable_rewrite(cand, q, names_):
            rewritten = cand
    except HoprankError:
        resp = None
    if rewritten is None:
        how = "rules"
        rewritten = f"{q.rstrip('?')} ({names_[0]})?" if names_ else q
    return {
        "standalone": rewritten,
        "steps": 1,
        "tokens": _tokens(resp),
        "trace": [
            step(
                "contextualize",
                f"follow-up rewritten ({how}): {rewritten}",
                t0,
                llm=usage_of(resp),
                standalone=rewritten,
                method=how,
            )
        ],
    }


def understand_node(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    t0 = time.perf_counter()
    q = state["standalone"]
    cfg = runtime.context.config.agent
    mode = cfg.decompose
    if mode == "auto" and runtime.context.config.llm.backend == "llamacpp":
        # the embedded 135M model's decompositions fail validation on 17 of 20 questions and
        # cost a call each (benchmarks/results/agent_quality.md): auto = rules for it
        mode = "rules"
    llm = runtime.context.llm if mode in ("auto", "llm") else None
    u, resp = understand(q, llm, mode)
    pending = list(dict.fromkeys([q] + u.subquestions))
    summary = f"{u.qtype}; {len(u.subquestions)} sub-questions ({u.source})" + (
        f"; LLM output rejected: {u.rejected}" if u.rejected else ""
    )
    return {
        "qtype": u.qtype,
        "subqueries": u.subquestions,
        "decomposer": u.source,
        "pending": pending,
        "steps": 1,
        "tokens": _tokens(resp),
        "trace": [
            step(
                "understand",
                summary,
                t0,
                llm=usage_of(resp),
                qtype=u.qtype,
                subquestions=u.subquestions,
                source=u.source,
                rejected=u.rejected,
                raw=(u.raw or "")[:500] or None,
            )
        ],
    }


def search(task: SearchTask, runtime: Runtime[AgentContext]) -> dict:
    """One retrieval for one query (run in parallel, one ``Send`` per query)."""
    t0 = time.perf_counter()
    ctx = runtime.context
    retriever = ctx.retriever()
    hits = retriever.search(task["query"], ctx.config.candidates().per_query)
    return {
        "hits_by_query": {task["query"]: hits},
        "asked": [task["query"]],
        "steps": 1,
        "trace": [
            step(
                "search",
                f"{retriever.name}: {task['query']!r} -> {len(hits)} hits",
                t0,
                query=task["query"],
                hop=task["hop"],
                retriever=retriever.name,
                hits=[hit_brief(h) for h in hits[:10]],
            )
        ],
    }


def fuse(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """RRF over every query run so far (all hops): the candidate pool for reranking. The pool
    is screened for document-borne instructions here, before any LLM (reranker, generator) reads it."""
    t0 = time.perf_counter()
    runs = list((state.get("hits_by_query") or {}).values())
    pool = rrf(runs, k=60, top_k=runtime.context.config.candidates().pool) if runs else []
    screened: list[dict] = []
    if safety.screens(runtime.context.config.agent.injection_guard):
        pool, screened = safety.screen_hits(pool)
    note = f"; {len(screened)} span(s) screened" if screened else ""
    return {
        "pool": pool,
        "pending": [],
        "steps": 1,
        "trace": [
            step(
                "fuse",
                f"RRF of {len(runs)} result lists -> {len(pool)} candidates{note}",
                t0,
                pool=[hit_brief(h) for h in pool[:10]],
                screened=screened,
            )
        ],
    }


def rerank_step(
    ctx: AgentContext,
    question: str,
    pool: list[Hit],
    reranker: Reranker | None,
    subqueries: list[str] | None = None,
    keep: int | None = None,
) -> dict[str, Any]:
    """Rerank the head of ``pool`` (``Config.candidates().rerank_depth``) and keep the best
    ``keep`` (default ``candidates().keep``) in the reranker's order, the rest of the pool
    below in its given order (nothing is lost for a later hop). Returns the state update:
    ``ranked``, the ``tokens`` spent and one ``rerank`` trace step."""
    t0 = time.perf_counter()
    n = ctx.config.candidates()
    if reranker is None or not pool:
        return {"ranked": pool, "trace": [step("rerank", "no reranking", t0, method="none")]}
    keep = keep or n.keep
    # rerank_with_trace: the usage of *this* call, even when one agent serves many questions
    ranked, info = reranker.rerank_with_trace(question, pool[: n.rerank_depth], top_k=keep, subqueries=subqueries)
    seen = {h.id for h in ranked}
    ranked = ranked + [h for h in pool if h.id not in seen]
    info = dict(info or {})
    info.pop("raw", None)
    usage = Usage.from_dict(info)
    return {
        "ranked": ranked,
        "tokens": usage.tokens,
        "trace": [
            step(
                "rerank",
                f"{reranker.name}: {min(len(pool), n.rerank_depth)} candidates -> top {keep}",
                t0,
                llm=usage,
                method=reranker.name,
                ranked=[hit_brief(h) for h in ranked[:keep]],
                usage=info,
            )
        ],
    }


def rerank(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """The configured reranker over the fused pool (:func:`rerank_step`)."""
    ctx = runtime.context
    pool: list[Hit] = state.get("pool") or []
    update = rerank_step(ctx, state["standalone"], pool, ctx.reranker, state.get("subqueries") or None)
    return {**update, "steps": 1}


ROUND_STEPS = 8  # nodes one more hop round costs at most (hop, searches, fuse, rerank, assess)


def assess(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Decide: answer now, or hop again. Budgets are checked here, so the graph always ends
    by its own budgets and never by LangGraph's recursion limit."""
    t0 = time.perf_counter()
    cfg = runtime.context.config.agent
    hop_n = state.get("hop", 0)
    a = assess_evidence(
        state["standalone"],
        state.get("qtype", "single-hop"),
        state.get("ranked") or [],
        hop_n,
        runtime.context.config.candidates().evidence,
    )
    stop = None
    if not a.sufficient:
        if hop_n >= cfg.max_hops:
            stop = f"hop budget reached ({cfg.max_hops})" if cfg.max_hops else None
        elif (state.get("steps") or 0) + ROUND_STEPS + 3 > cfg.max_steps:
            stop = f"step budget reached ({cfg.max_steps})"
        elif (state.get("tokens") or 0) >= cfg.max_tokens_budget:
            stop = f"token budget reached ({cfg.max_tokens_budget})"
    go_hop = not a.sufficient and stop is None and (hop_n < cfg.max_hops)
    summary = (
        ("sufficient: " if a.sufficient else "insufficient: ")
        + a.reason
        + (f"; stop: {stop}" if stop else "")
        + ("; hop" if go_hop else "; answer")
    )
    return {
        "sufficient": not go_hop,
        "stop_reason": stop,
        "steps": 1,
        "trace": [step("assess", summary, t0, coverage=round(a.coverage, 3), missing=a.missing[:10], stop_reason=stop)],
    }


def hop(state: AgentState) -> dict:
    """Next-hop queries from bridge entities in the evidence found so far."""
    t0 = time.perf_counter()
    queries = hop_queries(
        state["standalone"], state.get("subqueries") or [], state.get("ranked") or [], state.get("asked") or []
    )
    n = state.get("hop", 0) + 1
    return {
        "pending": queries,
        "hop": n,
        "steps": 1,
        "trace": [step("hop", f"hop {n}: {len(queries)} follow-up queries", t0, queries=queries)],
    }


def chain(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Reorder the evidence so that its head is a chain (agent/chain.py): the first-hop chunk
    and the chunk its bridge entity leads to, not k look-alikes of the question."""
    t0 = time.perf_counter()
    ctx = runtime.context
    ranked: list[Hit] = state.get("ranked") or []
    if not ctx.config.agent.chain or len(ranked) < 2:
        return {"steps": 1, "trace": [step("chain", "off" if not ctx.config.agent.chain else "too few hits", t0)]}
    sel = select_chains(state["standalone"], ranked, ctx.index)
    out, screened = sel.ranked, []
    if sel.added and safety.screens(ctx.config.agent.injection_guard):
        # chunks brought in by entity links were never screened by fuse
        out, screened = safety.screen_hits(out)
    summary = f"{sel.reason}; best pair {sel.pairs[0][0]} + {sel.pairs[0][1]}" if sel.pairs else sel.reason
    brief = [hit_brief(h) for h in out[: ctx.config.candidates().evidence]]
    return {
        "ranked": out,
        "steps": 1,
        "trace": [step("chain", summary, t0, pairs=sel.pairs, added=sel.added[:20], ranked=brief, screened=screened)],
    }


def answer_step(ctx: AgentContext, question: str, ranked: list[Hit], stop_reason: str | None) -> dict[str, Any]:
    """Write the answer from the first ``candidates().evidence`` of ``ranked``: ``llm.max_tokens``
    for a full answer (32 for a short one), ``partial`` when a budget stopped the search, the
    answer guard applied. Returns the state update: ``answer``, ``citations``, ``status``, the
    ``tokens`` spent and one ``generate`` trace step."""
    t0 = time.perf_counter()
    cfg = ctx.config.agent
    evidence = ranked[: ctx.config.candidates().evidence]
    g = gen.generate(
        question,
        evidence,
        ctx.llm,
        style=cfg.answer_style,
        max_tokens=ctx.config.llm.max_tokens if cfg.answer_style == "full" else 32,
        answer_mode=cfg.answer_mode,
    )
    usage = usage_of(*g.responses)
    status = "partial" if g.status == "answered" and stop_reason else g.status
    # an answer carrying foreign URLs, e-mails or prompt text is flagged, not answered (tools/safety.py)
    answer, status, guard = safety.guard_answer(g.answer, status, question, g.citations, evidence, cfg.injection_guard)
    flags = f"; flagged: {', '.join(f['kind'] for f in guard['flags'])}" if guard.get("flags") else ""
    return {
        "answer": answer,
        "citations": g.citations,
        "status": status,
        "tokens": usage.tokens,
        "trace": [
            step(
                "generate",
                f"{status}; {len(g.citations)} citations" + (f"; fallback: {g.fallback}" if g.fallback else "") + flags,
                t0,
                llm=usage,
                raw=g.raw[:1000],
                fallback=g.fallback,
                method=g.method,
                evidence=[hit_brief(h) for h in evidence],
                **guard,
            )
        ],
    }


def generate(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """The answer from the ranked evidence (:func:`answer_step`)."""
    update = answer_step(runtime.context, state["standalone"], state.get("ranked") or [], state.get("stop_reason"))
    return {**update, "steps": 1}


def verify(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    """Check each cited claim against its chunk; one revision pass if some fail."""
    t0 = time.perf_counter()
    cites, unsupported = gen.verify(state["answer"], state.get("citations") or [])
    answer, tokens, revised, resp = state["answer"], 0, False, None
    if unsupported and state.get("status") in ("answered", "partial"):
        evidence = (state.get("ranked") or [])[: runtime.context.config.candidates().evidence]
        try:
            text, new_cites, resp = gen.revise(state["standalone"], answer, unsupported, evidence, runtime.context.llm)
            tokens = _tokens(resp)
            v_cites, v_unsup = gen.verify(text, new_cites)
            if text and new_cites and len(v_unsup) < len(unsupported):
                answer, cites, unsupported, revised = text, v_cites, v_unsup, True
        except HoprankError:
            pass
    status, guard = state.get("status") or "answered", {}
    if revised:  # the revision is checked like the first answer
        ev = (state.get("ranked") or [])[: runtime.context.config.candidates().evidence]
        mode = runtime.context.config.agent.injection_guard
        answer, status, guard = safety.guard_answer(answer, status, state["standalone"], cites, ev, mode)
    return {
        "answer": answer,
        "citations": cites,
        "status": status,
        "steps": 1,
        "tokens": tokens,
        "trace": [
            step(
                "verify",
                f"{len(unsupported)} unsupported claim(s); revised: {revised}",
                t0,
                llm=usage_of(resp),
                unsupported=unsupported,
                revised=revised,
                flags=guard.get("flags"),
            )
        ],
    }


def finalize(state: AgentState) -> dict:
    """Record the turn in the chat history (the one thing that persists across turns)."""
    t0 = time.perf_counter()
    turn = [{"role": "user", "content": state["question"]}, {"role": "assistant", "content": state.get("answer", "")}]
    return {
        "history": turn,
        "steps": 1,
        "trace": [step("finalize", f"status {state.get('status')}", t0, stop_reason=state.get("stop_reason"))],
    }
