"""Issue 10.12: ``agent.as_tool()`` inside another agent's graph (LangGraph's
``create_react_agent``): a bad question or a failed answer is a tool error the calling model
reads, never an exception that kills the caller's graph, nor ``''`` reported as success.
Issue 11.2: the citations come back as the ToolMessage's artifact, and the async path
(``ainvoke`` of the caller's graph) runs the agent's own async path."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from hoprank.agent.app.api import Agent
from hoprank.agent.config import LLMConfig
from hoprank.tools.llm import make_llm
from hoprank.tools.llm.base import ScriptedLLM


class OneToolCall(BaseChatModel):
    """The caller's model: asks the tool once with ``question``, then repeats the tool's reply."""

    question: str = ""

    @property
    def _llm_type(self) -> str:
        return "one-tool-call"

    def bind_tools(self, tools: Any, **kw: Any) -> OneToolCall:
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        if isinstance(messages[-1], ToolMessage):
            msg = AIMessage(content=f"tool said: {messages[-1].content}")
        else:
            msg = AIMessage(
                content="", tool_calls=[{"name": "hoprank_ask", "args": {"question": self.question}, "id": "call-1"}]
            )
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _react(agent: Agent, question: str) -> Any:
    from langgraph.prebuilt import create_react_agent

    return create_react_agent(OneToolCall(question=question), [agent.as_tool()])


def _tool_message(out: dict[str, Any]) -> tuple[ToolMessage, str]:
    tool_msgs = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_msgs) == 1
    return tool_msgs[0], out["messages"][-1].content


def _run_react(agent: Agent, question: str) -> tuple[ToolMessage, str]:
    return _tool_message(_react(agent, question).invoke({"messages": [("user", "go")]}))


def _agent(index: Any, llm: Any) -> Agent:
    return Agent.from_config({"rerank": {"method": "none"}, "agent": {"decompose": "rules"}}, index=index, llm=llm)


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question_is_a_tool_error_not_a_dead_graph(built_index, question):
    msg, final = _run_react(_agent(built_index, ScriptedLLM(["unused"])), question)
    assert msg.status == "error" and "empty" in msg.content
    assert final.startswith("tool said: hoprank rejected the question")


def test_unreachable_llm_is_a_failure_not_an_empty_success(built_index):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    llm = make_llm(
        LLMConfig(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", cache=False, max_retries=0)
    )
    msg, _ = _run_react(_agent(built_index, llm), "How long is the Seren River?")
    assert msg.status == "error", msg.content
    assert "could not answer" in msg.content and "refused" in msg.content.lower()


def test_answer_comes_back_with_sources_and_success(built_index):
    msg, final = _run_react(
        _agent(built_index, ScriptedLLM(["The Seren River is 212 kilometres long [1]."])),
        "How long is the Seren River?",
    )
    assert msg.status == "success"
    assert msg.content.startswith("The Seren River is 212 kilometres long") and "Sources:\n[1]" in msg.content
    assert final.startswith("tool said: The Seren River")


async def test_async_tool_reports_errors_the_same_way(built_index):
    tool = _agent(built_index, ScriptedLLM(["unused"])).as_tool()
    out = await tool.ainvoke({"type": "tool_call", "name": tool.name, "args": {"question": " "}, "id": "c1"})
    assert isinstance(out, ToolMessage) and out.status == "error" and "empty" in out.content


def test_citations_come_back_as_the_artifact(built_index):
    msg, _ = _run_react(
        _agent(built_index, ScriptedLLM(["The Seren River is 212 kilometres long [1]."])),
        "How long is the Seren River?",
    )
    assert msg.status == "success"
    (citation,) = msg.artifact  # what the calling app shows; its model reads only the content
    assert citation["marker"] == 1 and citation["chunk_id"] == "seren.md#0" and citation["title"] == "Seren River"
    assert "212 kilometres" in citation["text"]


async def test_async_caller_graph_runs_the_async_path(built_index, monkeypatch):
    agent = _agent(built_index, ScriptedLLM(["The Seren River is 212 kilometres long [1]."]))

    def no_sync(*a: Any, **k: Any) -> Any:
        raise AssertionError("the tool's async path must not run the sync stream")

    monkeypatch.setattr(agent, "stream", no_sync)
    out = await _react(agent, "How long is the Seren River?").ainvoke({"messages": [("user", "go")]})
    msg, final = _tool_message(out)
    assert msg.status == "success" and msg.content.startswith("The Seren River is 212 kilometres long")
    assert [c["chunk_id"] for c in msg.artifact] == ["seren.md#0"]
    assert final.startswith("tool said: The Seren River")
