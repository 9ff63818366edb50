"""The public Python API: ``from hoprank import Agent``.

    agent = Agent.from_config("hoprank.yaml", index="my-index")
    result = agent.ask("In which town was the founder of Osric Dynamics born?")
    result.answer, result.citations, result.trace

Every question ends as an :class:`Answer` with a status (answered, not_found, partial,
failed); only invalid input (an empty question, say) raises, because that is the caller's
bug to fix, not a result to score.

LangChain: :meth:`Agent.as_runnable` (the agent in LCEL), :meth:`Agent.as_retriever` (a
``BaseRetriever``), :meth:`Agent.as_tool` (a tool for other agents); ``agent.graph`` is the
compiled LangGraph graph; any LangGraph checkpointer can be passed as ``checkpoint``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.errors import GraphRecursionError

from hoprank.agent.app import retrieval
from hoprank.agent.config import Config
from hoprank.agent.context import AgentContext, hit_brief
from hoprank.agent.graph import build_graph
from hoprank.agent.state import TurnInput
from hoprank.agent.tokens import ANSWER_MAX_TOKENS, STREAM_TOKENS
from hoprank.tools.errors import MAX_QUESTION_CHARS, HoprankError, InvalidQueryError, validate_query
from hoprank.tools.ingest.index import BuildStats, Index
from hoprank.tools.llm.base import ChatLLM
from hoprank.tools.types import Answer, Citation, Document, Hit, Usage

log = logging.getLogger(__name__)
MODES = ["updates", "custom"]  # node updates (the steps) and the answer's tokens

# types the checkpointer may restore (LangGraph blocks unregistered types)
_CHECKPOINT_TYPES = [
    ("hoprank.tools.types", "Hit"),
    ("hoprank.tools.types", "Citation"),
    ("hoprank.tools.types", "Chunk"),
]


def _serde() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=_CHECKPOINT_TYPES)


class _SqliteSaver(SqliteSaver):
    """LangGraph's SqliteSaver with its async methods running the sync ones in a worker thread.

    Why: one agent serves the sync paths (CLI, ``ask``) and the async ones (the server,
    ``ainvoke``, ``astream``: the compiled graph's ``astream`` calls the saver's ``a*``
    methods), but SqliteSaver implements only the sync methods (and AsyncSqliteSaver only the
    async ones, from its own loop). SqliteSaver serialises its connection with a lock, so a
    worker thread may use it."""

    async def aget_tuple(self, config: Any) -> Any:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: Any, *, filter: Any = None, before: Any = None, limit: Any = None) -> Any:
        rows = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for row in rows:
            yield row

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)


def make_checkpointer(checkpoint: str | Path | BaseCheckpointSaver | None) -> BaseCheckpointSaver:
    """None -> in memory; a path -> SQLite on disk (chat survives restarts); a LangGraph
    checkpointer (``InMemorySaver()``, a Postgres saver...) -> that saver, allowed to restore
    hoprank's records (a shallow clone sharing its storage; see ``with_allowlist``). The async
    methods (``aask``, ``astream``, the server) need a saver with async methods; every saver
    but LangGraph's plain ``SqliteSaver`` has them (pass a path for SQLite instead)."""
    if isinstance(checkpoint, BaseCheckpointSaver):
        return checkpoint.with_allowlist(_CHECKPOINT_TYPES)
    if checkpoint is None or str(checkpoint) == ":memory:":
        return InMemorySaver(serde=_serde())
    if not isinstance(checkpoint, (str, Path)):
        raise TypeError(
            f"checkpoint must be a path, ':memory:', None or a LangGraph checkpointer, got {type(checkpoint).__name__}"
        )
    Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(checkpoint), check_same_thread=False)
    return _SqliteSaver(conn, serde=_serde())


@dataclass
class _Turn:
    """One question's run, shared by :meth:`Agent.stream` and :meth:`Agent.astream`: the
    graph's input and config, and the translation of the graph's chunks into events, so the
    sync and the async path yield the same events and end the same way."""

    agent: Agent
    question: str
    thread_id: str
    config: dict[str, Any]
    t0: float = field(default_factory=time.perf_counter)

    def graph_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (self.agent._inputs(self.question), self.config), {
            "context": self.agent.context(),
            "stream_mode": MODES,
        }

    def events(self, mode: str, update: Any) -> Iterator[dict[str, Any]]:
        if mode == "custom":  # the answer's tokens (agent/tokens.py)
            yield update
            return
        for delta in update.values():
            if not isinstance(delta, dict):
                continue
            trace = delta.get("trace")  # the start node's Overwrite([]) is no step
            for entry in trace if isinstance(trace, list) else []:
                if isinstance(entry, dict) and "node" in entry:
                    yield {
                        "type": "step",
                        "node": entry["node"],
                        "summary": entry.get("summary", ""),
                        "data": entry.get("data", {}),
                        "elapsed_s": entry.get("elapsed_s", 0.0),
                    }

    def answer(self, state: Any) -> dict[str, Any]:
        values = state.values if state is not None else {}
        return {"type": "answer", "answer": self.agent._answer(self.question, self.thread_id, values, self._seconds())}

    def failed(self, e: Exception) -> dict[str, Any]:
        """The answer event for an exception; invalid input is the caller's bug and re-raised."""
        if isinstance(e, InvalidQueryError):
            raise e
        if isinstance(e, GraphRecursionError):  # pragma: no cover - budgets should prevent this
            error, partial = f"recursion limit: {e}", True
        else:  # every question ends answered or explicitly failed
            log.exception("question failed: %s", self.question[:200])
            error, partial = f"{type(e).__name__}: {e}", False
        return {
            "type": "answer",
            "answer": self.agent._failed(self.question, self.thread_id, error, self._seconds(), partial=partial),
        }

    def _seconds(self) -> float:
        return time.perf_counter() - self.t0


class Agent:
    def __init__(
        self,
        config: Config,
        index: Index,
        llm: ChatLLM | None = None,
        reranker: Any = None,
        checkpoint: str | Path | BaseCheckpointSaver | None = None,
    ):
        self.config = config
        self.index = index
        self._llm = llm
        self._reranker = reranker
        self._lock = threading.Lock()
        self.checkpointer = make_checkpointer(checkpoint)
        if config.agent.mode == "agentic":
            from hoprank.agent.agentic import build_agentic_graph

            graph = build_agentic_graph(checkpointer=self.checkpointer)
        else:
            graph = build_graph(verify=config.agent.verify, checkpointer=self.checkpointer)
        # the compiled LangGraph graph: run it with ``context=agent.context()`` (the clients)
        self.graph = graph

    @property
    def _graph(self) -> Any:
        """The former private name of :attr:`graph` (tests/test_server_agent.py and
        benchmarks/load_test.py still read it)."""
        return self.graph

    # ---- construction --------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: Config | dict | str | Path | None = None,
        index: str | Path | Index | None = None,
        llm: ChatLLM | None = None,
        reranker: Any = None,
        checkpoint: str | Path | BaseCheckpointSaver | None = None,
    ) -> Agent:
        cfg = config if isinstance(config, Config) else Config.load(config)
        if index is None:
            index = cfg.index
        if index is None:
            raise HoprankError("no index given: pass index=PATH or set 'index' in the config")
        idx = index if isinstance(index, Index) else Index.open(index)
        return cls(cfg, idx, llm=llm, reranker=reranker, checkpoint=checkpoint)

    # ---- lazily built clients --------------------------------------------------------
    @property
    def llm(self) -> ChatLLM:
        with self._lock:
            if self._llm is None:
                from hoprank.tools.llm import make_llm

                self._llm = make_llm(self.config.llm)
            return self._llm

    @property
    def reranker(self):
        method = self.config.rerank.method
        if method == "none":
            return None
        with self._lock:
            if self._reranker is None:
                from hoprank.agent.config import make_reranker_from_config
                from hoprank.tools.rerank import reranker_class

                llm = None
                if reranker_class(method).needs_llm:  # self.llm takes the lock itself
                    self._lock.release()
                    try:
                        llm = self.llm
                    finally:
                        self._lock.acquire()
                self._reranker = make_reranker_from_config(self.config, self.index, llm=llm)
            return self._reranker

    def context(self) -> AgentContext:
        """The graph's runtime context (settings, index, lazily built clients): what
        ``agent.graph.invoke(..., context=agent.context())`` needs."""
        return AgentContext(
            config=self.config, index=self.index, llm_factory=lambda: self.llm, reranker_factory=lambda: self.reranker
        )

    # ---- asking ----------------------------------------------------------------------
    def _inputs(self, question: str) -> TurnInput:
        """The graph's input: the question; the graph's start node begins the turn (agent/state.py)."""
        return {"question": question}

    def _run_config(self, thread_id: str, **options: Any) -> dict[str, Any]:
        # LangGraph's own limit only as a backstop: hoprank's budgets stop the graph first
        return {
            "configurable": {"thread_id": thread_id, **options},
            "recursion_limit": self.config.agent.max_steps * 3 + 50,
        }

    def _validate(self, question: str) -> str:
        return validate_query(question, max_chars=MAX_QUESTION_CHARS)

    def _turn(self, question: str, thread_id: str | None, tokens: bool, max_tokens: int | None) -> _Turn:
        tid = thread_id or uuid.uuid4().hex
        options = {STREAM_TOKENS: tokens, ANSWER_MAX_TOKENS: max_tokens}
        return _Turn(self, self._validate(question), tid, self._run_config(tid, **options))

    def stream(
        self,
        question: str,
        thread_id: str | None = None,
        *,
        history: Sequence[dict[str, Any]] | None = None,
        tokens: bool = False,
        max_tokens: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield a step event as each node finishes, then one answer (or error) event.

        ``history``: earlier user/assistant turns for a thread that holds none (a stateless
        client resends the conversation; see :meth:`seed_history`). ``tokens``: also yield
        ``{"type": "token", "text": ...}`` as the answer is written (agent/tokens.py).
        ``max_tokens``: a cap on the answer's length for this question."""
        turn = self._turn(question, thread_id, tokens, max_tokens)
        try:
            if history:
                self.seed_history(turn.thread_id, history)
            args, kwargs = turn.graph_args()
            for mode, update in self.graph.stream(*args, **kwargs):
                yield from turn.events(mode, update)
            yield turn.answer(self.graph.get_state(turn.config))
        except Exception as e:
            yield turn.failed(e)

    async def astream(
        self,
        question: str,
        thread_id: str | None = None,
        *,
        history: Sequence[dict[str, Any]] | None = None,
        tokens: bool = False,
        max_tokens: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Async version of :meth:`stream`, on the compiled graph's own ``astream`` (LangGraph
        runs the synchronous nodes in its executor). Closing the iterator or cancelling the
        task that reads it (a client that went away) stops the graph at the next node instead
        of running the remaining LLM calls for nobody."""
        turn = self._turn(question, thread_id, tokens, max_tokens)
        try:
            if history:
                await self.aseed_history(turn.thread_id, history)
            args, kwargs = turn.graph_args()
            async for mode, update in self.graph.astream(*args, **kwargs):
                for ev in turn.events(mode, update):
                    yield ev
            yield turn.answer(await self.graph.aget_state(turn.config))
        except Exception as e:
            yield turn.failed(e)

    def ask(self, question: str, thread_id: str | None = None, **options: Any) -> Answer:
        """The answer to one question (see :meth:`stream` for ``options``)."""
        return _answer_of(self.stream(question, thread_id, **options))

    async def aask(self, question: str, thread_id: str | None = None, **options: Any) -> Answer:
        """Async ask; cancelling the awaiting task stops the graph at the next node."""
        return _answer_of([ev async for ev in self.astream(question, thread_id, **options) if ev["type"] == "answer"])

    def history(self, thread_id: str) -> list[dict[str, str]]:
        """The chat turns kept for a thread (user and assistant messages, oldest first)."""
        return _turns_of(self.graph.get_state(self._run_config(thread_id)))

    async def ahistory(self, thread_id: str) -> list[dict[str, str]]:
        """Async :meth:`history` (through the checkpointer's async methods)."""
        return _turns_of(await self.graph.aget_state(self._run_config(thread_id)))

    def seed_history(self, thread_id: str, turns: Sequence[dict[str, Any]]) -> bool:
        """Start a thread from earlier turns, as if they had been asked here.

        Why: OpenAI-style clients are stateless and resend the whole conversation, so a fresh
        server (or any server that did not answer those turns) must take the follow-up's
        history from them. Only user and assistant messages with text count. A thread that
        already holds turns keeps its own (the checkpoint is what this agent answered), and
        the agentic graph keeps no history. Returns whether the thread was seeded."""
        kept = _kept_turns(turns)
        if not kept or "history" not in self.graph.channels or self.history(thread_id):
            return False
        # written by the last node, so the thread looks like one whose previous turn ended
        self.graph.update_state(self._run_config(thread_id), {"history": kept}, as_node="finalize")
        return True

    async def aseed_history(self, thread_id: str, turns: Sequence[dict[str, Any]]) -> bool:
        """Async :meth:`seed_history`."""
        kept = _kept_turns(turns)
        if not kept or "history" not in self.graph.channels or await self.ahistory(thread_id):
            return False
        await self.graph.aupdate_state(self._run_config(thread_id), {"history": kept}, as_node="finalize")
        return True

    # ---- retrieval without an answer ------------------------------------------------
    def retrieve(self, query: str, k: int | None = None) -> list[Hit]:
        """The passages the agent would read for a single-hop question, without answering
        (agent/app/retrieval.py): what ``agent.as_retriever()`` returns."""
        return retrieval.retrieve(self.config, self.index, lambda: self.reranker, query, k)

    async def aretrieve(self, query: str, k: int | None = None) -> list[Hit]:
        """Async :meth:`retrieve`."""
        return await retrieval.aretrieve(self.config, self.index, lambda: self.reranker, query, k)

    # ---- results ---------------------------------------------------------------------
    def _answer(self, q: str, tid: str, s: dict[str, Any], seconds: float) -> Answer:
        steps = [e for e in (s.get("trace") or []) if isinstance(e, dict) and "node" in e]
        # the generator read the first evidence_k; up to 10 are returned so recall@10 can be audited
        evidence: list[Hit] = (s.get("ranked") or [])[: max(self.config.agent.evidence_k, 10)]
        trace = {
            "mode": self.config.agent.mode,
            "qtype": s.get("qtype"),
            "standalone": s.get("standalone"),
            "subqueries": s.get("subqueries") or [],
            "decomposer": s.get("decomposer"),
            "queries": s.get("asked") or [],
            "evidence_k": self.config.agent.evidence_k,
            "hops": s.get("hop", 0),
            "stop_reason": s.get("stop_reason"),
            "steps": steps,
            "n_steps": s.get("steps", 0),
            "usage": _sum_usage(steps),
            "seconds": round(seconds, 3),
        }
        citations: list[Citation] = s.get("citations") or []
        return Answer(
            question=q,
            answer=s.get("answer", ""),
            citations=citations,
            evidence=evidence,
            status=s.get("status") or "failed",
            thread_id=tid,
            trace=trace,
        )

    def _failed(self, q: str, tid: str, error: str, seconds: float, partial: bool = False) -> Answer:
        return Answer(
            question=q,
            answer="",
            status="partial" if partial else "failed",
            error=error,
            thread_id=tid,
            trace={"steps": [], "usage": {}, "seconds": round(seconds, 3)},
        )

    # ---- documents ---------------------------------------------------------------------
    def add_documents(self, documents: Sequence[Any]) -> BuildStats:
        """Add or replace documents in the index (incremental: only new chunks embedded).

        Takes hoprank :class:`Document` records or LangChain ``Document``s (``page_content``
        is the text; id, title and source come from ``id`` / ``metadata``, see
        :func:`hoprank.agent.app.langchain.from_langchain`), so a LangChain loader's output
        can be added as it is."""
        docs = list(documents)
        if any(not isinstance(d, Document) for d in docs):
            from hoprank.agent.app.langchain import from_langchain

            docs = [d if isinstance(d, Document) else from_langchain(d) for d in docs]
        with self._lock:
            for r in self.index._retrievers.values():
                getattr(r, "close", lambda: None)()
            idx, stats = Index.build(self.index.path, documents=docs)
            self.index = idx
            return stats

    # ---- LangChain -------------------------------------------------------------------------
    def as_runnable(self, tokens: bool = False) -> Any:
        """The agent as a LangChain ``Runnable`` (``invoke``/``ainvoke``/``batch``/``abatch``
        -> :class:`Answer`; ``stream``/``astream`` -> events, then the Answer). ``tokens``:
        also stream the answer's tokens. See :class:`~hoprank.agent.app.langchain.AgentRunnable`."""
        from hoprank.agent.app.langchain import AgentRunnable

        return AgentRunnable(self, tokens=tokens)

    def as_retriever(self, k: int | None = None) -> Any:
        """A LangChain ``BaseRetriever`` over this agent's index, with its retriever, reranker
        and clients (:meth:`retrieve`); it follows the index when documents are added."""
        from hoprank.agent.app.langchain import HoprankRetriever

        return HoprankRetriever(agent=self, k=k)

    # ---- tool for other agents -----------------------------------------------------------
    def as_tool(self, name: str = "hoprank_ask", description: str | None = None):
        """A LangChain tool, so any LangChain/LangGraph agent can ask hoprank.

        Why failures come back as tool errors and not as exceptions or empty text: an
        exception from a tool kills the caller's graph (``create_react_agent``), and ``''``
        with a success status lets the caller's model believe the documents hold nothing.
        A bad question or a failed answer (an unreachable LLM, say) is a ``ToolException``,
        which LangChain turns into a ToolMessage with ``status="error"`` and a message the
        calling model can read and act on.

        The citations travel as the ToolMessage's ``artifact`` (``response_format=
        "content_and_artifact"``): a list of ``{marker, chunk_id, title, text, score,
        supported}`` dicts the calling application can show, while its model reads only the
        text. The async path (``ainvoke``) runs :meth:`aask`."""
        from langchain_core.tools import StructuredTool, ToolException

        def render(a: Answer) -> tuple[str, list[dict[str, Any]]]:
            if a.status == "failed":
                raise ToolException(f"hoprank could not answer: {a.error or 'unknown error'}")
            refs = "\n".join(f"[{c.marker}] {c.title or c.chunk_id}" for c in a.citations)
            text = a.answer or "(no answer)"
            if a.status != "answered":
                why = (a.trace or {}).get("stop_reason")
                text += f"\n\nStatus: {a.status}" + (f" ({why})" if why else "")
            artifact = [asdict(c) for c in a.citations]
            return (f"{text}\n\nSources:\n{refs}" if refs else text), artifact

        def ask_documents(question: str) -> tuple[str, list[dict[str, Any]]]:
            try:
                return render(self.ask(question))
            except HoprankError as e:  # e.g. an empty question: the caller's model can rephrase
                raise ToolException(f"hoprank rejected the question: {e}") from e

        async def aask_documents(question: str) -> tuple[str, list[dict[str, Any]]]:
            try:
                return render(await self.aask(question))
            except HoprankError as e:
                raise ToolException(f"hoprank rejected the question: {e}") from e

        return StructuredTool.from_function(
            func=ask_documents,
            coroutine=aask_documents,
            name=name,
            description=description
            or "Answer a question from the indexed documents, with cited sources. Input: a full question.",
            handle_tool_error=True,
            response_format="content_and_artifact",
        )


def _answer_of(events: Any) -> Answer:
    answer = None
    for ev in events:
        if ev["type"] == "answer":
            answer = ev["answer"]
    if answer is None:  # pragma: no cover - stream() always ends with an answer event
        raise HoprankError("the agent ended without an answer")
    return answer


def _turns_of(state: Any) -> list[dict[str, str]]:
    return list((state.values or {}).get("history") or []) if state else []


def _kept_turns(turns: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The user and assistant messages with text (system prompts and tool calls are not chat turns)."""
    return [
        {"role": t["role"], "content": t["content"]}
        for t in turns
        if t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str) and t["content"].strip()
    ]


def _sum_usage(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer's LLM usage: the sum of its steps' :class:`Usage` (calls and tokens include
    cache replays; ``cached_calls`` says how many), plus ``tokens`` for the readers that use it."""
    total = sum((Usage.from_dict(s.get("llm")) for s in steps), Usage())
    return total.to_dict() | {"tokens": total.tokens}


def answer_summary(a: Answer) -> dict[str, Any]:
    """The JSON object ``hoprank ask --json`` prints."""
    return {
        "question": a.question,
        "answer": a.answer,
        "status": a.status,
        "error": a.error,
        "thread_id": a.thread_id,
        "citations": [
            {"marker": c.marker, "chunk_id": c.chunk_id, "title": c.title, "supported": c.supported}
            for c in a.citations
        ],
        "evidence": [hit_brief(h) for h in a.evidence],
        "trace": {k: v for k, v in a.trace.items() if k != "steps"}
        | {
            "steps": [
                {"node": s["node"], "summary": s.get("summary"), "elapsed_s": s.get("elapsed_s")}
                for s in a.trace.get("steps", [])
            ]
        },
    }
