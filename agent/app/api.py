"""The public Python API: ``from hoprank import Agent``.

    agent = Agent.from_config("hoprank.yaml", index="my-index")
    result = agent.ask("In which town was the founder of Osric Dynamics born?")
    result.answer, result.citations, result.trace

Every question ends as an :class:`Answer` with a status (answered, not_found, partial,
failed); only invalid input (an empty question, say) raises, because that is the caller's
bug to fix, not a result to score.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.errors import GraphRecursionError

from hoprank.agent.config import Config
from hoprank.agent.context import AgentContext, hit_brief
from hoprank.agent.graph import build_graph
from hoprank.agent.state import RESET
from hoprank.agent.tokens import ANSWER_MAX_TOKENS, STREAM_TOKENS
from hoprank.tools.errors import MAX_QUESTION_CHARS, HoprankError, InvalidQueryError, validate_query
from hoprank.tools.ingest.index import Index
from hoprank.tools.llm.base import ChatLLM
from hoprank.tools.types import Answer, Citation, Document, Hit

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


def make_checkpointer(checkpoint: str | Path | None):
    """None -> in memory; a path -> SQLite on disk (chat survives restarts)."""
    if checkpoint is None or str(checkpoint) == ":memory:":
        return InMemorySaver(serde=_serde())
    from langgraph.checkpoint.sqlite import SqliteSaver

    Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(checkpoint), check_same_thread=False)
    return SqliteSaver(conn, serde=_serde())


class Agent:
    def __init__(
        self,
        config: Config,
        index: Index,
        llm: ChatLLM | None = None,
        reranker: Any = None,
        checkpoint: str | Path | None = None,
    ):
        self.config = config
        self.index = index
        self._llm = llm
        self._reranker = reranker
        self._lock = threading.Lock()
        self._checkpointer = make_checkpointer(checkpoint)
        if config.agent.mode == "agentic":
            from hoprank.agent.agentic import build_agentic_graph, make_tools

            self._graph = build_agentic_graph(make_tools(lambda: self.index), checkpointer=self._checkpointer)
        else:
            self._graph = build_graph(verify=config.agent.verify, checkpointer=self._checkpointer)

    # ---- construction --------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: Config | dict | str | Path | None = None,
        index: str | Path | Index | None = None,
        llm: ChatLLM | None = None,
        reranker: Any = None,
        checkpoint: str | Path | None = None,
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

    def _context(self) -> AgentContext:
        return AgentContext(
            config=self.config, index=self.index, llm_factory=lambda: self.llm, reranker_factory=lambda: self.reranker
        )

    # ---- asking ----------------------------------------------------------------------
    def _inputs(self, question: str) -> dict[str, Any]:
        if self.config.agent.mode == "agentic":
            from langchain_core.messages import RemoveMessage
            from langgraph.graph.message import REMOVE_ALL_MESSAGES

            return {
                "question": question,
                "messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES)],
                "evidence": RESET,
                "ranked": [],
                "steps": -1,
                "tokens": -1,
                "stop_reason": None,
                "answer": "",
                "citations": [],
                "status": "answered",
                "trace": RESET,
            }
        return {
            "question": question,
            "standalone": question,
            "qtype": "single-hop",
            "subqueries": [],
            "pending": [],
            "asked": RESET,
            "hits_by_query": {"__reset__": True},
            "pool": [],
            "ranked": [],
            "hop": 0,
            "steps": -1,
            "tokens": -1,
            "sufficient": False,
            "stop_reason": None,
            "answer": "",
            "citations": [],
            "status": "answered",
            "trace": RESET,
        }

    def _run_config(self, thread_id: str, **options: Any) -> dict[str, Any]:
        # LangGraph's own limit only as a backstop: hoprank's budgets stop the graph first
        return {
            "configurable": {"thread_id": thread_id, **options},
            "recursion_limit": self.config.agent.max_steps * 3 + 50,
        }

    def _validate(self, question: str) -> str:
        return validate_query(question, max_chars=MAX_QUESTION_CHARS)

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
        q = self._validate(question)
        tid = thread_id or uuid.uuid4().hex
        t0 = time.perf_counter()
        final: dict[str, Any] = {}
        options = {STREAM_TOKENS: tokens, ANSWER_MAX_TOKENS: max_tokens}
        try:
            if history:
                self.seed_history(tid, history)
            for mode, update in self._graph.stream(
                self._inputs(q), self._run_config(tid, **options), context=self._context(), stream_mode=MODES
            ):
                if mode == "custom":
                    yield update
                    continue
                for delta in update.values():
                    if not isinstance(delta, dict):
                        continue
                    for entry in delta.get("trace") or []:
                        if isinstance(entry, dict) and "node" in entry:
                            yield {
                                "type": "step",
                                "node": entry["node"],
                                "summary": entry.get("summary", ""),
                                "data": entry.get("data", {}),
                                "elapsed_s": entry.get("elapsed_s", 0.0),
                            }
            final = self._graph.get_state(self._run_config(tid)).values
            yield {"type": "answer", "answer": self._answer(q, tid, final, time.perf_counter() - t0)}
        except InvalidQueryError:
            raise
        except GraphRecursionError as e:  # pragma: no cover - budgets should prevent this
            yield {
                "type": "answer",
                "answer": self._failed(q, tid, f"recursion limit: {e}", time.perf_counter() - t0, partial=True),
            }
        except Exception as e:  # every question ends answered or explicitly failed
            log.exception("question failed: %s", q[:200])
            yield {
                "type": "answer",
                "answer": self._failed(q, tid, f"{type(e).__name__}: {e}", time.perf_counter() - t0),
            }

    def ask(self, question: str, thread_id: str | None = None, **options: Any) -> Answer:
        ans = None
        for ev in self.stream(question, thread_id, **options):
            if ev["type"] == "answer":
                ans = ev["answer"]
        assert ans is not None
        return ans

    async def aask(self, question: str, thread_id: str | None = None, **options: Any) -> Answer:
        """Async ask; cancelling the awaiting task stops the graph at the next node."""
        async for ev in self.astream(question, thread_id, **options):
            if ev["type"] == "answer":
                return ev["answer"]
        raise HoprankError("the agent ended without an answer")  # pragma: no cover

    async def astream(
        self, question: str, thread_id: str | None = None, **options: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Async version of :meth:`stream` (the graph runs in a worker thread)."""
        q = self._validate(question)
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        done = object()

        cancel = threading.Event()

        def put(item: object) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            gen = self.stream(q, thread_id, **options)
            try:
                for ev in gen:
                    if cancel.is_set():
                        break
                    put(ev)
            except Exception as e:  # pragma: no cover - stream() already turns errors into events
                put({"type": "error", "error": str(e)})
            finally:
                gen.close()
                put(done)

        task = loop.run_in_executor(None, run)
        try:
            while True:
                ev = await queue.get()
                if ev is done:
                    break
                yield ev
        finally:
            # the consumer went away (client disconnect, cancellation): stop the graph at
            # the next node boundary instead of running the remaining LLM calls for nobody
            cancel.set()
        await task

    def history(self, thread_id: str) -> list[dict[str, str]]:
        """The chat turns kept for a thread (user and assistant messages, oldest first)."""
        state = self._graph.get_state(self._run_config(thread_id))
        return list((state.values or {}).get("history") or []) if state else []

    def seed_history(self, thread_id: str, turns: Sequence[dict[str, Any]]) -> bool:
        """Start a thread from earlier turns, as if they had been asked here.

        Why: OpenAI-style clients are stateless and resend the whole conversation, so a fresh
        server (or any server that did not answer those turns) must take the follow-up's
        history from them. Only user and assistant messages with text count. A thread that
        already holds turns keeps its own (the checkpoint is what this agent answered), and
        the agentic graph keeps no history. Returns whether the thread was seeded."""
        kept = [
            {"role": t["role"], "content": t["content"]}
            for t in turns
            if t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str) and t["content"].strip()
        ]
        if not kept or "history" not in self._graph.channels or self.history(thread_id):
            return False
        # written by the last node, so the thread looks like one whose previous turn ended
        self._graph.update_state(self._run_config(thread_id), {"history": kept}, as_node="finalize")
        return True

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
    def add_documents(self, documents: Sequence[Document]):
        """Add or replace documents in the index (incremental: only new chunks embedded)."""
        with self._lock:
            for r in self.index._retrievers.values():
                getattr(r, "close", lambda: None)()
            idx, stats = Index.build(self.index.path, documents=list(documents))
            self.index = idx
            return stats

    # ---- tool for other agents -----------------------------------------------------------
    def as_tool(self, name: str = "hoprank_ask", description: str | None = None):
        """A LangChain tool, so any LangChain/LangGraph agent can ask hoprank.

        Why failures come back as tool errors and not as exceptions or empty text: an
        exception from a tool kills the caller's graph (``create_react_agent``), and ``''``
        with a success status lets the caller's model believe the documents hold nothing.
        A bad question or a failed answer (an unreachable LLM, say) is a ``ToolException``,
        which LangChain turns into a ToolMessage with ``status="error"`` and a message the
        calling model can read and act on."""
        from langchain_core.tools import StructuredTool, ToolException

        def render(a: Answer) -> str:
            if a.status == "failed":
                raise ToolException(f"hoprank could not answer: {a.error or 'unknown error'}")
            refs = "\n".join(f"[{c.marker}] {c.title or c.chunk_id}" for c in a.citations)
            text = a.answer or "(no answer)"
            if a.status != "answered":
                why = (a.trace or {}).get("stop_reason")
                text += f"\n\nStatus: {a.status}" + (f" ({why})" if why else "")
            return f"{text}\n\nSources:\n{refs}" if refs else text

        def ask_documents(question: str) -> str:
            try:
                return render(self.ask(question))
            except HoprankError as e:  # e.g. an empty question: the caller's model can rephrase
                raise ToolException(f"hoprank rejected the question: {e}") from e

        async def aask_documents(question: str) -> str:
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
        )


def _sum_usage(steps: list[dict[str, Any]]) -> dict[str, int]:
    """The answer's LLM usage; calls and tokens include cache hits (see ``usage_of``)."""
    u = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_calls": 0, "cached_tokens": 0}
    for s in steps:
        for k in u:
            u[k] += int((s.get("llm") or {}).get(k, 0) or 0)
    u["tokens"] = u["prompt_tokens"] + u["completion_tokens"]
    return u


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
