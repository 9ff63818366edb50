"""Graph routing with a scripted LLM: each branch, budgets, garbage fallbacks, memory."""

from __future__ import annotations

import pytest

from hoprank.agent.app.api import Agent, answer_summary
from hoprank.agent.assess import assess
from hoprank.agent.generate import parse_citations, verify
from hoprank.agent.hop import bridge_entities, hop_queries
from hoprank.agent.understand import (
    classify_rules,
    decompose_rules,
    understand,
    validate_subquestions,
)
from hoprank.tools.errors import InvalidQueryError
from hoprank.tools.llm.base import ScriptedLLM
from hoprank.tools.types import Citation, Hit


def _agent(index, script, **cfg):
    base = {"rerank": {"method": "none"}}
    for k, v in cfg.items():
        sec, key = k.split("__")
        base.setdefault(sec, {})[key] = v
    return Agent.from_config(base, index=index, llm=ScriptedLLM(script))


def answer_with(text):
    def script(msgs):
        user = msgs[-1]["content"]
        if "JSON" in user:
            return "not json at all"
        return text

    return script


# ---- understanding ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "q,qtype",
    [
        ("In which town was Ada Quill born?", "single-hop"),
        ("Who is the lead singer of The Copper Lanterns?", "single-hop"),
        ("In which town was the founder of Quill Lamp Works born?", "bridge"),
        ("On which river lies the birthplace of Ada Quill?", "bridge"),
        ("Which is longer, the Seren River or the Ashe River?", "comparison"),
        ("Was Quill Lamp Works founded before Otto Brenn was born?", "comparison"),
        ("Are Hollin and Marrow Bay both port towns?", "comparison"),
    ],
)
def test_rule_classification(q, qtype):
    assert classify_rules(q) == qtype


def test_rule_decomposition_shapes():
    assert decompose_rules("Which is longer, the Seren River or the Ashe River?").subquestions == [
        "the Seren River longer",
        "the Ashe River longer",
    ]
    assert (
        decompose_rules("In which town was the founder of Quill Lamp Works born?").subquestions[0]
        == "founder of Quill Lamp Works"
    )


def test_llm_decomposition_accepted_when_valid_and_rejected_when_off_topic():
    good = ScriptedLLM(
        ['{"type": "bridge", "subquestions": ["Who founded Quill Lamp Works?", "Where was the founder born?"]}']
    )
    u, _ = understand("In which town was the founder of Quill Lamp Works born?", good)
    assert u.source == "llm" and u.subquestions[0] == "Who founded Quill Lamp Works?"
    off = ScriptedLLM(['{"type": "bridge", "subquestions": ["What is the capital of France?"]}'])
    u, _ = understand("In which town was the founder of Quill Lamp Works born?", off)
    assert u.source == "rules" and "off-topic" in u.rejected
    for garbage in ["", "I think the answer is", '{"type": 5}', '{"subquestions": "x"}', "```json\n{broken"]:
        u, _ = understand("Which is longer, the Seren River or the Ashe River?", ScriptedLLM([garbage]))
        assert u.source == "rules" and u.qtype == "comparison" and len(u.subquestions) == 2
    assert validate_subquestions("q about lanterns", []) == "no sub-questions"
    assert "max 5" in validate_subquestions("lantern", ["lantern"] * 6)


# ---- hop and assess ---------------------------------------------------------------------
def test_bridge_entities_come_from_the_evidence_not_the_question():
    hits = [
        Hit(
            id="a#0",
            score=1,
            text="Quill Lamp Works was founded in 1896 by Ada Quill in Marrow Bay.",
            title="Quill Lamp Works",
            rank=1,
        )
    ]
    ents = bridge_entities("In which town was the founder of Quill Lamp Works born?", hits)
    assert "Ada Quill" in ents and all("Quill Lamp Works" != e for e in ents)
    qs = hop_queries(
        "In which town was the founder of Quill Lamp Works born?",
        ["founder of Quill Lamp Works"],
        hits,
        asked=["founder of Quill Lamp Works"],
    )
    assert qs and qs[0].startswith("Ada Quill") and "founder of Quill Lamp Works" not in qs


def test_assess_rules():
    h = [Hit(id="x", score=1, text="The Seren River is 212 kilometres long.", title="Seren River")]
    assert not assess("Which is longer, the Seren River or the Ashe River?", "comparison", h, 0).sufficient
    assert assess("How long is the Seren River?", "single-hop", h, 0).sufficient
    assert not assess("Who founded the lamp works?", "bridge", h, 0).sufficient  # second hop not run
    assert not assess("anything", "single-hop", [], 0).sufficient


# ---- citations --------------------------------------------------------------------------
def test_citations_only_point_at_retrieved_chunks():
    ev = [
        Hit(id="c1", score=1, text="Ada Quill was born in Marrow Bay.", title="Ada"),
        Hit(id="c2", score=1, text="x", title="X"),
    ]
    text, cites = parse_citations("Ada was born in Marrow Bay [1][7]. Also [2, 9] and [0].", ev)
    assert [c.chunk_id for c in cites] == ["c1", "c2"]
    assert "[7]" not in text and "[9]" not in text and "[0]" not in text
    cites2, unsupported = verify(
        "Ada Quill was born in Marrow Bay [1]. The moon is made of cheese [2].",
        [Citation(1, "c1", text=ev[0].text), Citation(2, "c2", text="x")],
    )
    assert [c.supported for c in cites2] == [True, False] and unsupported == ["The moon is made of cheese [2]."]


# ---- the whole graph with a scripted LLM ------------------------------------------------
def test_single_hop_question_answers_without_hop(built_index):
    agent = _agent(built_index, answer_with("The Seren River is 212 kilometres long [1]."))
    a = agent.ask("How long is the Seren River?")
    assert a.status == "answered" and a.trace["hops"] == 0
    assert a.citations and a.citations[0].chunk_id == a.evidence[0].id
    nodes = [s["node"] for s in a.trace["steps"]]
    assert nodes[:2] == ["contextualize", "understand"] and "hop" not in nodes and nodes[-1] == "finalize"


def test_bridge_question_hops_and_finds_second_document(built_index):
    agent = _agent(built_index, answer_with("She was born in Marrow Bay [1]."))
    a = agent.ask("On which river lies the town where the founder of Quill Lamp Works was born?")
    assert a.trace["hops"] >= 1
    assert "hop" in [s["node"] for s in a.trace["steps"]]
    docs = {h.doc_id for h in a.evidence}
    assert {"lamp-works.md", "marrow-bay.md"} <= docs, docs


def test_hop_budget_zero_means_no_hop_and_partial_status(built_index):
    agent = _agent(built_index, answer_with("Marrow Bay [1]."), agent__max_hops=0)
    a = agent.ask("On which river lies the town where the founder of Quill Lamp Works was born?")
    assert a.trace["hops"] == 0 and a.status in ("answered", "partial")


def test_step_budget_stops_the_graph_with_partial_status(built_index):
    agent = _agent(built_index, answer_with("Marrow Bay [1]."), agent__max_hops=5, agent__max_steps=12)
    a = agent.ask("On which river lies the town where the founder of Quill Lamp Works was born?")
    assert a.status == "partial" and "step budget" in a.trace["stop_reason"]
    assert a.trace["n_steps"] <= 12 + 3  # stops before the next round, never by recursion limit


def test_token_budget_stops_hopping(built_index):
    agent = _agent(
        built_index, answer_with("x " * 50), agent__max_hops=5, agent__max_tokens_budget=100, agent__decompose="llm"
    )
    a = agent.ask("On which river lies the town where the founder of Quill Lamp Works was born?")
    assert a.trace["stop_reason"] is None or "budget" in a.trace["stop_reason"]
    assert a.trace["hops"] <= 1


@pytest.mark.parametrize("garbage", ["", "   ", "NOT_FOUND", "[[[", "\x00\x01"])
def test_garbage_generation_falls_back(built_index, garbage):
    agent = _agent(built_index, answer_with(garbage))
    a = agent.ask("How long is the Seren River?")
    assert a.status in ("answered", "not_found")
    if a.status == "answered":  # extractive fallback cites a real chunk
        assert a.citations and a.citations[0].chunk_id in {h.id for h in a.evidence}
        assert "fallback" in a.trace["steps"][-2]["summary"]


def test_short_answer_style(built_index):
    agent = _agent(built_index, answer_with("Answer: 212 kilometres."), agent__answer_style="short")
    a = agent.ask("How long is the Seren River?")
    assert a.answer == "212 kilometres"


def test_llm_failure_becomes_failed_answer_not_exception(built_index):
    def boom(msgs):
        raise RuntimeError("endpoint down")

    a = _agent(built_index, boom).ask("How long is the Seren River?")
    assert a.status == "failed" and "endpoint down" in a.error


@pytest.mark.parametrize("bad", ["", "   ", "x" * 5000])
def test_bad_questions_raise_clear_errors(built_index, bad):
    with pytest.raises(InvalidQueryError):
        _agent(built_index, answer_with("x")).ask(bad)


def test_stream_yields_steps_then_one_answer(built_index):
    agent = _agent(built_index, answer_with("212 kilometres [1]."))
    events = list(agent.stream("How long is the Seren River?"))
    assert [e["type"] for e in events].count("answer") == 1 and events[-1]["type"] == "answer"
    assert {e["node"] for e in events if e["type"] == "step"} >= {"understand", "search", "fuse", "generate"}


def test_json_summary_shape(built_index):
    a = _agent(built_index, answer_with("212 kilometres [1].")).ask("How long is the Seren River?")
    s = answer_summary(a)
    assert set(s) >= {"answer", "citations", "evidence", "trace"} and s["evidence"][0]["id"]


# ---- chat memory ------------------------------------------------------------------------
def test_follow_up_rewritten_with_history_and_threads_isolated(built_index):
    def script(msgs):
        user = msgs[-1]["content"]
        if "Follow-up question" in user:
            return "In which year was Ada Quill born?" if "Ada Quill" in user else "garbage"
        if "JSON" in user:
            return "{}"
        return "Ada Quill founded it [1]." if "lamp" in user.lower() else "Answer [1]."

    agent = Agent.from_config({"rerank": {"method": "none"}}, index=built_index, llm=ScriptedLLM(script))
    agent.ask("Who founded Quill Lamp Works?", thread_id="t1")
    a2 = agent.ask("In which year was she born?", thread_id="t1")
    assert a2.trace["standalone"] == "In which year was Ada Quill born?"
    # another thread has no history: the follow-up stays as asked
    b = agent.ask("In which year was she born?", thread_id="t2")
    assert b.trace["standalone"] == "In which year was she born?"
    # per-turn state is reset between turns of the same thread
    assert a2.trace["queries"][0] == "In which year was Ada Quill born?"


def test_a_turn_takes_only_the_question_and_keeps_only_the_history(built_index):
    agent = _agent(built_index, answer_with("The Seren River is 212 kilometres long [1]."))
    # the input schema is the question alone (LangGraph drops other keys of the input)
    assert set(agent.graph.get_input_jsonschema()["properties"]) == {"question"}
    first = agent.ask("How long is the Seren River?", thread_id="t")
    ctx, cfg = agent.context(), {"configurable": {"thread_id": "t"}}
    out = agent.graph.invoke(
        {"question": "How long is the Seren River?", "steps": 1000, "trace": ["x"]}, cfg, context=ctx
    )
    # the start node wrote every per-turn field: nothing of the first turn but its history
    assert out["steps"] == first.trace["n_steps"] and out["trace"][0]["node"] == "contextualize"
    assert len(out["trace"]) == len(first.trace["steps"]) and out["asked"] == first.trace["queries"]
    assert [m["role"] for m in out["history"]] == ["user", "assistant"] * 2


def test_sqlite_checkpointer_keeps_history_across_agents(built_index, tmp_path):
    db = tmp_path / "chat.sqlite"

    def script(msgs):
        user = msgs[-1]["content"]
        if "Follow-up question" in user:
            return "When was Otto Brenn born?" if "Otto Brenn" in user else "nope"
        return "Otto Brenn [1]."

    a1 = Agent.from_config({"rerank": {"method": "none"}}, index=built_index, llm=ScriptedLLM(script), checkpoint=db)
    a1.ask("Who repaired the town clock of Hollin?", thread_id="x")
    a2 = Agent.from_config({"rerank": {"method": "none"}}, index=built_index, llm=ScriptedLLM(script), checkpoint=db)
    assert a2.ask("When was he born?", thread_id="x").trace["standalone"] == "When was Otto Brenn born?"


# ---- hoprank as a tool of another agent -------------------------------------------------
def test_as_tool_called_from_a_minimal_langgraph_agent(built_index):
    from langchain_core.messages import AIMessage, HumanMessage
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    hoprank_tool = _agent(built_index, answer_with("The Seren River is 212 kilometres long [1].")).as_tool()

    def caller(state: MessagesState):
        if any(m.type == "tool" for m in state["messages"]):
            return {"messages": [AIMessage(content="done: " + state["messages"][-1].content)]}
        return {
            "messages": [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": hoprank_tool.name, "args": {"question": "How long is the Seren River?"}, "id": "call1"}
                    ],
                )
            ]
        }

    g = StateGraph(MessagesState)
    g.add_node("caller", caller)
    g.add_node("tools", ToolNode([hoprank_tool]))
    g.add_edge(START, "caller")
    g.add_conditional_edges("caller", lambda s: "tools" if s["messages"][-1].tool_calls else END, ["tools", END])
    g.add_edge("tools", "caller")
    out = g.compile().invoke({"messages": [HumanMessage(content="go")]})
    final = out["messages"][-1].content
    assert final.startswith("done: The Seren River is 212 kilometres long") and "Sources:" in final


async def test_astream_consumer_leaving_stops_the_graph(built_index, monkeypatch):
    import asyncio
    import time

    from hoprank.agent import nodes

    real_fuse = nodes.fuse

    def slow_fuse(state):  # leaves the consumer ample time to leave before generate
        time.sleep(1.0)
        return real_fuse(state)

    monkeypatch.setattr(nodes, "fuse", slow_fuse)
    calls: list[str] = []

    def script(msgs):
        calls.append(msgs[-1]["content"][:20])
        return "answer [1]"

    agent = Agent.from_config(
        {"rerank": {"method": "none"}, "agent": {"decompose": "rules"}}, index=built_index, llm=ScriptedLLM(script)
    )
    stream = agent.astream("How long is the Seren River?")
    first = await stream.__anext__()
    assert first["type"] == "step"
    await stream.aclose()  # what a disconnecting HTTP client causes
    await asyncio.sleep(3)
    assert calls == []  # generate never ran


async def test_aask_and_history(built_index):
    agent = _agent(built_index, answer_with("212 kilometres [1]."))
    a = await agent.aask("How long is the Seren River?", thread_id="h1")
    assert a.status == "answered"
    assert agent.history("h1") == [
        {"role": "user", "content": "How long is the Seren River?"},
        {"role": "assistant", "content": a.answer},
    ]
    assert agent.history("nobody") == []


def test_shorten_sentence_answers_to_the_stated_span():
    from hoprank.agent.generate import shorten

    ev = [
        Hit(id="a", score=1, text="Ada Quill (born 1871). She was born in Marrow Bay.", title="Ada Quill"),
        Hit(id="b", score=1, text="The Seren River is 212 kilometres long.", title="Seren River"),
    ]
    assert (
        shorten("Ada Quill was born in Marrow Bay", "In which town was the founder of Quill Lamp Works born?", ev)[0]
        == "Marrow Bay"
    )
    assert shorten("The Seren River is 212 kilometres long", "How long is the Seren River?", ev)[0] == "212"
    assert shorten("Yes, both lie on rivers", "Are Hollin and Marrow Bay both on rivers?", ev)[0] == "yes"
    # nothing from the evidence in the sentence: keep the model's words (no invented span)
    assert shorten("The river is about 148 km in length", "How long is the Seren River?", ev) == (
        "The river is about 148 km in length",
        None,
    )
    assert shorten("Marrow Bay", "q", ev) == ("Marrow Bay", None)
