"""HoprankChatModel: LangChain/LangGraph on top of any ChatLLM (prompted or native tools)."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from hoprank.tools.llm import ScriptedLLM
from hoprank.tools.llm.langchain_adapter import HoprankChatModel, parse_tool_calls

BIRTHPLACES = {"ada quill": "Marrow Bay", "otto brenn": "Hollin"}


@tool
def birthplace(person: str) -> str:
    """Look up where a person was born."""
    return BIRTHPLACES.get(person.lower(), "unknown")


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"tool": "birthplace", "arguments": {"person": "Ada Quill"}}', [("birthplace", {"person": "Ada Quill"})]),
        (
            'Sure!\n```json\n{"name": "birthplace", "args": {"person": "Otto"}}\n```',
            [("birthplace", {"person": "Otto"})],
        ),
        ('{"tool": "birthplace", "arguments": "{\\"person\\": \\"x\\"}"}', [("birthplace", {"person": "x"})]),
        ('[{"tool": "birthplace", "arguments": {}}, {"tool": "nope", "arguments": {}}]', [("birthplace", {})]),
        ('{"tool": "rm_rf", "arguments": {"path": "/"}}', []),  # not a bound tool
        ("Ada Quill was born in Marrow Bay.", []),
        ('{"tool": "birthplace", "arguments": {"person": ', []),  # truncated JSON
        ("", []),
        ("{}", []),
    ],
)
def test_parse_tool_calls_survives_garbage(text, expected):
    calls = parse_tool_calls(text, {"birthplace"})
    assert [(c["name"], c["args"]) for c in calls] == expected
    assert all(c["id"].startswith("call_") for c in calls)


def test_prompted_tool_call_becomes_ai_message_with_tool_calls():
    llm = ScriptedLLM(['{"tool": "birthplace", "arguments": {"person": "Ada Quill"}}'])
    model = HoprankChatModel(llm=llm, max_tokens=64).bind_tools([birthplace])
    msg = model.invoke([SystemMessage("You answer questions."), HumanMessage("Where was Ada Quill born?")])
    assert isinstance(msg, AIMessage)
    assert msg.tool_calls[0]["name"] == "birthplace" and msg.tool_calls[0]["args"] == {"person": "Ada Quill"}
    assert msg.tool_calls[0]["id"]
    assert (
        msg.usage_metadata["input_tokens"] > 0
        and msg.usage_metadata["total_tokens"]
        == msg.usage_metadata["input_tokens"] + msg.usage_metadata["output_tokens"]
    )
    sent = llm.calls[0]
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("You answer questions.")
    assert '"name": "birthplace"' in sent[0]["content"] and "Look up where a person was born." in sent[0]["content"]
    assert llm.params[0]["max_tokens"] == 64 and "tools" not in llm.params[0]


def test_plain_text_is_a_plain_answer():
    model = HoprankChatModel(llm=ScriptedLLM(["I think it is Marrow Bay."])).bind_tools([birthplace])
    msg = model.invoke("Where was Ada born?")
    assert msg.tool_calls == [] and msg.content == "I think it is Marrow Bay."


def build_graph(model):
    bound = model.bind_tools([birthplace])

    def agent(state: MessagesState):
        return {"messages": [bound.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([birthplace]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    g.add_edge("tools", "agent")
    return g.compile()


def test_langgraph_tool_node_loop_with_prompted_tools():
    def script(messages):
        last = messages[-1]["content"]
        if last.startswith("Result of tool birthplace:"):
            return "Ada Quill was born in " + last.split("\n", 1)[1].strip() + "."
        return '{"tool": "birthplace", "arguments": {"person": "Ada Quill"}}'

    llm = ScriptedLLM(script)
    out = build_graph(HoprankChatModel(llm=llm)).invoke(
        {"messages": [HumanMessage("Where was Ada Quill born?")]}, {"recursion_limit": 10}
    )
    msgs = out["messages"]
    assert [type(m).__name__ for m in msgs] == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert msgs[2].content == "Marrow Bay" and msgs[2].tool_call_id == msgs[1].tool_calls[0]["id"]
    assert msgs[-1].content == "Ada Quill was born in Marrow Bay."
    # the second turn showed the small model its own call as JSON and the result as text
    second = llm.calls[1]
    assert json.loads(second[-2]["content"]) == {"tool": "birthplace", "arguments": {"person": "Ada Quill"}}
    assert second[-1] == {"role": "user", "content": "Result of tool birthplace:\nMarrow Bay"}


class NativeScripted(ScriptedLLM):
    """Like an OpenAI-compatible server: receives ``tools=`` and answers with tool_calls."""

    supports_tools = True

    def _complete(self, messages, **params):
        r = super()._complete(messages, **params)
        if params.get("tools") and messages[-1]["role"] != "tool":
            from dataclasses import replace

            return replace(
                r,
                text="",
                tool_calls=[{"id": "call_native_1", "name": "birthplace", "arguments": {"person": "Otto Brenn"}}],
            )
        return r


async def test_native_tools_pass_through_async_graph():
    llm = NativeScripted(["Otto Brenn was born in Hollin."])
    out = await build_graph(HoprankChatModel(llm=llm)).ainvoke(
        {"messages": [HumanMessage("Where was Otto born?")]}, {"recursion_limit": 10}
    )
    msgs = out["messages"]
    assert msgs[1].tool_calls[0]["id"] == "call_native_1"
    assert isinstance(msgs[2], ToolMessage) and msgs[2].content == "Hollin"
    assert msgs[-1].content == "Otto Brenn was born in Hollin."
    first, second = llm.params[0], llm.calls[1]
    assert first["tools"][0]["function"]["name"] == "birthplace"
    assert second[-2]["tool_calls"][0]["function"] == {"name": "birthplace", "arguments": '{"person": "Otto Brenn"}'}
    assert second[-1] == {"role": "tool", "tool_call_id": "call_native_1", "content": "Hollin"}
