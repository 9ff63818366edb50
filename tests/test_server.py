"""HTTP server: protocol, limits, auth, errors, cancellation, threads, graceful shutdown.

These use a small in-test agent (same interface as ``hoprank.Agent``: ``aask``, ``astream``,
``add_documents``, ``index``) so each failure mode can be produced on demand; the real
agent end to end is in test_server_agent.py. Every test talks to a real uvicorn server on
loopback, through the official ``openai`` client or httpx.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import pytest

from hoprank.agent.app.server import (
    ServerSettings,
    ThreadMap,
    create_app,
    parse_documents,
    serve_in_thread,
)
from hoprank.tools.errors import InvalidQueryError, LLMError
from hoprank.tools.types import Answer, Citation, Hit

KEY = "s3cret-key"


class FakeAgent:
    """Answers "echo: <question> (turn n)"; remembers each thread's questions."""

    def __init__(self, delay: float = 0.0, fail: Exception | None = None, status: str = "answered"):
        self.delay, self.fail, self.status = delay, fail, status
        self.history: dict[str, list[str]] = {}
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.documents: list = []
        self.index = [0, 1, 2]
        self.options: list[dict] = []

    def _answer(self, question: str, thread_id: str | None, **options) -> Answer:
        if not question.strip():
            raise InvalidQueryError("query is empty")
        tid = thread_id or "auto"
        self.options.append(options)
        if options.get("history") and tid not in self.history:  # what Agent.seed_history does
            self.history[tid] = [m["content"] for m in options["history"] if m["role"] == "user"]
        turns = self.history.setdefault(tid, [])
        turns.append(question)
        hit = Hit(
            id="doc#0", score=0.9, text=f"evidence for {question}", title="Doc", doc_id="doc", rank=1, retriever="bm25"
        )
        return Answer(
            question=question,
            answer=f"echo: {question} (turn {len(turns)}) [1]",
            citations=[Citation(marker=1, chunk_id="doc#0", title="Doc", text=hit.text, score=0.9)],
            evidence=[hit],
            status=self.status,
            error="model exploded" if self.status == "failed" else None,
            thread_id=tid,
            trace={
                "steps": [{"node": "retrieve"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3},
                "seconds": 0.01,
                "history": list(turns),
            },
        )

    async def _work(self) -> None:
        self.started.set()
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.fail is not None:
            raise self.fail

    async def aask(self, question: str, thread_id: str | None = None, **options) -> Answer:
        await self._work()
        return self._answer(question, thread_id, **options)

    async def astream(self, question: str, thread_id: str | None = None, **options):
        yield {
            "type": "step",
            "node": "understand",
            "summary": "1 sub-query",
            "data": {"sub_queries": [question]},
            "elapsed_s": 0.0,
        }
        await self._work()
        hit = Hit(id="doc#0", score=0.5, text="t", rank=1)
        yield {"type": "step", "node": "retrieve", "summary": "1 hit", "data": {"hits": [hit]}, "elapsed_s": 0.01}
        yield {"type": "answer", "answer": self._answer(question, thread_id, **options)}

    def add_documents(self, documents: list) -> dict:
        self.documents.extend(documents)
        self.index.extend(range(len(documents)))
        return {"documents": len(documents)}


@pytest.fixture()
def server():
    """Factory: server(agent, **settings) -> base URL; all servers stop at test end."""
    stack = []

    def start(agent, **kw):
        cm = serve_in_thread(create_app(agent, ServerSettings(**kw)))
        url = cm.__enter__()
        stack.append(cm)
        return url

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=20)


def test_openai_client_non_streaming_carries_citations_and_trace(server):
    url = server(FakeAgent())
    r = client(url).chat.completions.create(
        model="hoprank",
        messages=[{"role": "user", "content": "Who founded Osric?"}],
        extra_body={"conversation_id": "c1"},
    )
    assert r.choices[0].message.content == "echo: Who founded Osric? (turn 1) [1]"
    assert r.choices[0].finish_reason == "stop"
    extra = r.model_extra["hoprank"]
    assert extra["status"] == "answered" and extra["thread_id"] == "c1"
    assert extra["citations"][0] == {
        "marker": 1,
        "chunk_id": "doc#0",
        "title": "Doc",
        "text": "evidence for Who founded Osric?",
        "score": 0.9,
        "supported": None,
    }
    assert extra["evidence"][0]["id"] == "doc#0"
    assert extra["trace"]["steps"] == [{"node": "retrieve"}]
    assert r.usage.prompt_tokens == 7 and r.usage.total_tokens == 10


def test_openai_client_streaming_steps_then_answer_then_done(server):
    url = server(FakeAgent())
    stream = client(url).chat.completions.create(
        model="hoprank",
        messages=[{"role": "user", "content": "Where was Ada born?"}],
        stream=True,
        extra_body={"conversation_id": "s1"},
    )
    chunks = list(stream)
    steps = [c.model_extra["hoprank"]["step"] for c in chunks if (c.model_extra or {}).get("hoprank", {}).get("step")]
    assert [s["node"] for s in steps] == ["understand", "retrieve"]
    assert steps[1]["data"]["hits"][0]["id"] == "doc#0"  # dataclasses become JSON
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "echo: Where was Ada born? (turn 1) [1]"
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert final.model_extra["hoprank"]["citations"][0]["chunk_id"] == "doc#0"
    assert final.model_extra["hoprank"]["thread_id"] == "s1"


def test_raw_stream_ends_with_done(server):
    url = server(FakeAgent())
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "q"}], "stream": True},
        timeout=20,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert all(json.loads(ln[6:])["object"] == "chat.completion.chunk" for ln in lines[:-1])


def test_models_health_and_page(server):
    url = server(FakeAgent())
    assert [m.id for m in client(url).models.list()] == ["hoprank"]
    h = httpx.get(f"{url}/health").json()
    assert h["status"] == "ok" and h["chunks"] == 3
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert httpx.get(f"{url}/web/app.js").status_code == 200
    assert httpx.get(f"{url}/web/..%2Fserver.py").status_code == 404


def test_auth_required_when_key_configured(server):
    url = server(FakeAgent(), api_key=KEY)
    body = {"messages": [{"role": "user", "content": "q"}]}
    r = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert (
        httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}x"}).status_code
        == 401
    )
    assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Basic {KEY}"}).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(url, "wrong").models.list()
    assert (
        client(url, KEY)
        .chat.completions.create(model="hoprank", messages=body["messages"])
        .choices[0]
        .message.content.startswith("echo")
    )
    assert httpx.get(f"{url}/health").status_code == 200  # liveness probes need no key


def test_oversized_body_413(server):
    url = server(FakeAgent(), max_body_bytes=10_000)
    big = {"messages": [{"role": "user", "content": "x" * 20_000}]}
    r = httpx.post(f"{url}/v1/chat/completions", json=big)
    assert r.status_code == 413 and "10,000 bytes" in r.json()["error"]["message"]

    def chunked():  # no Content-Length: the limit must hold while streaming the body too
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}]}'

    r = httpx.post(f"{url}/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(f"{url}/v1/documents", json=[{"id": "a", "text": "z" * 20_000}])
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"max_tokens": 0}, "max_tokens must be between 1 and 32768"),
        ({"max_tokens": 40000}, "max_tokens must be between 1 and 32768"),
        ({"max_completion_tokens": -5}, "max_completion_tokens"),
        ({"n": 3}, "n must be 1"),
        ({"temperature": 9}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "   "}]}, "empty"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "last message must come from the user",
        ),
        ({"messages": [{"role": "user", "content": "q" * 4001}]}, "limit is 4,000"),
        ({"messages": "hello"}, "messages"),
        ({"max_tokens": "lots"}, "max_tokens"),
    ],
)
def test_absurd_parameters_400(server, patch, needle):
    url = server(FakeAgent())
    body = {"model": "hoprank", "messages": [{"role": "user", "content": "q"}], **patch}
    r = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_invalid_json_and_bad_documents_400(server):
    url = server(FakeAgent())
    r = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    for bad, needle in [
        (b"[1,", "not valid JSON"),
        (b"[]", "JSON list"),
        (b'[{"id": "a"}]', "no non-empty 'text'"),
        (b'[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]', "duplicate id"),
    ]:
        r = httpx.post(f"{url}/v1/documents", content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text


def test_documents_are_added(server):
    agent = FakeAgent()
    url = server(agent)
    r = httpx.post(
        f"{url}/v1/documents",
        json=[
            {"id": "n1", "title": "Note", "text": "Nora was born in Pell.", "metadata": {"k": 1}},
            {"text": "no id here"},
        ],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["added"] == 2 and body["chunks"] == 5 and body["ids"][0] == "n1"
    assert agent.documents[0].title == "Note" and agent.documents[0].metadata == {"k": 1}
    assert agent.documents[1].id.startswith("upload-")


def test_llm_failure_is_a_clear_5xx_and_a_stream_error(server):
    url = server(FakeAgent(fail=LLMError("endpoint returned 503 three times")))
    with pytest.raises(openai.InternalServerError) as ei:
        client(url).chat.completions.create(model="hoprank", messages=[{"role": "user", "content": "q"}])
    assert ei.value.status_code == 502 and "503 three times" in str(ei.value)
    with pytest.raises(openai.APIError, match="503 three times"):
        list(
            client(url).chat.completions.create(
                model="hoprank", messages=[{"role": "user", "content": "q"}], stream=True
            )
        )


def test_failed_answer_status_is_a_5xx(server):
    url = server(FakeAgent(status="failed"))
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]})
    assert r.status_code == 502
    assert "model exploded" in r.json()["error"]["message"] and r.json()["hoprank"]["status"] == "failed"


def test_deadline_gives_504_not_a_hang(server):
    agent = FakeAgent(delay=30)
    url = server(agent, request_timeout_s=0.5)
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}, timeout=20)
    assert r.status_code == 504 and "within 0.5 s" in r.json()["error"]["message"]
    assert agent.cancelled.wait(5)
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "q"}], "stream": True},
        timeout=20,
    ) as s:
        text = "".join(s.iter_text())
    assert "timeout" in text and text.rstrip().endswith("data: [DONE]")


def test_invalid_query_from_agent_is_400(server):
    agent = FakeAgent()

    def reject(q, t, **options):
        raise InvalidQueryError("query has no words")

    agent._answer = reject  # type: ignore[method-assign]
    url = server(agent)
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "?"}]})
    assert r.status_code == 400 and "no words" in r.json()["error"]["message"]
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "?"}], "stream": True}
    ) as s:
        text = "".join(s.iter_text())
    assert "invalid_request_error" in text and "no words" in text


@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_cancels_agent_work(server, stream):
    agent = FakeAgent(delay=60)
    url = server(agent)
    body = {"messages": [{"role": "user", "content": "slow"}], "stream": stream}

    def call():
        try:
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=20) as r:
                for _ in r.iter_bytes():
                    break  # read the first chunk (streaming) then hang up
        except httpx.HTTPError:
            pass

    t = threading.Thread(target=call, daemon=True)
    t.start()
    assert agent.started.wait(10)
    if not stream:
        time.sleep(0.3)
    t.join(0.1)
    # closing the connection: for non-streaming, httpx is still waiting; kill it via a short timeout
    if t.is_alive():
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=1.0)
    assert agent.cancelled.wait(10), "the agent task kept running after the client left"


def test_threads_explicit_stateless_and_isolated(server):
    agent = FakeAgent()
    url = server(agent)
    c = client(url)
    # explicit conversation ids
    c.chat.completions.create(
        model="hoprank", messages=[{"role": "user", "content": "a1"}], extra_body={"conversation_id": "A"}
    )
    r = c.chat.completions.create(
        model="hoprank", messages=[{"role": "user", "content": "a2"}], extra_body={"conversation_id": "A"}
    )
    assert r.model_extra["hoprank"]["trace"]["history"] == ["a1", "a2"]
    # stateless: resend the history; the server maps it back onto the same thread
    m1 = [{"role": "user", "content": "b1"}]
    r1 = c.chat.completions.create(model="hoprank", messages=m1, user="bob")
    tid = r1.model_extra["hoprank"]["thread_id"]
    m2 = m1 + [{"role": "assistant", "content": r1.choices[0].message.content}, {"role": "user", "content": "b2"}]
    r2 = c.chat.completions.create(model="hoprank", messages=m2, user="bob")
    assert r2.model_extra["hoprank"]["thread_id"] == tid
    assert r2.model_extra["hoprank"]["trace"]["history"] == ["b1", "b2"]
    # a new conversation with the same first question gets its own thread
    r3 = c.chat.completions.create(model="hoprank", messages=m1, user="bob")
    assert r3.model_extra["hoprank"]["thread_id"] != tid
    assert r3.model_extra["hoprank"]["trace"]["history"] == ["b1"]


def test_concurrent_conversations_do_not_cross(server):
    agent = FakeAgent(delay=0.05)
    url = server(agent)
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def convo(name: str):
        try:
            c = client(url)
            for turn in range(3):
                r = c.chat.completions.create(
                    model="hoprank",
                    messages=[{"role": "user", "content": f"{name}-{turn}"}],
                    extra_body={"conversation_id": name},
                    stream=turn == 1,
                )
                if turn == 1:
                    r = [ch for ch in r][-1]
                results.setdefault(name, []).append(r.model_extra["hoprank"]["thread_id"])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=convo, args=(n,)) for n in ("x", "y", "z", "w")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for name in ("x", "y", "z", "w"):
        assert results[name] == [name] * 3
        assert agent.history[name] == [f"{name}-0", f"{name}-1", f"{name}-2"]


def test_thread_map_unit():
    from hoprank.agent.app.server import ChatRequest

    tm = ThreadMap(capacity=2)
    first = ChatRequest(messages=[{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}])
    t1 = tm.resolve(first)
    assert t1.startswith("chat-") and t1 != tm.resolve(first)  # system-only history = new chat
    tm.remember(first, "hello", t1)
    follow = ChatRequest(
        messages=[*first.messages, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    )
    assert tm.resolve(follow) == t1
    assert tm.resolve(ChatRequest(messages=follow.messages, conversation_id="mine")) == "mine"
    for i in range(3):
        tm.remember(ChatRequest(messages=[{"role": "user", "content": str(i)}]), "x", f"t{i}")
    assert tm.resolve(follow) != t1  # evicted (bounded), falls back to a deterministic id


def test_parse_documents_shapes():
    docs = parse_documents({"documents": [{"id": "7", "text": "seven", "title": None}]})
    assert docs[0].id == "7" and docs[0].title == "" and docs[0].source == "upload"
    assert parse_documents([{"text": "no id"}])[0].id.startswith("upload-")
    assert parse_documents({"text": "single"})[0].text == "single"
    assert replace(docs[0], text="x").id == "7"


SIGTERM_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from hoprank.agent.app.server import create_app, bind_socket
    from hoprank.tools.types import Answer
    import uvicorn

    marker = Path(sys.argv[1])

    class Slow:
        index = []
        async def aask(self, q, thread_id=None):
            marker.write_text("started")
            await asyncio.sleep(2.0)
            return Answer(question=q, answer="finished despite SIGTERM", thread_id=thread_id)

    sock = bind_socket("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(Slow()), log_level="warning", timeout_graceful_shutdown=20))
    server.run(sockets=[sock])
    """
)


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path):
    marker = tmp_path / "started"
    script = tmp_path / "srv.py"
    script.write_text(SIGTERM_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        port = int(proc.stdout.readline())
        result: dict = {}

        def call():
            result["r"] = httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "q"}]},
                timeout=30,
            )

        t = threading.Thread(target=call)
        t.start()
        for _ in range(200):
            if marker.exists():
                break
            time.sleep(0.05)
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "request never reached the agent"
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert result["r"].status_code == 200
        assert result["r"].json()["choices"][0]["message"]["content"] == "finished despite SIGTERM"
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown: -15 is a clean exit
        assert proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()


# ---- issue 10.14: OpenAI error objects everywhere, the model name, one length limit ------
def _is_openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error"} and "detail" not in body, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_unknown_model_is_a_404_model_not_found(server):
    url = server(FakeAgent())
    with pytest.raises(openai.NotFoundError) as ei:
        client(url).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    assert "gpt-4o" in str(ei.value)
    err = _is_openai_error(
        httpx.post(
            f"{url}/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "q"}]}
        ),
        404,
    )
    assert err["code"] == "model_not_found" and err["param"] == "model"
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "nope", "stream": True, "messages": [{"role": "user", "content": "q"}]},
    )
    assert _is_openai_error(r, 404)["code"] == "model_not_found"


def test_every_error_is_an_openai_error_object(server):
    url = server(FakeAgent(), max_body_bytes=10_000)
    _is_openai_error(httpx.get(f"{url}/v1/nothing-here"), 404)
    _is_openai_error(httpx.get(f"{url}/v1/chat/completions"), 405)
    _is_openai_error(httpx.post(f"{url}/v1/chat/completions", json={"messages": "x"}), 400)
    _is_openai_error(
        httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 20_000}]}), 413
    )
    _is_openai_error(httpx.get(f"{url}/web/missing.js"), 404)


def test_unexpected_server_error_is_a_500_openai_error(server):
    class Broken(FakeAgent):
        def add_documents(self, documents: list) -> dict:
            raise RuntimeError("disk on fire")

    url = server(Broken())
    err = _is_openai_error(httpx.post(f"{url}/v1/documents", json=[{"id": "a", "text": "x"}]), 500)
    assert err["type"] == "server_error" and "disk on fire" not in err["message"]  # no internals leaked


def test_server_question_limit_is_the_agent_s(server):
    from hoprank.agent.app import api

    assert ServerSettings().max_question_chars == api.MAX_QUESTION_CHARS
    url = server(FakeAgent())
    ok = httpx.post(
        f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "q" * api.MAX_QUESTION_CHARS}]}
    )
    assert ok.status_code == 200, ok.text
    too_long = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "q" * (api.MAX_QUESTION_CHARS + 1)}]},
    )
    assert _is_openai_error(too_long, 400)["param"] == "messages"


@pytest.mark.parametrize("bad_id", [["a"], {"k": 1}, 7, True, "", "  "])
def test_documents_reject_a_non_string_id(server, bad_id):
    agent = FakeAgent()
    url = server(agent)
    err = _is_openai_error(httpx.post(f"{url}/v1/documents", json=[{"id": bad_id, "text": "x"}]), 400)
    assert "id must be a non-empty string" in err["message"] and err["param"] == "documents[0].id"
    assert agent.documents == []
    err = _is_openai_error(httpx.post(f"{url}/v1/documents", json=[{"id": "a", "text": "x", "title": ["t"]}]), 400)
    assert "title must be a string" in err["message"]
