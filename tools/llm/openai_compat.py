"""Any OpenAI-compatible chat endpoint: vLLM (``vllm serve MODEL``), OpenAI, a llama.cpp
server, LM Studio, Ollama's /v1.

The SDK's own retries are switched off (``max_retries=0``) so that one policy decides,
the one in :class:`ChatLLM` (transient errors only, bounded, with jitter). Local servers
need no key: a placeholder is sent when none is configured, because the SDK insists.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from hoprank.tools.errors import LLMError, MissingExtraError
from hoprank.tools.llm.base import (
    ChatLLM,
    LLMResponse,
    Messages,
    TransientLLMError,
    describe_error,
    is_transient,
    parse_openai_logprobs,
    status_of,
)

PLACEHOLDER_API_KEY = "sk-no-key-required"
# how to ask for JSON, most precise first; a server that answers 400/422 to one gets the next
_JSON_MODES = ("json_schema", "json_object_schema", "json_object", "none")


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as e:  # pragma: no cover - core dependency
        raise MissingExtraError("the openai package is needed for llm.backend=openai: pip install openai") from e
    return openai


class OpenAICompatLLM(ChatLLM):
    """Chat completions over HTTP with sync and native async clients."""

    backend_name = "openai"
    supports_tools = True

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
    ):
        super().__init__()
        self.openai = _import_openai()
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY
        self.timeout_s = timeout_s
        self._model = model
        self.model_name = model or "(server default)"
        self.defaults = {"max_tokens": max_tokens, "temperature": temperature}
        if seed is not None:
            self.defaults["seed"] = seed
        self._client = self.openai.OpenAI(
            base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=timeout_s
        )
        self._aclients: dict[int, Any] = {}
        self._json_mode = 0  # index into _JSON_MODES, advanced when a server rejects one
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any) -> OpenAICompatLLM:
        llm = cls(
            cfg.model,
            cfg.base_url,
            cfg.api_key,
            timeout_s=cfg.timeout_s,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            seed=cfg.seed,
        )
        return llm.configure(cfg)  # type: ignore[return-value]

    # ---- model discovery -----------------------------------------------------------
    def _resolve_model(self) -> str:
        """A local server serves one model: when none is configured, ask it which."""
        if self._model:
            return self._model
        with self._lock:
            if not self._model:
                where = self.base_url or "the endpoint"
                try:
                    models = [m.id for m in self._client.models.list().data]
                except Exception as e:
                    if is_transient(e):  # refused, timed out, 5xx: the endpoint is the problem
                        raise LLMError(
                            f"cannot reach the LLM endpoint {where}: {describe_error(e)}; start the server "
                            "or fix llm.base_url / OPENAI_BASE_URL"
                        ) from e
                    raise LLMError(
                        f"llm.model is not set and {where} did not list its models ({describe_error(e)}); "
                        "set llm.model or HOPRANK_LLM_MODEL"
                    ) from e
                if not models:
                    raise LLMError(
                        f"llm.model is not set and {self.base_url} serves no model; set llm.model or HOPRANK_LLM_MODEL"
                    )
                self._model = models[0]
                self.model_name = self._model
        return self._model

    def _cache_key(self, messages: Messages, params: dict[str, Any]) -> str:
        self._resolve_model()  # the key must name the real model, not a placeholder
        return super()._cache_key(messages, params)

    # ---- request / response translation ---------------------------------------------
    def _request(self, messages: Messages, params: dict[str, Any], json_mode: str) -> dict[str, Any]:
        req: dict[str, Any] = {"model": self._resolve_model(), "messages": messages}
        for k in ("max_tokens", "temperature", "seed", "top_p"):
            if k in params:
                req[k] = params[k]
        if params.get("stop"):
            req["stop"] = params["stop"]
        if params.get("logprobs"):
            req["logprobs"] = True
            req["top_logprobs"] = int(params.get("top_logprobs") or 5)
        if params.get("tools"):
            req["tools"] = params["tools"]
            if params.get("tool_choice"):
                req["tool_choice"] = params["tool_choice"]
        schema = params.get("json_schema")
        if schema and json_mode == "json_schema":
            req["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": str(schema.get("title") or "response")[:64], "schema": schema},
            }
        elif schema and json_mode == "json_object_schema":  # llama.cpp server's dialect
            req["response_format"] = {"type": "json_object", "schema": schema}
        elif schema and json_mode == "json_object":
            req["response_format"] = {"type": "json_object"}
        req["timeout"] = float(params.get("timeout_s") or self.timeout_s or 120.0)
        return req

    def _parse(self, resp: Any, t0: float) -> LLMResponse:
        """A chat completion -> LLMResponse. The SDK does not validate bodies, so a 200 whose
        JSON has another shape (a proxy's error page, ``choices: ["text"]``) arrives as loose
        objects: any shape error is a transient failure (retried, bounded), never an
        AttributeError that fails the question with a riddle."""
        try:
            return self._parse_shape(resp, t0)
        except TransientLLMError:
            raise
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
            snippet = resp if isinstance(resp, str) else repr(resp)
            raise TransientLLMError(
                f"the endpoint answered 200 with a body that is not a chat completion "
                f"({type(e).__name__}: {e}): {str(snippet)[:200]!r}"
            ) from e

    def _parse_shape(self, resp: Any, t0: float) -> LLMResponse:
        choices = getattr(resp, "choices", None)
        if not choices or not isinstance(choices, list):
            snippet = resp if isinstance(resp, str) else repr(resp)
            raise TransientLLMError(
                f"the endpoint returned no completion (a non-JSON or empty body?): {str(snippet)[:200]!r}"
            )
        choice = choices[0]
        msg = choice.message
        content = msg.content
        if content is not None and not isinstance(content, str):
            raise TypeError(f"message.content is a {type(content).__name__}, not a string")
        calls = None
        if getattr(msg, "tool_calls", None):
            calls = []
            for tc in msg.tool_calls:
                fn = tc.function
                try:
                    args = json.loads(fn.arguments or "{}")
                except json.JSONDecodeError:
                    args = {"_raw": fn.arguments}
                calls.append(
                    {"id": tc.id, "name": fn.name, "arguments": args if isinstance(args, dict) else {"value": args}}
                )
        usage = getattr(resp, "usage", None)
        return LLMResponse(
            text=content or "",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            model=getattr(resp, "model", None) or self.model_name,
            latency_s=time.perf_counter() - t0,
            logprobs=parse_openai_logprobs(getattr(choice, "logprobs", None)),
            finish_reason=getattr(choice, "finish_reason", None),
            tool_calls=calls,
        )

    def _rejects_format(self, e: Exception, params: dict[str, Any], mode: int) -> bool:
        return bool(params.get("json_schema")) and status_of(e) in (400, 422) and mode < len(_JSON_MODES) - 1

    def _raise_garbage(self, e: Exception) -> None:
        # a 200 whose body is not JSON: the SDK cannot decode it; a flaky proxy, so retry
        if isinstance(e, (json.JSONDecodeError, self.openai.APIResponseValidationError)):
            raise TransientLLMError(f"the endpoint returned a body that is not a chat completion: {e}") from e

    # ---- one call ------------------------------------------------------------------
    def _next_json_mode(self, exc: Exception, params: dict[str, Any], mode: int) -> int:
        """The next, simpler JSON mode when the server rejected this one (remembered for
        later calls); any other error is re-raised (garbage bodies as transient)."""
        if self._rejects_format(exc, params, mode):
            self._json_mode = max(self._json_mode, mode + 1)
            return mode + 1
        self._raise_garbage(exc)
        raise exc

    def _complete(self, messages: Messages, **params: Any) -> LLMResponse:
        mode = self._json_mode
        while True:
            t0 = time.perf_counter()
            try:
                resp = self._client.chat.completions.create(**self._request(messages, params, _JSON_MODES[mode]))
            except Exception as e:
                mode = self._next_json_mode(e, params, mode)
                continue
            return self._parse(resp, t0)

    def _aclient(self) -> Any:
        # an AsyncOpenAI client is bound to the event loop it first ran on
        loop = asyncio.get_running_loop()
        client = self._aclients.get(id(loop))
        if client is None:
            client = self.openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout_s
            )
            self._aclients = {id(loop): client}
        return client

    async def _acomplete(self, messages: Messages, **params: Any) -> LLMResponse:
        if not self._model:
            await asyncio.to_thread(self._resolve_model)
        mode = self._json_mode
        while True:
            t0 = time.perf_counter()
            try:
                resp = await self._aclient().chat.completions.create(
                    **self._request(messages, params, _JSON_MODES[mode])
                )
            except Exception as e:
                mode = self._next_json_mode(e, params, mode)
                continue
            return self._parse(resp, t0)

    def _stream_complete(self, messages: Messages, **params: Any) -> Iterator[str | LLMResponse]:
        """``stream=True`` with ``stream_options.include_usage``: content deltas as the server
        sends them, then the usage of the final chunk (a server that ignores the option
        reports no tokens). Tool calls and log-probabilities need the whole reply, so such a
        call is made unstreamed and arrives as one delta."""
        if params.get("tools") or params.get("logprobs"):
            yield from super()._stream_complete(messages, **params)
            return
        mode = self._json_mode
        while True:
            t0 = time.perf_counter()
            request = self._request(messages, params, _JSON_MODES[mode])
            try:
                chunks = self._client.chat.completions.create(
                    **request, stream=True, stream_options={"include_usage": True}
                )
            except Exception as e:
                mode = self._next_json_mode(e, params, mode)
                continue
            break
        parts: list[str] = []
        usage, finish, model = None, None, None
        with chunks:
            for chunk in chunks:
                usage = getattr(chunk, "usage", None) or usage
                model = getattr(chunk, "model", None) or model
                for choice in getattr(chunk, "choices", None) or []:
                    text = getattr(choice.delta, "content", None) if choice.delta else None
                    if text:
                        parts.append(text)
                        yield text
                    finish = choice.finish_reason or finish
        yield LLMResponse(
            text="".join(parts),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            model=model or self.model_name,
            latency_s=time.perf_counter() - t0,
            finish_reason=finish,
        )
