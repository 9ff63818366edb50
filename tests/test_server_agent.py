"""The server around the real ``hoprank.Agent`` (real index, MiniLM, LangGraph, checkpointer).

Routing/HTTP checks inject a ScriptedLLM (deterministic, fast); one slow test runs the
embedded SmolLM2 end to end through the official ``openai`` client.
"""

from __future__ import annotations

import httpx
import openai
import pytest
from conftest import write_corpus

from hoprank import Agent
from hoprank.agent.app.server import ServerSettings, create_app, serve_in_thread
from hoprank.tools.ingest.index import Index
from hoprank.tools.llm.base import ScriptedLLM

FAST_CONFIG = {
    "agent": {"decompose": "rules", "max_hops": 1},
    "rerank": {"method": "embedding"},
    "llm": {"cache": False},
}


@pytest.fixture(scope="module")
def own_index(tmp_path_factory):
    """A private index: these tests add documents, so they must not touch the shared one."""
    corpus = write_corpus(tmp_path_factory.mktemp("srv-corpus"))
    idx, _ = Index.build(tmp_path_factory.mktemp("srv-index"), sources=[corpus], qdrant=False, show_progress=False)
    return idx


@pytest.fixture(scope="module")
def scripted_server(own_index):
    llm = ScriptedLLM(lambda messages: "Ada Quill was born in Marrow Bay [1].")
    agent = Agent.from_config(FAST_CONFIG, index=own_index, llm=llm)
    with serve_in_thread(create_app(agent, ServerSettings(api_key="k"))) as url:
        yield url, agent


def oai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=120)


def test_real_agent_non_streaming(scripted_server):
    url, agent = scripted_server
    r = oai(url).chat.completions.create(
        model="hoprank",
        messages=[{"role": "user", "content": "Where was Ada Quill born?"}],
        extra_body={"conversation_id": "ada"},
    )
    extra = r.model_extra["hoprank"]
    assert extra["status"] == "answered", extra
    assert "Marrow Bay" in r.choices[0].message.content
    assert extra["thread_id"] == "ada"
    evidence_ids = {h["id"] for h in extra["evidence"]}
    assert extra["citations"] and all(c["chunk_id"] in evidence_ids for c in extra["citations"])
    assert {"search", "generate"} <= {s["node"] for s in extra["trace"]["steps"]}


def test_real_agent_streaming_steps_and_followup_thread(scripted_server):
    url, agent = scripted_server
    c = oai(url)
    chunks = list(
        c.chat.completions.create(
            model="hoprank",
            messages=[{"role": "user", "content": "Who founded Quill Lamp Works?"}],
            stream=True,
            extra_body={"conversation_id": "lamp"},
        )
    )
    steps = [
        ch.model_extra["hoprank"]["step"] for ch in chunks if (ch.model_extra or {}).get("hoprank", {}).get("step")
    ]
    nodes = [s["node"] for s in steps]
    assert "search" in nodes and nodes.index("search") < nodes.index("generate")
    search = next(s for s in steps if s["node"] == "search")
    assert search["data"]["hits"] and "elapsed_s" in search
    final = chunks[-1].model_extra["hoprank"]
    assert final["thread_id"] == "lamp" and final["citations"]
    # a follow-up in the same conversation continues the checkpointed thread
    r2 = c.chat.completions.create(
        model="hoprank",
        messages=[{"role": "user", "content": "When was it founded?"}],
        extra_body={"conversation_id": "lamp"},
    )
    assert r2.model_extra["hoprank"]["thread_id"] == "lamp"
    history = agent._graph.get_state({"configurable": {"thread_id": "lamp"}}).values
    assert history  # the checkpointer holds this thread's state; other threads are separate
    other = agent._graph.get_state({"configurable": {"thread_id": "never-used"}}).values
    assert not other


def test_uploaded_documents_become_searchable(scripted_server):
    url, agent = scripted_server
    before = len(agent.index)
    r = httpx.post(
        f"{url}/v1/documents",
        headers={"Authorization": "Bearer k"},
        json=[
            {
                "id": "nora.md",
                "title": "Nora Vell",
                "text": "Nora Vell was a glassblower born in Pellham Cove in 1880.",
                "metadata": {"src": "test"},
            }
        ],
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.json()["chunks"] == before + 1
    resp = oai(url).chat.completions.create(
        model="hoprank", messages=[{"role": "user", "content": "Where was the glassblower Nora Vell born?"}]
    )
    ids = [h["id"] for h in resp.model_extra["hoprank"]["evidence"]]
    assert any(i.startswith("nora.md") for i in ids), ids


def test_invalid_question_rejected_before_the_agent(scripted_server):
    url, _ = scripted_server
    r = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": "Bearer k"},
        json={"messages": [{"role": "user", "content": "\n\t "}]},
    )
    assert r.status_code == 400


@pytest.mark.slow
def test_embedded_model_end_to_end_with_openai_client(own_index):
    cfg = {"agent": {"decompose": "rules", "max_hops": 1}, "llm": {"max_tokens": 64, "cache": False}}
    agent = Agent.from_config(cfg, index=own_index)
    with serve_in_thread(create_app(agent)) as url:
        stream = oai(url).chat.completions.create(
            model="hoprank",
            messages=[{"role": "user", "content": "Where was the founder of Quill Lamp Works born?"}],
            stream=True,
        )
        chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    final = chunks[-1].model_extra["hoprank"]
    assert final["status"] in ("answered", "not_found", "partial"), final
    assert text.strip() or final["status"] != "answered"
    evidence_ids = {h["id"] for h in final["evidence"]}
    assert all(c["chunk_id"] in evidence_ids for c in final["citations"])  # only chunks retrieved in this run
    assert any(s["node"] == "generate" for s in final["trace"]["steps"])
