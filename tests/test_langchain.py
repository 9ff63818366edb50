"""hoprank in LangChain's protocols (issue 11 item 2), against the real langchain-core and
langgraph: the ``BaseRetriever`` in an LCEL chain, the agent as a ``Runnable``, any LangGraph
checkpointer, LangChain ``Document``s added to the index, the public compiled graph.

The answering LLM is a ScriptedLLM (deterministic); retrieval, the embedding model, the
rerankers' parsing, LangGraph and the checkpointers are the real ones."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from conftest import write_corpus
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph.state import CompiledStateGraph

from hoprank import Agent
from hoprank.agent.app.langchain import HoprankRetriever
from hoprank.tools.errors import HoprankError, InvalidQueryError
from hoprank.tools.ingest.index import Index
from hoprank.tools.llm.base import ScriptedLLM
from hoprank.tools.types import Answer

FAST = {"rerank": {"method": "none"}, "agent": {"decompose": "rules", "max_hops": 1}}
QUESTION = "How long is the Seren River?"


def _agent(index, reply: str = "The Seren River is 212 kilometres long [1].", **kw) -> Agent:
    return Agent.from_config(FAST, index=index, llm=ScriptedLLM([reply]), **kw)


def format_docs(docs: list[LCDocument]) -> str:
    return "\n\n".join(f"[{d.metadata['rank']}] {d.metadata['title']}: {d.page_content}" for d in docs)


@pytest.fixture
def own_index(tmp_path):
    """A private index for the tests that add documents (the shared one is read-only)."""
    corpus = write_corpus(tmp_path / "corpus")
    idx, _ = Index.build(tmp_path / "index", sources=[corpus], qdrant=False, show_progress=False)
    return idx


# ---- the retriever ----------------------------------------------------------------------------
def test_retriever_documents_carry_scores_and_ids(built_index):
    retriever = HoprankRetriever(index=built_index, config={"rerank": {"method": "embedding"}}, k=3)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke(QUESTION)
    assert len(docs) == 3
    top = docs[0]
    assert top.metadata["doc_id"] == "seren.md" and top.id == top.metadata["chunk_id"] == "seren.md#0"
    assert top.metadata["title"] == "Seren River" and "212 kilometres" in top.page_content
    assert [d.metadata["rank"] for d in docs] == [1, 2, 3]
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    # reranked by the configured reranker; the retrieval score is kept beside the new one
    assert {d.metadata["retriever"] for d in docs} == {"embedding"}
    assert all("retrieval_score" in d.metadata and "source" in d.metadata for d in docs)


def test_retriever_from_a_path_and_an_llm_reranker_with_rationales(built_index):
    def judge(messages: list[dict]) -> str:  # a pointwise judge: the Seren passage is the relevant one
        prompt = messages[-1]["content"]
        if "Yes or No" in prompt:
            return "Yes" if "Seren" in prompt.split("Document:", 1)[-1] else "No"
        return "Rating: 9" if "Seren" in prompt.split("Document:", 1)[-1] else "Rating: 2"

    retriever = HoprankRetriever(
        index=str(built_index.path), config={"rerank": {"method": "pointwise"}}, llm=ScriptedLLM(judge), k=2
    )
    docs = retriever.invoke("Which river flows into the Grey Sound?")
    assert docs[0].metadata["doc_id"] == "seren.md"
    assert docs[0].metadata["retriever"] == "pointwise" and docs[0].metadata["rationale"]


async def test_retriever_in_an_lcel_chain_invoke_ainvoke_batch(built_index):
    retriever = HoprankRetriever(index=built_index, config=FAST, k=2)
    chain = retriever | RunnableLambda(format_docs) | RunnableLambda(lambda ctx: f"Context:\n{ctx}")
    out = chain.invoke(QUESTION)
    assert out.startswith("Context:\n[1] Seren River: # Seren River\nThe Seren River is 212 kilometres long")
    assert await chain.ainvoke(QUESTION) == out
    both = chain.batch([QUESTION, "Where was Ada Quill born?"])
    assert both[0] == out and "[1] Ada Quill:" in both[1]
    assert (await retriever.ainvoke("Where was Ada Quill born?"))[0].metadata["doc_id"] == "ada.md"


def test_retriever_rejects_bad_input_in_one_line(built_index):
    with pytest.raises(InvalidQueryError, match="empty"):
        HoprankRetriever(index=built_index, config=FAST).invoke("   ")
    with pytest.raises(HoprankError, match="needs index"):
        HoprankRetriever(config=FAST)


def test_agent_retriever_follows_the_index_when_documents_are_added(own_index):
    agent = _agent(own_index)
    retriever = agent.as_retriever(k=1)
    agent.add_documents([LCDocument(page_content="The Pell Lighthouse was kept by Mara Quist.", id="pell")])
    assert retriever.invoke("Who kept the Pell Lighthouse?")[0].metadata["doc_id"] == "pell"


# ---- LangChain Documents into the index ---------------------------------------------------------
def test_add_langchain_documents(own_index):
    agent = _agent(own_index)
    agent.add_documents(
        [
            LCDocument(
                page_content="Tern Island Light was first lit in 1888 by Edda Vossberg.",
                metadata={
                    "id": "tern",
                    "title": "Tern Island Light",
                    "source": "notes.pdf",
                    "added": dt.date(2024, 5, 1),
                },
            ),
            LCDocument(page_content="Gull Rock has forty seals.", metadata={"page": 3}),
        ]
    )
    tern = agent.index.chunk_by_id["tern#0"]
    assert tern.title == "Tern Island Light" and tern.source == "notes.pdf"
    assert tern.metadata["added"] == "2024-05-01"  # made JSON-safe
    gull = [c for c in agent.index.chunks if c.text.startswith("Gull Rock")]
    assert len(gull) == 1 and gull[0].doc_id.startswith("lc-") and gull[0].metadata["page"] == 3
    with pytest.raises(HoprankError, match="expected a LangChain Document"):
        agent.add_documents([{"text": "a dict is neither"}])


# ---- the agent as a Runnable ------------------------------------------------------------------
def test_runnable_invoke_batch_and_stream(built_index):
    runnable = _agent(built_index).as_runnable()
    assert isinstance(runnable, Runnable)
    a = runnable.invoke(QUESTION)
    assert isinstance(a, Answer) and a.status == "answered" and a.answer.startswith("The Seren River")
    assert [x.status for x in runnable.batch([QUESTION, {"question": "Where was Ada Quill born?"}])] == ["answered"] * 2
    chunks = list(runnable.stream(QUESTION))
    assert isinstance(chunks[-1], Answer) and chunks[-1].answer == a.answer
    steps = [c["node"] for c in chunks[:-1]]
    assert "search" in steps and "generate" in steps
    # piped: the next step gets the Answer whether the chain is invoked or streamed
    text = runnable | RunnableLambda(lambda ans: ans.answer.upper())
    assert text.invoke(QUESTION) == a.answer.upper()
    assert list(text.stream(QUESTION)) == [a.answer.upper()]


def test_runnable_tokens_and_bad_input(built_index):
    reply = "The Seren River is 212 kilometres long [1] and it flows into the Grey Sound [1]."
    runnable = _agent(built_index, reply).as_runnable(tokens=True)
    chunks = list(runnable.stream(QUESTION))
    tokens = "".join(c["text"] for c in chunks if isinstance(c, dict) and c.get("type") == "token")
    assert tokens.startswith("The Seren River is 212") and chunks[-1].answer.startswith(tokens)
    with pytest.raises(HoprankError, match="unknown input key"):
        runnable.invoke({"question": QUESTION, "qestion_typo": 1})
    with pytest.raises(HoprankError, match="question string"):
        runnable.invoke(42)


def test_runnable_threads_from_input_or_config(built_index):
    agent = _agent(built_index)
    runnable = agent.as_runnable()
    runnable.invoke({"question": QUESTION, "thread_id": "t-input"})
    runnable.invoke("Where was Ada Quill born?", config={"configurable": {"thread_id": "t-config"}})
    assert agent.history("t-input")[0] == {"role": "user", "content": QUESTION}
    assert agent.history("t-config")[0]["content"] == "Where was Ada Quill born?"


async def test_runnable_async_runs_the_graphs_own_astream(built_index, monkeypatch):
    agent = _agent(built_index)

    def no_sync(*a, **k):
        raise AssertionError("the async path must not run the sync stream")

    monkeypatch.setattr(agent, "stream", no_sync)
    monkeypatch.setattr(agent.graph, "stream", no_sync)
    runnable = agent.as_runnable()
    a = await runnable.ainvoke({"question": QUESTION, "thread_id": "async-1"})
    assert a.status == "answered" and a.thread_id == "async-1"
    answers = await runnable.abatch([QUESTION, "Where was Ada Quill born?"])
    assert [x.status for x in answers] == ["answered", "answered"]
    chunks = [c async for c in runnable.astream(QUESTION)]
    assert isinstance(chunks[-1], Answer) and any(c.get("node") == "generate" for c in chunks[:-1])
    assert (await agent.ahistory("async-1"))[1]["role"] == "assistant"


# ---- checkpointers and the graph ----------------------------------------------------------------
@pytest.mark.parametrize("strict", [False, True])
def test_any_langgraph_checkpointer_is_accepted(built_index, caplog, strict):
    # a plain saver as a LangGraph user passes it; strict: what LANGGRAPH_STRICT_MSGPACK=true (and,
    # LangGraph says, a future default) gives, where only allow-listed types are restored
    saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=None)) if strict else InMemorySaver()
    agent = _agent(built_index, checkpoint=saver)
    with caplog.at_level(logging.WARNING):
        agent.ask(QUESTION, thread_id="t1")
        second = agent.ask("And where does it flow?", thread_id="t1")  # restores hoprank records
    assert second.status != "failed", second.error
    assert len(agent.history("t1")) == 4
    if strict:
        assert not [r for r in caplog.records if "locked deserialization" in r.getMessage()]
    assert saver.get_tuple({"configurable": {"thread_id": "t1"}}) is not None  # the user's saver holds them
    with pytest.raises(TypeError, match="LangGraph checkpointer"):
        _agent(built_index, checkpoint=42)


async def test_sqlite_checkpoint_works_on_the_async_path(built_index, tmp_path):
    agent = _agent(built_index, checkpoint=tmp_path / "chat.sqlite")
    a = await agent.aask(QUESTION, thread_id="disk")
    assert a.status == "answered"
    again = _agent(built_index, checkpoint=tmp_path / "chat.sqlite")  # a restart: the sync path reads it
    assert again.history("disk")[0] == {"role": "user", "content": QUESTION}


def test_graph_is_public(built_index):
    agent = _agent(built_index)
    assert isinstance(agent.graph, CompiledStateGraph)
    a = agent.ask(QUESTION, thread_id="g")
    state = agent.graph.get_state({"configurable": {"thread_id": "g"}})
    assert state.values["answer"] == a.answer
