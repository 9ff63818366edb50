"""hoprank in LangChain's own protocols: a ``BaseRetriever`` over an index, the agent as a
``Runnable``, and the conversions between LangChain ``Document``s and hoprank's records.

Why adapters and not subclasses of the core types: ``Agent.stream(question, thread_id)``
and ``Index`` keep their own signatures (the CLI, the servers and the evals use them), and
LangChain's protocols fix other ones (``invoke(input, config)``, ``stream`` yielding output
chunks). The adapters are thin: retrieval is agent/app/retrieval.py (what :meth:`Agent.retrieve`
runs too), answering is :meth:`Agent.stream` / :meth:`Agent.astream` (the compiled graph's own ``stream``
and ``astream``), so nothing runs differently because it was called through LangChain.

    from hoprank.agent.app.langchain import HoprankRetriever
    retriever = HoprankRetriever(index="my-index", config="hoprank.yaml")
    chain = retriever | format_docs | prompt | model
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from hoprank.agent.app import retrieval
from hoprank.agent.config import Config, make_reranker_from_config
from hoprank.tools.errors import HoprankError
from hoprank.tools.ingest.index import Index
from hoprank.tools.types import Answer, Document, Hit

AgentInput = str | Mapping[str, Any]
# what Agent.stream accepts besides the question (a dict input may carry them)
_ASK_OPTIONS = ("thread_id", "history", "max_tokens")


# ---- records -------------------------------------------------------------------------------
def to_langchain(hit: Hit) -> LCDocument:
    """A retrieved (or reranked) passage as a LangChain Document: the chunk's text, and in
    ``metadata`` what a chain needs to cite and audit it (``chunk_id``, ``doc_id``, ``title``,
    ``score``, ``rank``, ``retriever``, the reranker's ``rationale`` when one wrote it, and the
    chunk's own metadata such as ``source`` and the retrieval score before reranking)."""
    meta: dict[str, Any] = {
        **hit.metadata,
        "chunk_id": hit.id,
        "doc_id": hit.doc_id,
        "title": hit.title,
        "score": float(hit.score),
        "rank": hit.rank,
        "retriever": hit.retriever,
    }
    if hit.rationale:
        meta["rationale"] = hit.rationale
    return LCDocument(id=hit.id, page_content=hit.text, metadata=meta)


def from_langchain(doc: LCDocument) -> Document:
    """A LangChain Document as a hoprank Document to index.

    ``page_content`` is the text; the id is the Document's ``id``, else ``metadata["id"]``,
    else a hash of the text (re-adding the same text replaces it instead of duplicating it);
    ``metadata["title"]`` and ``metadata["source"]`` become the title and source; the rest
    stays metadata, made JSON-safe (loaders put dates and paths there, and the index stores
    chunks as JSON)."""
    if not isinstance(doc, LCDocument):
        raise HoprankError(f"expected a LangChain Document, got {type(doc).__name__}")
    meta = dict(doc.metadata or {})
    doc_id = doc.id or meta.pop("id", None) or f"lc-{hashlib.sha1(doc.page_content.encode('utf-8')).hexdigest()[:12]}"
    title = meta.pop("title", "") or ""
    source = meta.pop("source", "") or "langchain"
    meta = json.loads(json.dumps(meta, default=str))
    return Document(id=str(doc_id), text=doc.page_content, title=str(title), source=str(source), metadata=meta)


# ---- retriever -----------------------------------------------------------------------------
class HoprankRetriever(BaseRetriever):
    """A LangChain retriever over a hoprank index: the configured retriever, the injection
    screen and the configured reranker, i.e. the passages the agent itself would read for a
    single-hop question (agent/app/retrieval.py), as ``Document``s (see :func:`to_langchain`).

    Build it from an index and a config (``HoprankRetriever(index="idx", config="hoprank.yaml")``;
    ``config`` may be a ``Config``, a dict, a file or None for the defaults; ``llm`` /
    ``reranker`` inject clients, otherwise the reranker, and the LLM of an LLM reranker, are
    built from the config on first use) or from an agent (``agent.as_retriever()``: the
    agent's clients, and its index even after documents are added). ``k``: how many
    documents to return (default: ``agent.evidence_k``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any = Field(default=None, exclude=True)
    config: Any = Field(default=None, exclude=True)
    k: int | None = Field(default=None, ge=1, le=1000)
    llm: Any = Field(default=None, exclude=True)
    reranker: Any = Field(default=None, exclude=True)
    agent: Any = Field(default=None, exclude=True)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _built: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _open(self) -> HoprankRetriever:
        if self.agent is not None:
            if not all(hasattr(self.agent, a) for a in ("config", "index", "reranker")):
                raise TypeError(f"agent must be a hoprank Agent, got {type(self.agent).__name__}")
            return self
        self.config = self.config if isinstance(self.config, Config) else Config.load(self.config)
        index = self.index if self.index is not None else self.config.index
        if index is None:
            raise HoprankError("HoprankRetriever needs index=PATH or Index (or agent=...)")
        self.index = index if isinstance(index, Index) else Index.open(index)
        return self

    def _reranker(self) -> Any:
        """The injected reranker, else one built from the config once (None for ``none``)."""
        if self.reranker is not None:
            return self.reranker
        with self._lock:
            if self._built is None:
                from hoprank.tools.llm import make_llm

                llm = self.llm if self.llm is not None else (lambda: make_llm(self.config.llm))
                self._built = make_reranker_from_config(self.config, self.index, llm=llm) or False
            return self._built or None

    def _source(self) -> tuple[Config, Index, retrieval.RerankerFactory]:
        """(config, index, reranker) to retrieve with: the agent's, read at each call (its
        index changes when documents are added), or this retriever's own."""
        if self.agent is not None:
            agent = self.agent
            return agent.config, agent.index, lambda: agent.reranker
        return self.config, self.index, self._reranker

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        return [to_langchain(h) for h in retrieval.retrieve(*self._source(), query, self.k)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[LCDocument]:
        return [to_langchain(h) for h in await retrieval.aretrieve(*self._source(), query, self.k)]


# ---- the agent as a Runnable -----------------------------------------------------------------
class AgentRunnable(Runnable[AgentInput, Answer]):
    """The agent in LCEL: ``invoke`` / ``ainvoke`` / ``batch`` / ``abatch`` return an
    :class:`Answer`; ``stream`` / ``astream`` yield the agent's events as they happen (``step``
    dicts, ``token`` dicts when ``tokens=True``) and then the :class:`Answer` itself, so the last
    chunk is what ``invoke`` returns and a step piped after this one receives the Answer
    whether the chain is invoked or streamed.

    Input: a question string, or ``{"question": ..., "thread_id": ..., "history": [...],
    "max_tokens": ...}``. A thread can also come from LangGraph's usual
    ``config={"configurable": {"thread_id": ...}}``. The async methods run the compiled
    graph's ``astream`` (LangGraph runs the synchronous nodes in its executor)."""

    def __init__(self, agent: Any, tokens: bool = False) -> None:  # a hoprank Agent
        self.agent = agent
        self.tokens = tokens

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return AgentInput

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        return Answer

    def _ask_args(self, input: AgentInput, config: RunnableConfig | None) -> tuple[str, dict[str, Any]]:
        """(question, options for Agent.stream) from the input and the run config."""
        thread = ((config or {}).get("configurable") or {}).get("thread_id")
        if isinstance(input, str):
            return input, {"thread_id": thread}
        if isinstance(input, Mapping) and isinstance(input.get("question"), str):
            extra = sorted(set(input) - {"question", *_ASK_OPTIONS})
            if extra:
                raise HoprankError(
                    f"unknown input key(s) {', '.join(extra)}; allowed: question, {', '.join(_ASK_OPTIONS)}"
                )
            options = {k: input[k] for k in _ASK_OPTIONS if input.get(k) is not None}
            options.setdefault("thread_id", thread)
            return input["question"], options
        raise HoprankError(f"input must be a question string or {{'question': str, ...}}, got {type(input).__name__}")

    def _events(self, input: AgentInput, config: RunnableConfig | None) -> Iterator[dict[str, Any] | Answer]:
        question, options = self._ask_args(input, config)
        for ev in self.agent.stream(question, tokens=self.tokens, **options):
            yield ev["answer"] if ev["type"] == "answer" else ev

    async def _aevents(
        self, input: AgentInput, config: RunnableConfig | None
    ) -> AsyncIterator[dict[str, Any] | Answer]:
        question, options = self._ask_args(input, config)
        async for ev in self.agent.astream(question, tokens=self.tokens, **options):
            yield ev["answer"] if ev["type"] == "answer" else ev

    # the four entry points; the callback plumbing (run trees, tracing) is LangChain's own
    def _transform(
        self, inputs: Iterator[AgentInput], run_manager: Any = None, config: RunnableConfig | None = None
    ) -> Iterator[dict[str, Any] | Answer]:
        for input in inputs:
            yield from self._events(input, config)

    async def _atransform(
        self, inputs: AsyncIterator[AgentInput], run_manager: Any = None, config: RunnableConfig | None = None
    ) -> AsyncIterator[dict[str, Any] | Answer]:
        async for input in inputs:
            async for ev in self._aevents(input, config):
                yield ev

    def stream(
        self, input: AgentInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[dict[str, Any] | Answer]:
        yield from self._transform_stream_with_config(iter([input]), self._transform, config, **kwargs)

    async def astream(
        self, input: AgentInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[dict[str, Any] | Answer]:
        async def one() -> AsyncIterator[AgentInput]:
            yield input

        async for ev in self._atransform_stream_with_config(one(), self._atransform, config, **kwargs):
            yield ev

    def invoke(self, input: AgentInput, config: RunnableConfig | None = None, **kwargs: Any) -> Answer:
        return _last_answer(self.stream(input, config, **kwargs))

    async def ainvoke(self, input: AgentInput, config: RunnableConfig | None = None, **kwargs: Any) -> Answer:
        answer = None
        async for ev in self.astream(input, config, **kwargs):
            answer = ev  # the last chunk is the Answer
        return _checked(answer)


def _last_answer(events: Iterator[Any]) -> Answer:
    answer = None
    for ev in events:
        answer = ev
    return _checked(answer)


def _checked(answer: Any) -> Answer:
    if not isinstance(answer, Answer):  # pragma: no cover - Agent.stream always ends with one
        raise HoprankError("the agent ended without an answer")
    return answer
