"""The chat interface every hoprank component talks to.

Contract (kept stable for rerankers, the agent, the evals and the server):

* ``llm.chat(messages, max_tokens=None, temperature=None, stop=None, json_schema=None,
  logprobs=None) -> LLMResponse`` and ``await llm.achat(...)`` with the same arguments.
* ``llm.chat_many(list_of_messages, **kw) -> list[LLMResponse]``: many calls with bounded
  concurrency, results in input order (rerank batches, eval runs).
* ``llm.structured(messages, schema, default, **kw) -> (model_instance, LLMResponse|None)``:
  JSON-schema output validated with pydantic; one repair attempt; on failure returns
  ``default`` so callers always get a usable value from a weak model.
* ``llm.usage``: a :class:`UsageMeter` whose ``snapshot()`` is a :class:`~hoprank.tools.types.Usage`:
  calls and prompt/completion tokens (cache hits included, and counted apart as
  ``cached_calls`` / ``cached_tokens``), for the trace, budgets and the benchmarks.

Backends subclass :class:`ChatLLM` and implement ``_complete`` (one uncached call), and
optionally ``_acomplete`` (a native async call). Everything a backend should not have to
repeat lives here, in ``chat``: the persistent cache, retries with exponential backoff and
jitter on transient errors only, and the final :class:`LLMError` that says what failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Self, TypeVar

from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from hoprank.tools.errors import LLMError
from hoprank.tools.types import Usage

if TYPE_CHECKING:  # pragma: no cover
    from hoprank.tools.llm.cache import ResponseCache

Messages = list[dict[str, Any]]
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
    # native tool calls (OpenAI-compatible servers): [{"id", "name", "arguments": dict}]
    tool_calls: list[dict[str, Any]] | None = None
    # things the caller should know, e.g. that the prompt was truncated to fit the context
    warnings: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        """What the cache stores: everything but the per-call facts (cached, latency)."""
        d = asdict(self)
        d.pop("cached", None)
        d.pop("latency_s", None)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_record(cls, record: dict[str, Any], **overrides: Any) -> LLMResponse:
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        known["warnings"] = tuple(known.get("warnings") or ())
        known.update(overrides)
        return cls(**known)


def usage_of(*responses: LLMResponse | None) -> Usage:
    """LLM accounting of some responses, the same whether each came from an endpoint or the cache.

    Why: a budget or an eval's cost that counted only paid calls would change with the
    cache's state (a warm cache let the same question hop further; a resumed eval reported
    fewer calls than an uninterrupted one). So ``calls``, ``prompt_tokens`` and
    ``completion_tokens`` count all the work the answer needed, and ``cached_calls`` /
    ``cached_tokens`` say how much of it the cache replayed (paid = calls - cached_calls);
    ``seconds`` is the latency of the paid ones. ``None`` entries (a call that never
    happened) are skipped."""
    done = [r for r in responses if r is not None]
    cached = [r for r in done if r.cached]
    return Usage(
        calls=len(done),
        prompt_tokens=sum(int(r.prompt_tokens or 0) for r in done),
        completion_tokens=sum(int(r.completion_tokens or 0) for r in done),
        cached_calls=len(cached),
        cached_tokens=sum(int(r.prompt_tokens or 0) + int(r.completion_tokens or 0) for r in cached),
        seconds=sum(float(r.latency_s or 0.0) for r in done if not r.cached),
    )


class UsageMeter:
    """Running totals, held as one :class:`~hoprank.tools.types.Usage`: a client's
    (``llm.usage``) or one rerank call's. Thread-safe because rerankers and eval runs call
    concurrently; ``snapshot()`` hands out the frozen total, and reading a field
    (``llm.usage.calls``, ``.paid_calls``) reads it from the current total."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = Usage()

    def add_usage(self, u: Usage) -> None:
        with self._lock:
            self._total = self._total + u

    def add(self, r: LLMResponse | None) -> None:
        """Count one response (paid or replayed from the cache); ``None`` is no call."""
        self.add_usage(usage_of(r))

    def add_retry(self) -> None:
        self.add_usage(Usage(retries=1))

    def add_failure(self) -> None:
        self.add_usage(Usage(failures=1))

    def snapshot(self) -> Usage:
        with self._lock:
            return self._total

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.snapshot(), name)

    def __repr__(self) -> str:
        return f"UsageMeter({self.snapshot()!r})"


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


# ---- error classification ------------------------------------------------------------


class TransientLLMError(LLMError):
    """A failure worth retrying (5xx, 429, timeout, dropped connection). Backends raise it
    (or let such errors through) and :meth:`ChatLLM.chat` retries; everything else is final."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


_TRANSIENT_NAMES = {
    "APITimeoutError",
    "APIConnectionError",
    "ReadTimeout",
    "ConnectTimeout",
    "RemoteProtocolError",
    "ConnectError",
}


def status_of(exc: BaseException) -> int | None:
    """The HTTP status carried by an exception from openai/httpx, if any."""
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Retry only what can succeed on a second try: never a 4xx (a bad request stays bad)."""
    if isinstance(exc, TransientLLMError):
        return True
    if isinstance(exc, LLMError):
        return False
    status = status_of(exc)
    if status is not None:
        return status in (408, 429) or status >= 500
    if isinstance(exc, (TimeoutError, ConnectionError, FuturesTimeout)):
        return True
    return any(c.__name__ in _TRANSIENT_NAMES for c in type(exc).__mro__)


def _retry_after(exc: BaseException) -> float | None:
    ra = getattr(exc, "retry_after", None)
    if ra is None:
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        try:
            ra = float(headers.get("retry-after")) if headers.get("retry-after") else None
        except (TypeError, ValueError):
            ra = None
    return ra


def root_cause(exc: BaseException) -> BaseException:
    """The innermost cause: openai's "Connection error." hides httpx's "Connection refused"."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


def describe_error(exc: BaseException) -> str:
    status = status_of(exc)
    prefix = f"HTTP {status} " if status else ""
    msg = str(exc).strip().replace("\n", " ")
    text = f"{prefix}{type(exc).__name__}: {msg[:500]}"
    root = root_cause(exc)
    # an HTTP status says it all; otherwise the root cause names what happened ("refused")
    if status is None and root is not exc and str(root).strip() and str(root).strip() not in msg:
        text += f" ({type(root).__name__}: {str(root).strip().replace(chr(10), ' ')[:300]})"
    return text


def is_empty_reply(r: LLMResponse) -> bool:
    """No text, no tool call and no log-probabilities: nothing a caller can use."""
    return not (r.text or "").strip() and not r.tool_calls and not r.logprobs


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise LLMError(
            "messages must be a non-empty list of {'role', 'content'} dicts, "
            f"got {type(messages).__name__} {str(messages)[:80]!r}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise LLMError(f"message {i} must be a dict with 'role' and 'content', got {str(m)[:80]!r}")
        c = m.get("content")
        if c is not None and not isinstance(c, str):
            raise LLMError(f"message {i} ({m['role']}): content must be a string, got {type(c).__name__}")


# call options that cannot change the output, so they stay out of the cache key
_NOT_IN_CACHE_KEY = frozenset({"timeout_s"})


# ---- the base class ------------------------------------------------------------------


class ChatLLM:
    """Base class: caching, retries and accounting wrap ``_complete`` of a backend."""

    model_name: str = "unknown"
    backend_name: str = "base"
    max_concurrency: int = 4
    # an in-process engine (a lock or the engine's own batching serialises calls): one call at a time, whatever
    # the config's concurrency says - more threads would only wait
    serial: bool = False
    supports_tools: bool = False  # native tool calling (``tools=`` param, ``tool_calls`` out)
    # reliability knobs (``configure`` sets them from an LLMConfig)
    max_retries: int = 0
    timeout_s: float | None = None
    backoff_s: float = 0.5  # first retry waits about this long, doubling each time
    backoff_max_s: float = 20.0
    cache: ResponseCache | None = None

    def __init__(self) -> None:
        self.usage = UsageMeter()
        self.defaults: dict[str, Any] = {}
        if self.serial:
            self.max_concurrency = 1

    def configure(self, cfg: Any) -> Self:
        """Take retries, timeout, concurrency and cache from an ``LLMConfig``."""
        from hoprank.tools.llm.cache import ResponseCache

        self.max_retries = int(cfg.max_retries)
        self.timeout_s = float(cfg.timeout_s)
        self.max_concurrency = 1 if self.serial else int(cfg.concurrency)
        self.cache = ResponseCache(cfg.cache_dir) if cfg.cache else None
        return self

    # ---- backend hooks -------------------------------------------------------------
    def _complete(self, messages: Messages, **params: Any) -> LLMResponse:  # pragma: no cover
        raise NotImplementedError

    # A backend with a native async client overrides this; the default runs _complete
    # in a worker thread.
    _acomplete: Callable[..., Any] | None = None

    def _effective_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Backend defaults (from the config) overlaid with the call's non-None params:
        the exact generation parameters, used both for the call and for the cache key."""
        out = dict(self.defaults)
        out.update({k: v for k, v in params.items() if v is not None})
        return out

    def _cache_key(self, messages: Messages, params: dict[str, Any]) -> str:
        from hoprank.tools.llm.cache import cache_key

        keyed = {k: v for k, v in params.items() if k not in _NOT_IN_CACHE_KEY}
        return cache_key(self.backend_name, self.model_name, messages, keyed)

    def _cache_get(self, key: str | None) -> LLMResponse | None:
        if key is None or self.cache is None:
            return None
        rec = self.cache.get(key)
        return LLMResponse.from_record(rec, cached=True, latency_s=0.0) if rec else None

    def _cache_put(self, key: str | None, r: LLMResponse) -> None:
        # an empty reply is often a one-off (an overloaded server, a cut stream): caching it
        # would replay it on every rerun, and --retry-failed could never reach the endpoint
        if key is not None and self.cache is not None and not is_empty_reply(r):
            self.cache.put(key, r.to_record())

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        delay = min(self.backoff_max_s, self.backoff_s * (2**attempt))
        delay *= 0.5 + random.random() / 2  # jitter: concurrent callers do not retry in lockstep
        ra = _retry_after(exc)
        if ra is not None:
            delay = max(delay, min(ra, self.backoff_max_s))
        return delay

    def _fail(self, attempts: int, exc: BaseException) -> LLMError:
        self.usage.add_failure()
        what = f"{self.backend_name} model {self.model_name!r}"
        if is_transient(exc):
            return LLMError(
                f"LLM call to {what} failed after {attempts} attempt(s) (max_retries={self.max_retries}): "
                f"{describe_error(exc)}"
            )
        if isinstance(exc, LLMError):
            return exc
        return LLMError(f"LLM call to {what} failed (not retried, the error is not transient): {describe_error(exc)}")

    # ---- public API ----------------------------------------------------------------
    def _lookup(
        self, messages: Messages, params: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None, LLMResponse | None]:
        """Validate, resolve the effective parameters and look in the cache (shared by
        chat and achat, which differ only in how they wait)."""
        _check_messages(messages)
        eff = self._effective_params(params)
        key = self._cache_key(messages, eff) if self.cache is not None else None
        hit = self._cache_get(key)
        if hit is not None:
            self.usage.add(hit)
        return eff, key, hit

    def _retrying(self, kind: type[Retrying] | type[AsyncRetrying] = Retrying) -> Any:
        """The retry policy as a tenacity controller (sync or async): only transient errors
        (:func:`is_transient`: never a 4xx) are retried, at most ``max_retries`` times, each
        wait from :meth:`_backoff` (exponential with jitter, at least a Retry-After) and each
        retry counted in ``usage.retries``. The last error is re-raised as is, for :meth:`_fail`."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            return self._backoff(state.attempt_number - 1, exc) if exc is not None else 0.0

        return kind(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait,
            before_sleep=lambda _state: self.usage.add_retry(),
            reraise=True,
        )

    def _retry_or_raise(self, attempt: int, exc: Exception) -> float:
        """Seconds to wait before the next attempt; raises when the error is final. The same
        policy as :meth:`_retrying`, for a loop tenacity cannot drive (a stream, which must not
        be retried once its first delta reached the caller)."""
        if not is_transient(exc) or attempt >= self.max_retries:
            raise self._fail(attempt + 1, exc) from exc
        self.usage.add_retry()
        return self._backoff(attempt, exc)

    def _record(self, key: str | None, r: LLMResponse, t0: float) -> LLMResponse:
        if not r.latency_s:
            r = replace(r, latency_s=time.perf_counter() - t0)
        self._cache_put(key, r)
        self.usage.add(r)
        return r

    def chat(self, messages: Messages, **params: Any) -> LLMResponse:
        eff, key, hit = self._lookup(messages, params)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        retrying = self._retrying()
        try:
            r = retrying(self._complete, messages, **eff)
        except Exception as e:  # classified: retried above, or final: a clear LLMError
            raise self._fail(int(retrying.statistics.get("attempt_number", 1)), e) from e
        return self._record(key, r, t0)

    async def achat(self, messages: Messages, **params: Any) -> LLMResponse:
        if self._acomplete is None:
            return await asyncio.to_thread(self.chat, messages, **params)
        eff, key, hit = self._lookup(messages, params)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        retrying = self._retrying(AsyncRetrying)
        try:
            r = await retrying(self._acomplete, messages, **eff)
        except Exception as e:
            raise self._fail(int(retrying.statistics.get("attempt_number", 1)), e) from e
        return self._record(key, r, t0)

    # ---- streaming -----------------------------------------------------------------
    def _stream_complete(self, messages: Messages, **params: Any) -> Iterator[str | LLMResponse]:
        """Backend hook: text deltas as the model produces them, then the whole reply as an
        LLMResponse (text, usage, finish reason). This default has no native streaming: the
        reply arrives as one delta, so every backend can be streamed from."""
        r = self._complete(messages, **params)
        if r.text:
            yield r.text
        yield r

    def stream(self, messages: Messages, **params: Any) -> Iterator[str | LLMResponse]:
        """Like :meth:`chat`, but yield the reply's text deltas as they arrive, then its
        :class:`LLMResponse` (the usage record; its text is the deltas joined).

        Why the same cache, accounting and error policy as ``chat``: a streamed answer is the
        same request, so a cached reply is replayed as one delta and a streamed reply is
        cached for later ``chat`` calls. Transient errors are retried only before the first
        delta: after that the caller has shown text that a second attempt could contradict."""
        eff, key, hit = self._lookup(messages, params)
        if hit is not None:
            if hit.text:
                yield hit.text
            yield hit
            return
        t0 = time.perf_counter()
        attempt = 0
        while True:
            started, final = False, None
            try:
                with contextlib.closing(self._stream_complete(messages, **eff)) as items:
                    for item in items:
                        if isinstance(item, LLMResponse):
                            final = item
                        else:
                            started = True
                            yield item
                if final is None:
                    raise TransientLLMError("the stream ended without a final response")
            except Exception as e:
                if started:
                    raise self._fail(attempt + 1, e) from e
                time.sleep(self._retry_or_raise(attempt, e))
                attempt += 1
                continue
            yield self._record(key, final, t0)
            return

    def chat_many(self, batch: Sequence[Messages], *, return_exceptions: bool = False, **params: Any) -> list[Any]:
        """Results in input order. With ``return_exceptions=True`` a failed call yields its
        LLMError in place, so one bad prompt does not lose a whole rerank batch."""

        def one(m: Messages) -> Any:
            if not return_exceptions:
                return self.chat(m, **params)
            try:
                return self.chat(m, **params)
            except Exception as e:  # handed back to the caller, by request
                return e

        if len(batch) <= 1 or self.max_concurrency <= 1:
            return [one(m) for m in batch]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(batch))) as ex:
            return list(ex.map(one, batch))

    async def achat_many(
        self, batch: Sequence[Messages], *, return_exceptions: bool = False, **params: Any
    ) -> list[Any]:
        sem = asyncio.Semaphore(max(1, self.max_concurrency))

        async def one(m: Messages) -> LLMResponse:
            async with sem:
                return await self.achat(m, **params)

        return list(await asyncio.gather(*(one(m) for m in batch), return_exceptions=return_exceptions))

    def structured(
        self, messages: Messages, schema: type[T], default: T | None = None, **params: Any
    ) -> tuple[T | None, LLMResponse | None]:
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
                        {
                            "role": "user",
                            "content": f"That was not valid JSON for the schema ({str(e)[:300]}). "
                            "Reply with only the JSON object.",
                        },
                    ]
        return default, last


def parse_openai_logprobs(block: Any) -> list[dict[str, Any]] | None:
    """OpenAI-style ``choice.logprobs`` (dict or SDK object) -> our per-token list."""
    if block is None:
        return None
    content = block.get("content") if isinstance(block, dict) else getattr(block, "content", None)
    if not content:
        return None
    out: list[dict[str, Any]] = []
    for item in content:
        get = item.get if isinstance(item, dict) else lambda k, _i=item: getattr(_i, k, None)
        top: dict[str, float] = {}
        for t in get("top_logprobs") or []:
            tg = t.get if isinstance(t, dict) else lambda k, _t=t: getattr(_t, k, None)
            tok = tg("token")
            if tok is not None and tg("logprob") is not None:
                top[str(tok)] = float(tg("logprob"))
        lp = get("logprob")
        out.append(
            {"token": str(get("token") or ""), "logprob": float(lp) if lp is not None else float("-inf"), "top": top}
        )
    return out


class ScriptedLLM(ChatLLM):
    """A deterministic fake for unit tests of parsing and routing (never for end-to-end).

    ``script`` is a list of replies used in order (cycling on the last one), or a function
    ``(messages) -> str`` that can look at the prompt to decide."""

    model_name = "scripted"
    backend_name = "scripted"

    def __init__(self, script: Sequence[str] | Callable[[Messages], str], max_concurrency: int = 1):
        super().__init__()
        self.script = script
        self.max_concurrency = max_concurrency
        self.calls: list[Messages] = []
        self.params: list[dict[str, Any]] = []
        self._i = 0
        self._lock = threading.Lock()

    def _complete(self, messages: Messages, **params: Any) -> LLMResponse:
        with self._lock:
            self.calls.append(messages)
            self.params.append(params)
            if callable(self.script):
                text = self.script(messages)
            else:
                text = self.script[min(self._i, len(self.script) - 1)] if self.script else ""
                self._i += 1
        prompt_tokens = sum(len((m.get("content") or "").split()) for m in messages)
        return LLMResponse(
            text=text, prompt_tokens=prompt_tokens, completion_tokens=len(text.split()), model=self.model_name
        )

    def _stream_complete(self, messages: Messages, **params: Any) -> Iterator[str | LLMResponse]:
        """Streams word by word, as a real model streams tokens."""
        r = self._complete(messages, **params)
        yield from re.findall(r"\s*\S+|\s+$", r.text)
        yield r
