"""OpenAICompatLLM against a real local HTTP server speaking /v1/chat/completions.

The server is a threading http.server on 127.0.0.1 with a random port; each test queues
the behaviour of the next requests (500, 400, hang, garbage, ok ...) and then checks what
the server saw: how many requests, which headers, the most requests in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

from hoprank.agent.config import LLMConfig
from hoprank.tools.errors import LLMError
from hoprank.tools.llm import make_llm
from hoprank.tools.llm.openai_compat import PLACEHOLDER_API_KEY, OpenAICompatLLM


def completion(
    text: str = "hello", tool_calls: list[dict[str, Any]] | None = None, logprobs: Any = None
) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "message": msg, "finish_reason": "stop", "logprobs": logprobs}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }


class FakeServer:
    """Behaviours, consumed one per request (then ``default``): ("ok", body), ("status",
    code), ("hang", seconds), ("garbage", None), ("slow", seconds)."""

    def __init__(self) -> None:
        self.plan: deque[tuple[str, Any]] = deque()
        self.default: tuple[str, Any] = ("ok", completion())
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:
                if self.path.endswith("/models"):
                    self._send(
                        200,
                        json.dumps(
                            {
                                "object": "list",
                                "data": [{"id": "served-model", "object": "model", "created": 0, "owned_by": "me"}],
                            }
                        ).encode(),
                    )
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    kind, arg = server.plan.popleft() if server.plan else server.default
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    if kind == "json_schema_rejected":
                        fmt = (body.get("response_format") or {}).get("type")
                        if fmt == "json_schema":
                            self._send(
                                400,
                                json.dumps(
                                    {"error": {"message": "response_format json_schema is not supported"}}
                                ).encode(),
                            )
                        else:
                            self._send(200, json.dumps(arg).encode())
                    elif kind == "status":
                        self._send(
                            arg, json.dumps({"error": {"message": f"fake error {arg}", "type": "fake"}}).encode()
                        )
                    elif kind == "hang":
                        server.release.wait(arg)
                        self._send(200, json.dumps(completion("too late")).encode())
                    elif kind == "garbage":
                        self._send(200, b"<html>502 bad gateway, honest</html>")
                    elif kind == "slow":
                        time.sleep(arg)
                        self._send(200, json.dumps(completion("slow ok")).encode())
                    else:
                        self._send(200, json.dumps(arg).encode())
                finally:
                    with server.lock:
                        server.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_ambient_openai_env(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HOPRANK_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)


def make(server: FakeServer, tmp_path, **over: Any) -> OpenAICompatLLM:
    cfg = LLMConfig(
        **{
            "backend": "openai",
            "base_url": server.url,
            "model": "fake-model",
            "cache": False,
            "max_retries": 3,
            "timeout_s": 5.0,
            **over,
        }
    )
    if cfg.cache and cfg.cache_dir is None:
        cfg = cfg.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    llm = make_llm(cfg)
    assert isinstance(llm, OpenAICompatLLM)
    llm.backoff_s = 0.01  # keep the retry tests fast; the backoff maths is tested in test_llm.py
    return llm


MSG = [{"role": "user", "content": "hi"}]


def test_500_twice_then_success_is_retried(server, tmp_path):
    server.plan.extend([("status", 500), ("status", 503)])
    llm = make(server, tmp_path)
    r = llm.chat(MSG)
    assert r.text == "hello" and r.prompt_tokens == 7 and r.completion_tokens == 2
    assert len(server.requests) == 3
    assert llm.usage.retries == 2 and llm.usage.calls == 1 and llm.usage.failures == 0


def test_400_is_not_retried_and_says_why(server, tmp_path):
    server.plan.append(("status", 400))
    llm = make(server, tmp_path)
    with pytest.raises(LLMError) as ei:
        llm.chat(MSG)
    assert len(server.requests) == 1
    assert "400" in str(ei.value) and "not retried" in str(ei.value)
    assert llm.usage.failures == 1


def test_429_is_retried(server, tmp_path):
    server.plan.append(("status", 429))
    llm = make(server, tmp_path)
    assert llm.chat(MSG).text == "hello"
    assert len(server.requests) == 2


def test_hang_longer_than_timeout_is_retried_then_fails(server, tmp_path):
    server.default = ("hang", 10)
    llm = make(server, tmp_path, timeout_s=0.3, max_retries=1)
    with pytest.raises(LLMError) as ei:
        llm.chat(MSG)
    assert len(server.requests) == 2  # the first try and one retry
    assert "after 2 attempt(s)" in str(ei.value) and "Timeout" in str(ei.value)


def test_garbage_body_gives_clear_error_after_retries(server, tmp_path):
    server.default = ("garbage", None)
    llm = make(server, tmp_path, max_retries=1)
    with pytest.raises(LLMError) as ei:
        llm.chat(MSG)
    assert len(server.requests) == 2
    assert "not a chat completion" in str(ei.value)


def test_cache_hit_on_repeat_costs_no_request(server, tmp_path):
    llm = make(server, tmp_path, cache=True)
    first = llm.chat(MSG, max_tokens=8)
    second = llm.chat(MSG, max_tokens=8)
    assert not first.cached and second.cached and second.text == first.text
    assert len(server.requests) == 1
    assert llm.usage.paid_calls == 1 and llm.usage.cached_calls == 1 and llm.usage.calls == 2
    # a different generation parameter is a different request
    llm.chat(MSG, max_tokens=9)
    assert len(server.requests) == 2
    # persistent: a fresh client on the same cache folder pays nothing
    again = make(server, tmp_path, cache=True)
    assert again.chat(MSG, max_tokens=8).cached
    assert len(server.requests) == 2


def test_failed_call_is_never_cached(server, tmp_path):
    server.plan.append(("status", 400))
    llm = make(server, tmp_path, cache=True)
    with pytest.raises(LLMError):
        llm.chat(MSG)
    r = llm.chat(MSG)
    assert not r.cached and r.text == "hello"
    assert len(server.requests) == 2


class Pick(BaseModel):
    answer: str
    confidence: float


def test_structured_repairs_bad_json(server, tmp_path):
    server.plan.extend(
        [("ok", completion("sure! {answer: Paris")), ("ok", completion('{"answer": "Paris", "confidence": 0.9}'))]
    )
    llm = make(server, tmp_path)
    value, resp = llm.structured(MSG, Pick, default=Pick(answer="?", confidence=0))
    assert value == Pick(answer="Paris", confidence=0.9)
    assert len(server.requests) == 2
    fmt = server.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["title"] == "Pick"
    # the repair turn shows the model its bad output
    assert server.requests[1]["messages"][-2]["content"].startswith("sure!")


def test_json_schema_rejected_falls_back_to_json_object(server, tmp_path):
    server.default = ("json_schema_rejected", completion('{"answer": "x", "confidence": 1}'))
    llm = make(server, tmp_path)
    value, _ = llm.structured(MSG, Pick)
    assert value is not None and value.answer == "x"
    assert [r["response_format"]["type"] for r in server.requests] == ["json_schema", "json_object"]
    llm.structured(MSG, Pick)  # the client remembers what this server accepts
    assert server.requests[-1]["response_format"]["type"] == "json_object"
    assert len(server.requests) == 3


def test_concurrency_bound_is_honoured(server, tmp_path):
    server.default = ("slow", 0.15)
    llm = make(server, tmp_path, concurrency=3)
    out = llm.chat_many([[{"role": "user", "content": f"q{i}"}] for i in range(9)])
    assert [r.text for r in out] == ["slow ok"] * 9
    assert len(server.requests) == 9
    assert 1 < server.max_inflight <= 3


async def test_async_concurrency_bound_and_retry(server, tmp_path):
    server.plan.append(("status", 502))
    llm = make(server, tmp_path, concurrency=2)
    out = await llm.achat_many([[{"role": "user", "content": f"q{i}"}] for i in range(5)])
    assert all(r.text == "hello" for r in out)
    assert len(server.requests) == 6 and server.max_inflight <= 2
    assert llm.usage.retries == 1


async def test_async_400_is_not_retried(server, tmp_path):
    server.plan.append(("status", 404))
    llm = make(server, tmp_path)
    with pytest.raises(LLMError, match="404"):
        await llm.achat(MSG)
    assert len(server.requests) == 1


def test_chat_many_return_exceptions_keeps_the_batch(server, tmp_path):
    server.plan.append(("status", 400))
    llm = make(server, tmp_path, concurrency=1)
    out = llm.chat_many([MSG, [{"role": "user", "content": "second"}]], return_exceptions=True)
    assert isinstance(out[0], LLMError) and out[1].text == "hello"


def test_no_key_needed_for_local_servers(server, tmp_path):
    make(server, tmp_path).chat(MSG)
    assert {k.lower(): v for k, v in server.headers[-1].items()}["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"
    make(server, tmp_path, api_key="sk-real").chat(MSG)
    assert {k.lower(): v for k, v in server.headers[-1].items()}["authorization"] == "Bearer sk-real"


def test_model_is_discovered_from_the_server(server, tmp_path):
    llm = make(server, tmp_path, model=None)
    llm.chat(MSG)
    assert server.requests[-1]["model"] == "served-model"


def test_env_vars_point_hoprank_at_a_server(server, tmp_path, monkeypatch):
    from hoprank.agent.config import Config

    cfg = Config.load(
        env={"OPENAI_BASE_URL": server.url, "HOPRANK_LLM_MODEL": "env-model", "HOPRANK_LLM__CACHE": "false"}
    )
    llm = make_llm(cfg.llm)
    assert isinstance(llm, OpenAICompatLLM)
    llm.chat(MSG)
    assert server.requests[-1]["model"] == "env-model"


def test_generation_params_and_tools_are_sent(server, tmp_path):
    tc = [{"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"query": "ada"}'}}]
    lp = {
        "content": [
            {
                "token": "Yes",
                "logprob": -0.1,
                "bytes": None,
                "top_logprobs": [
                    {"token": "Yes", "logprob": -0.1, "bytes": None},
                    {"token": "No", "logprob": -2.3, "bytes": None},
                ],
            }
        ]
    }
    server.default = ("ok", completion("", tool_calls=tc, logprobs=lp))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "search",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
            },
        }
    ]
    llm = make(server, tmp_path, max_tokens=33, temperature=0.5)
    r = llm.chat(MSG, stop=["\n"], logprobs=True, tools=tools)
    req = server.requests[-1]
    assert req["max_tokens"] == 33 and req["temperature"] == 0.5 and req["stop"] == ["\n"]
    assert req["logprobs"] is True and req["top_logprobs"] == 5 and req["tools"] == tools
    assert r.tool_calls == [{"id": "call_1", "name": "search", "arguments": {"query": "ada"}}]
    assert r.logprobs[0]["token"] == "Yes" and r.logprobs[0]["top"]["No"] == pytest.approx(-2.3)


def test_langchain_adapter_passes_tools_natively_to_the_server(server, tmp_path):
    from langchain_core.tools import tool

    from hoprank.tools.llm.langchain_adapter import HoprankChatModel

    @tool
    def lookup(query: str) -> str:
        """Search the index."""
        return query

    tc = [{"id": "call_srv", "type": "function", "function": {"name": "lookup", "arguments": '{"query": "ada"}'}}]
    server.default = ("ok", completion("", tool_calls=tc))
    msg = HoprankChatModel(llm=make(server, tmp_path)).bind_tools([lookup]).invoke("find ada")
    assert msg.tool_calls == [{"name": "lookup", "args": {"query": "ada"}, "id": "call_srv", "type": "tool_call"}]
    assert server.requests[-1]["tools"][0]["function"]["name"] == "lookup"
    assert msg.usage_metadata == {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}


# ---- issue 10.4-5: wrong-shape 200s, empty replies, unreachable endpoints ----------------
WRONG_SHAPES = [
    {"choices": ["just a string"]},
    {"choices": [{"message": "a string, not an object"}]},
    {"choices": [{"message": {"role": "assistant", "content": {"nested": "object"}}}]},
    {"choices": {"0": "a dict, not a list"}},
    {"error": "upstream said no", "choices": None},
]


@pytest.mark.parametrize("body", WRONG_SHAPES)
def test_wrong_shape_200_is_retried_then_a_clear_llm_error(server, tmp_path, body):
    server.default = ("ok", body)
    llm = make(server, tmp_path, max_retries=2)
    with pytest.raises(LLMError) as ei:
        llm.chat(MSG)
    msg = str(ei.value)
    assert len(server.requests) == 3  # transient: retried, and bounded
    assert "after 3 attempt(s)" in msg and ("not a chat completion" in msg or "no completion" in msg), msg
    assert llm.usage.retries == 2 and llm.usage.failures == 1


def test_wrong_shape_200_then_a_good_one_succeeds(server, tmp_path):
    server.plan.append(("ok", WRONG_SHAPES[0]))
    assert make(server, tmp_path).chat(MSG).text == "hello"
    assert len(server.requests) == 2


def test_empty_reply_is_returned_but_never_cached(server, tmp_path):
    server.plan.append(("ok", completion("")))
    llm = make(server, tmp_path, cache=True)
    first = llm.chat(MSG)
    assert first.text == "" and not first.cached
    second = llm.chat(MSG)  # a rerun reaches the endpoint again instead of replaying ""
    assert second.text == "hello" and not second.cached and len(server.requests) == 2
    assert llm.chat(MSG).cached and len(server.requests) == 2  # a real answer is cached


def test_unreachable_endpoint_blames_the_refused_connection(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for model in (None, "some-model"):  # with no model, discovery is the first request
        cfg = LLMConfig(
            backend="openai",
            base_url=f"http://127.0.0.1:{port}/v1",
            model=model,
            cache=True,
            cache_dir=str(tmp_path),
            max_retries=1,
        )
        llm = make_llm(cfg)
        llm.backoff_s = 0.01
        with pytest.raises(LLMError) as ei:
            llm.chat(MSG)
        msg = str(ei.value)
        assert "llm.model is not set" not in msg, msg
        assert "refused" in msg.lower(), msg
