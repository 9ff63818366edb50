"""The chat interface every hoprank component talks to.

Contract (kept stable for rerankers, the agent, the evals and the server):

* ``llm.chat(messages, max_tokens=None, temperature=None, stop=None, json_schema=None,
  logprobs=None) -> LLMResponse`` and ``await llm.achat(...)`` with the same arguments.
* ``llm.chat_many(list_of_messages, **kw) -> list[LLMResponse]``: many calls with bounded
  concurrency, results in input order (rerank batches, eval runs).
* ``llm.structured(messages, schema, default, **kw) -> (model_instance, LLMResponse|None)``:
  JSON-schema output validated with pydantic; one repair attempt; on failure returns
  ``default`` so callers always get a usable value from a weak model.
* ``llm.usage``: calls, prompt/completion tokens, cache hits, for the trace and the benchmarks.

Backends subclass :class:`ChatLLM` and implement ``_complete`` (one uncached call).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Messages = list[dict[str, str]]
T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class LLMResponse:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    cached: bool = False
    latency_s: float = 0.0
    # per generated token: {"token": str, "logprob": float, "top": {token: logprob}}
    logprobs: list[dict[str, Any]] | None = None
    finish_reason: str | None = None


@dataclass
class Usage:
    """Running totals; thread-safe because rerankers and eval runs call concurrently."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, r: LLMResponse) -> None:
        with self._lock:
            if r.cached:
                self.cache_hits += 1
            else:
                self.calls += 1
                self.prompt_tokens += r.prompt_tokens
                self.completion_tokens += r.completion_tokens
                self.seconds += r.latency_s

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {
                "calls": self.calls,
                "cache_hits": self.cache_hits,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "seconds": round(self.seconds, 3),
            }

    @staticmethod
    def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
        return {k: round(after[k] - before.get(k, 0), 3) for k in after}


_JSON_BLOCK = re.compile(r"\{.*\}|\[.*\]", re.DOTALL)


def extract_json(text: str) -> Any:
    """Best-effort JSON from model text: fenced blocks, leading prose, trailing junk."""
    if not text:
        raise ValueError("empty output")
    cleaned = re.sub(r"```(?:json)?", "", text).strip()
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError:
        pass
    m = _JSON_BLOCK.search(cleaned)
    if not m:
        raise ValueError("no JSON object in output")
    candidate = m.group(0)
    # shrink from the right until it parses (handles trailing prose after the object)
    for end in range(len(candidate), 0, -1):
        if candidate[end - 1] in "}]":
            try:
                return json.loads(candidate[:end])
            except json.JSONDecodeError:
                continue
    raise ValueError("no parseable JSON in output")


class ChatLLM:
    """Base class: caching, retries and accounting wrap ``_complete`` of a backend."""

    model_name: str = "unknown"
    max_concurrency: int = 4

    def __init__(self) -> None:
        self.usage = Usage()

    # ---- backend hook --------------------------------------------------------------
    def _complete(self, messages: Messages, **params: Any) -> LLMResponse:  # pragma: no cover
        raise NotImplementedError

    # ---- public API ----------------------------------------------------------------
    def chat(self, messages: Messages, **params: Any) -> LLMResponse:
        t0 = time.perf_counter()
        r = self._complete(messages, **params)
        if not r.latency_s and not r.cached:
            r = LLMResponse(**{**r.__dict__, "latency_s": time.perf_counter() - t0})
        self.usage.add(r)
        return r

    async def achat(self, messages: Messages, **params: Any) -> LLMResponse:
        return await asyncio.to_thread(self.chat, messages, **params)

    def chat_many(self, batch: Sequence[Messages], **params: Any) -> list[LLMResponse]:
        if len(batch) <= 1 or self.max_concurrency <= 1:
            return [self.chat(m, **params) for m in batch]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(batch))) as ex:
            return list(ex.map(lambda m: self.chat(m, **params), batch))

    async def achat_many(self, batch: Sequence[Messages], **params: Any) -> list[LLMResponse]:
        sem = asyncio.Semaphore(max(1, self.max_concurrency))

        async def one(m: Messages) -> LLMResponse:
            async with sem:
                return await self.achat(m, **params)

        return list(await asyncio.gather(*(one(m) for m in batch)))

    def structured(self, messages: Messages, schema: type[T], default: T | None = None, **params: Any) -> tuple[T | None, LLMResponse | None]:
        """Ask for JSON matching ``schema``; validate; one repair attempt; else ``default``."""
        js = schema.model_json_schema()
        last: LLMResponse | None = None
        msgs = list(messages)
        for attempt in range(2):
            try:
                last = self.chat(msgs, json_schema=js, **params)
            except Exception:  # an LLM failure must not take the caller down
                return default, last
            try:
                return schema.model_validate(extract_json(last.text)), last
            except (ValueError, ValidationError) as e:
                if attempt == 0:
                    msgs = msgs + [
                        {"role": "assistant", "content": last.text[:2000]},
                        {"role": "user", "content": f"That was not valid JSON for the schema ({str(e)[:300]}). Reply with only the JSON object."},
                    ]
        return default, last


class ScriptedLLM(ChatLLM):
    """A deterministic fake for unit tests of parsing and routing (never for end-to-end).

    ``script`` is a list of replies used in order (cycling on the last one), or a function
    ``(messages) -> str`` that can look at the prompt to decide."""

    model_name = "scripted"

    def __init__(self, script: Sequence[str] | Callable[[Messages], str], max_concurrency: int = 1):
        super().__init__()
        self.script = script
        self.max_concurrency = max_concurrency
        self.calls: list[Messages] = []
        self._i = 0
        self._lock = threading.Lock()

    def _complete(self, messages: Messages, **params: Any) -> LLMResponse:
        with self._lock:
            self.calls.append(messages)
            if callable(self.script):
                text = self.script(messages)
            else:
                text = self.script[min(self._i, len(self.script) - 1)] if self.script else ""
                self._i += 1
        prompt_tokens = sum(len(m.get("content", "").split()) for m in messages)
        return LLMResponse(text=text, prompt_tokens=prompt_tokens, completion_tokens=len(text.split()), model=self.model_name)
