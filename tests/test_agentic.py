"""Agentic mode: an LLM with bound tools, run by LangGraph's ToolNode, within budgets."""

from __future__ import annotations

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
