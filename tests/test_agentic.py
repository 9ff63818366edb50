"""Agentic mode: an LLM with bound tools, run by LangGraph's ToolNode, within budgets."""

from __future__ import annotations

import json
import re
from typing import Any

from hoprank.agent.agentic import offered_rerankers
from hoprank.agent.app.api import Agent
from hoprank.tools.llm.base import ScriptedLLM


def _agentic(index, script, **agent_cfg):
    cfg = {"rerank": {"method": "none"}, "agent": {"mode": "agentic", **agent_cfg}}
    return Agent.from_config(cfg, index=index, llm=ScriptedLLM(script))


def test_tool_calls_then_answer(built_index):
    calls = iter(
        [
            '{"tool": "search_bm25", "arguments": {"query": "Seren River kilometres"}}',
            '{"tool": "answer", "arguments": {}}',
        ]
    )

    def script(msgs):
        if "Answer with citations" in msgs[-1]["content"]:
            return "The Seren River is 212 kilometres long [1]."
        return next(calls, '{"tool": "answer", "arguments": {}}')

    a = _agentic(built_index, script).ask("How long is the Seren River?")
    assert a.status == "answered", a.error
    assert a.citations and a.citations[0].chunk_id.startswith("seren.md")
    summaries = [s["summary"] for s in a.trace["steps"]]
    assert any("search_bm25" in s for s in summaries)
    assert a.trace["mode"] == "agentic"


def test_no_tool_call_falls_back_to_one_search(built_index):
    def script(msgs):
        if "Answer with citations" in msgs[-1]["content"]:
            return "212 kilometres [1]."
        return "I am a small model and I do not know what a tool is."

    a = _agentic(built_index, script).ask("How long is the Seren River?")
    assert a.status == "answered"
    assert any("fallback" in s["summary"] or "no tool call" in s["summary"] for s in a.trace["steps"])
    assert a.evidence and a.evidence[0].doc_id == "seren.md"


def test_step_budget_stops_a_model_that_searches_forever(built_index):
    def script(msgs):
        if "Answer with citations" in msgs[-1]["content"]:
            return "Partial answer [1]."
        return '{"tool": "search_dense", "arguments": {"query": "lantern"}}'

    a = _agentic(built_index, script, max_steps=4).ask("Tell me about lanterns")
    assert a.status == "partial" and "step budget" in a.trace["stop_reason"]
    assert sum(1 for s in a.trace["steps"] if s["node"] == "agent") <= 4


# ---- rerank tools ----------------------------------------------------------------------
def _tool_script(*tool_calls: str, answer: str = "The Seren River is 212 kilometres long [1]."):
    """A model that makes ``tool_calls`` in order (then answers), and writes ``answer`` when asked."""
    calls = iter(tool_calls)

    def script(msgs):
        if "Answer with citations" in msgs[-1]["content"]:
            return answer
        return next(calls, '{"tool": "answer", "arguments": {}}')

    return script


def _offered(llm: ScriptedLLM, call: int = 0) -> set[str]:
    """The tool names the model was shown in its ``call``-th request (the embedded model gets them in the prompt)."""
    text = " ".join(m["content"] for m in llm.calls[call])
    return {name for name in re.findall(r"\b(?:search|rerank)_[a-z_]+\b", text)}


def test_search_then_rerank_tool_then_answer(built_index):
    llm = ScriptedLLM(
        _tool_script(
            '{"tool": "search_bm25", "arguments": {"query": "Seren River"}}',
            '{"tool": "rerank_embedding", "arguments": {"query": "How long is the Seren River?", "top_k": 3}}',
        )
    )
    agent = Agent.from_config({"rerank": {"method": "none"}, "agent": {"mode": "agentic"}}, index=built_index, llm=llm)
    a = agent.ask("How long is the Seren River?")
    assert a.status == "answered", a.error
    assert [s["node"] for s in a.trace["steps"]] == ["agent", "tool", "agent", "rerank", "agent", "generate"]
    rerank = next(s for s in a.trace["steps"] if s["node"] == "rerank")
    assert rerank["data"]["method"] == "embedding" and len(rerank["data"]["ranked"]) == 3
    # the answer read the rerank tool's order (no second rerank), and the model saw that order
    assert [h.id for h in a.evidence[:3]] == [h["id"] for h in rerank["data"]["ranked"]]
    shown = llm.calls[2][-1]["content"]
    assert "Evidence reranked by embedding, best first:" in shown and rerank["data"]["ranked"][0]["id"] in shown
    # offered: the non-LLM reranker that builds from the config; never an LLM reranker nobody configured
    assert "rerank_embedding" in _offered(llm) and not {"rerank_setwise", "rerank_cross_encoder"} & _offered(llm)
    # the answer step is the pipeline's: llm.max_tokens (512), not a length of its own
    assert llm.params[-1]["max_tokens"] == agent.config.llm.max_tokens == 512


def test_configured_llm_reranker_is_offered_and_its_tokens_count_against_the_budget(built_index):
    def run(budget: int) -> tuple[Agent, ScriptedLLM, Any]:
        llm = ScriptedLLM(
            _tool_script(
                '{"tool": "search_bm25", "arguments": {"query": "Seren River"}}',
                '{"tool": "rerank_setwise", "arguments": {"query": "How long is the Seren River?"}}',
                '{"tool": "search_dense", "arguments": {"query": "river length"}}',
            )
        )
        cfg = {"rerank": {"method": "setwise"}, "agent": {"mode": "agentic", "max_tokens_budget": budget}}
        agent = Agent.from_config(cfg, index=built_index, llm=llm)
        return agent, llm, agent.ask("How long is the Seren River?")

    _, llm, free = run(10**6)
    assert {"rerank_setwise", "rerank_embedding"} <= _offered(llm)
    nodes = [s["node"] for s in free.trace["steps"]]
    assert nodes[:4] == ["agent", "tool", "agent", "rerank"] and nodes[-1] == "generate"
    agent_tokens = [s["tokens"] for s in free.trace["steps"] if s["node"] == "agent"]
    rerank_tokens = next(s["tokens"] for s in free.trace["steps"] if s["node"] == "rerank")
    assert rerank_tokens > 0
    # the model's own two calls fit this budget; with the setwise reranker's tokens they do not
    _, _, stopped = run(agent_tokens[0] + agent_tokens[1] + 1)
    assert stopped.status == "partial" and "token budget" in stopped.trace["stop_reason"]
    assert [s["node"] for s in stopped.trace["steps"]] == ["agent", "tool", "agent", "rerank", "agent", "generate"]


def test_answer_reranks_with_the_configured_reranker_when_the_model_did_not(built_index):
    llm = ScriptedLLM(
        _tool_script(
            '{"tool": "search_bm25", "arguments": {"query": "Seren River"}}',
            '{"tool": "rerank_embedding", "arguments": {"query": "Seren River"}}',
            '{"tool": "search_dense", "arguments": {"query": "Ashe River"}}',  # new evidence after the rerank
        )
    )
    cfg = {"rerank": {"method": "embedding"}, "agent": {"mode": "agentic"}}
    a = Agent.from_config(cfg, index=built_index, llm=llm).ask("How long is the Seren River?")
    nodes = [s["node"] for s in a.trace["steps"]]
    assert nodes[-2:] == ["rerank", "generate"] and nodes.count("rerank") == 2
    last = [s for s in a.trace["steps"] if s["node"] == "rerank"][-1]
    assert [h.id for h in a.evidence[:5]] == [h["id"] for h in last["data"]["ranked"]]


def test_offered_rerankers_follow_the_config(built_index):
    def offered(method: str, **options: Any) -> list[str]:
        cfg = {"rerank": {"method": method, "options": options}, "agent": {"mode": "agentic"}}
        return offered_rerankers(Agent.from_config(cfg, index=built_index, llm=ScriptedLLM(["x"])).context())

    assert offered("none") == ["embedding"]
    assert offered("listwise") == ["listwise", "embedding"]
    assert "cross-encoder" not in offered("embedding")  # no model given: it cannot be built


def test_turns_of_a_thread_start_fresh(built_index):
    def script(msgs):  # each turn: search the question, then answer
        last = msgs[-1]["content"]
        if "Answer with citations" in last:
            return "It is long [1]."
        if msgs[-1]["role"] == "user" and not last.startswith("Result of tool"):
            return json.dumps({"tool": "search_bm25", "arguments": {"query": last}})
        return '{"tool": "answer", "arguments": {}}'

    llm = ScriptedLLM(script)
    agent = Agent.from_config({"rerank": {"method": "none"}, "agent": {"mode": "agentic"}}, index=built_index, llm=llm)
    first = agent.ask("How long is the Seren River?", thread_id="t")
    n_calls = len(llm.calls)
    second = agent.ask("How long is the Ashe River?", thread_id="t")
    # nothing of the first turn: its trace, steps, evidence and the model's conversation start again
    assert [s["node"] for s in second.trace["steps"]] == ["agent", "tool", "agent", "rerank", "generate"]
    assert second.trace["n_steps"] == first.trace["n_steps"] == 3
    assert [m["role"] for m in llm.calls[n_calls]] == ["system", "user"]
    assert not any("Seren" in m["content"] for m in llm.calls[n_calls])


def test_bad_tool_arguments_go_back_to_the_model(built_index):
    llm = ScriptedLLM(
        _tool_script(
            '{"tool": "search_bm25", "arguments": {"query": "Seren River", "k": "many"}}',
            '{"tool": "search_bm25", "arguments": {"query": "Seren River", "k": 500}}',
            '{"tool": "rerank_embedding", "arguments": {"query": "", "top_k": "x", "hit_ids": ["nope"]}}',
        )
    )
    agent = Agent.from_config({"rerank": {"method": "none"}, "agent": {"mode": "agentic"}}, index=built_index, llm=llm)
    a = agent.ask("How long is the Seren River?")
    assert a.status == "answered", a.error
    assert "Error" in llm.calls[1][-1]["content"]  # the invalid k, as the tool's answer
    searched = [s for s in a.trace["steps"] if s["node"] == "tool"]
    assert len(searched) == 1 and len(searched[0]["data"]["hits"]) <= agent.config.candidates().per_query
    # ids that are not in the evidence, an empty query and a bad top_k: all the evidence, the question, the default
    rerank = next(s for s in a.trace["steps"] if s["node"] == "rerank")
    n_in = len(searched[0]["data"]["hits"])
    assert rerank["data"]["usage"]["n_in"] == n_in and rerank["data"]["usage"]["top_k"] == 5
    assert "Evidence reranked by embedding" in llm.calls[3][-1]["content"]
