"""OpenAI clients against the real agent: stateless history, token streaming, include_usage,
max_tokens and error objects (issue 11 item 3).

The agent's LLM is ``OpenAICompatLLM`` talking to a scripted OpenAI-compatible server on
loopback that streams its reply word by word (deterministic, so the routing can be checked);
hoprank's own server runs under real uvicorn and is read with the official ``openai`` client.
The LLM layer's streaming (cache replay, retries, llama.cpp) is tested below that.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import openai
import pytest
from conftest import LoopbackServer, send_json, write_corpus

from hoprank import Agent
from hoprank.agent.app.server import ServerSettings, create_app, serve_in_thread
from hoprank.agent.generate import parse_citations
from hoprank.agent.tokens import ShownAnswer
from hoprank.tools.errors import LLMError
from hoprank.tools.ingest.index import Index
from hoprank.tools.llm.base import LLMResponse, ScriptedLLM, TransientLLMError
from hoprank.tools.llm.openai_compat import OpenAICompatLLM
from hoprank.tools.types import Hit

REPLY = "Ada Quill was born in Marrow Bay [1] and later founded the Quill Lamp Works there."


def _event(handler: BaseHTTPRequestHandler, obj: dict) -> None:
    """One server-sent event, flushed so the client reads it before the next."""
    handler.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
    handler.wfile.flush()


class StreamingLLMServer(LoopbackServer):
    """An OpenAI-compatible chat endpoint that replies ``REPLY`` (cut to ``max_tokens``
    words), streamed one word per chunk with a final usage chunk when asked; ``status``
    set makes every request fail with that HTTP status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status: int | None = None
        super().__init__(self._respond, path="/v1")

    def _respond(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        self.requests.append(body)
        if self.status is not None:
            send_json(handler, self.status, {"error": {"message": "scripted failure", "type": "server_error"}})
            return
        words = re.findall(r"\s*\S+", REPLY)[: body.get("max_tokens") or None]
        finish = "length" if len(words) < len(re.findall(r"\s*\S+", REPLY)) else "stop"
        usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": finish}
            send_json(
                handler,
                200,
                {"id": "c", "object": "chat.completion", "model": "scripted"}
                | {"created": 0, "choices": [choice], "usage": usage},
            )
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        head = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "scripted"}
        for w in words:
            _event(handler, head | {"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})
        _event(handler, head | {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            _event(handler, head | {"choices": [], "usage": usage})
        handler.wfile.write(b"data: [DONE]\n\n")

    def answer_requests(self) -> list[dict[str, Any]]:
        """The requests of the answer step (its prompt carries the numbered documents)."""
        return [r for r in self.requests if "<documents>" in json.dumps(r["messages"])]


@pytest.fixture(scope="module")
def llm_server():
    srv = StreamingLLMServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    corpus = write_corpus(tmp_path_factory.mktemp("stream-corpus"))
    idx, _ = Index.build(tmp_path_factory.mktemp("stream-index"), sources=[corpus], qdrant=False, show_progress=False)
    return idx


@pytest.fixture(scope="module")
def hoprank_server(llm_server, index):
    cfg = {
        "agent": {"decompose": "rules", "max_hops": 1},
        "rerank": {"method": "embedding"},
        "llm": {"backend": "openai", "base_url": llm_server.url, "model": "scripted", "cache": False},
    }
    agent = Agent.from_config(cfg, index=index)
    with serve_in_thread(create_app(agent, ServerSettings())) as url:
        yield url, agent


@pytest.fixture()
def fresh(llm_server):
    llm_server.requests.clear()
    llm_server.status = None
    yield llm_server
    llm_server.status = None


def oai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=60)


def content_of(chunk: Any) -> str | None:
    return chunk.choices[0].delta.content if chunk.choices else None


def step_of(chunk: Any) -> str | None:
    """The node name of a step chunk (None for other chunks)."""
    step = ((chunk.model_extra or {}).get("hoprank") or {}).get("step")
    return step["node"] if step else None


def steps_of(trace: dict, node: str) -> list[dict]:
    return [s for s in trace["steps"] if s["node"] == node]


def test_stateless_client_history_makes_a_follow_up_on_a_fresh_server(hoprank_server, fresh):
    url, agent = hoprank_server
    messages = [
        {"role": "system", "content": "You answer from the documents."},
        {"role": "user", "content": "Who founded Quill Lamp Works?"},
        {"role": "assistant", "content": "Ada Quill founded Quill Lamp Works [1]."},
        {"role": "user", "content": "Where was she born?"},
    ]
    r = oai(url).chat.completions.create(model="hoprank", messages=messages)  # no conversation_id
    extra = r.model_extra["hoprank"]
    standalone = steps_of(extra["trace"], "contextualize")[0]["data"]["standalone"]
    assert "Ada Quill" in standalone, standalone  # "she" resolved from the client's turns
    assert extra["trace"]["standalone"] == standalone
    # the new thread holds the client's turns, then this one
    history = agent.history(extra["thread_id"])
    assert history[:2] == [messages[1], messages[2]] and history[2]["content"] == "Where was she born?"
    # the same question without the earlier turns is a first turn
    alone = oai(url).chat.completions.create(model="hoprank", messages=messages[-1:])
    assert steps_of(alone.model_extra["hoprank"]["trace"], "contextualize")[0]["data"]["standalone"] == (
        "Where was she born?"
    )


def test_answer_tokens_stream_as_the_llm_writes_them(hoprank_server, fresh):
    url, _ = hoprank_server
    question = [{"role": "user", "content": "Where was Ada Quill born?"}]
    chunks = list(oai(url).chat.completions.create(model="hoprank", messages=question, stream=True))
    contents = [content_of(c) for c in chunks if content_of(c)]
    assert len(contents) > 3, contents  # token by token, not the finished text in one piece
    steps = [step_of(c) for c in chunks if step_of(c)]
    assert "search" in steps and steps[-1] == "finalize"  # the step chunks are kept
    # the first tokens arrive before the generate step has finished
    first_token = next(i for i, c in enumerate(chunks) if content_of(c))
    assert first_token < next(i for i, c in enumerate(chunks) if step_of(c) == "generate")
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop" and "stream_replaced" not in final.model_extra["hoprank"]
    assert final.model_extra["hoprank"]["citations"]
    # the streamed text is the answer a non-streamed request gets
    plain = oai(url).chat.completions.create(model="hoprank", messages=question)
    assert "".join(contents) == plain.choices[0].message.content
    assert "Marrow Bay [1]" in plain.choices[0].message.content
    answer_calls = fresh.answer_requests()
    assert answer_calls[0]["stream"] is True and answer_calls[0]["stream_options"] == {"include_usage": True}
    assert not answer_calls[1].get("stream")  # nobody listens to tokens: the plain call as before


def test_include_usage_is_a_final_chunk_without_choices(hoprank_server, fresh):
    url, _ = hoprank_server
    question = [{"role": "user", "content": "Who founded Quill Lamp Works?"}]
    chunks = list(
        oai(url).chat.completions.create(
            model="hoprank", messages=question, stream=True, stream_options={"include_usage": True}
        )
    )
    last, finish = chunks[-1], chunks[-2]
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens > 0
    assert finish.choices[0].finish_reason == "stop" and finish.usage is None
    assert all(c.usage is None for c in chunks[:-1])
    plain = oai(url).chat.completions.create(model="hoprank", messages=question)
    assert last.usage.total_tokens == plain.usage.total_tokens  # the same LLM calls, counted alike
    without = list(oai(url).chat.completions.create(model="hoprank", messages=question, stream=True))
    assert without[-1].choices and without[-1].usage is None  # not asked for: no usage chunk


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_caps_the_answer(hoprank_server, fresh, stream):
    url, _ = hoprank_server
    r = oai(url).chat.completions.create(
        model="hoprank",
        messages=[{"role": "user", "content": "Where was Ada Quill born?"}],
        max_tokens=4,
        stream=stream,
    )
    text = "".join(c.choices[0].delta.content or "" for c in r if c.choices) if stream else r.choices[0].message.content
    assert [q["max_tokens"] for q in fresh.answer_requests()] == [4]
    assert "later founded" not in text  # the reply was cut at 4 words
    fresh.requests.clear()
    oai(url).chat.completions.create(model="hoprank", messages=[{"role": "user", "content": "Where was Ada born?"}])
    assert [q["max_tokens"] for q in fresh.answer_requests()] == [512]  # llm.max_tokens otherwise


def test_errors_are_openai_error_objects(hoprank_server, fresh):
    url, _ = hoprank_server
    fresh.status = 400  # the LLM endpoint rejects every call: the answer fails
    body = {"model": "hoprank", "messages": [{"role": "user", "content": "Where was Ada Quill born?"}]}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 502 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert "scripted failure" in r.json()["error"]["message"]
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body | {"stream": True}, timeout=60) as s:
        events = [ln[6:] for ln in s.iter_lines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "agent_failed"
    with pytest.raises(openai.APIError, match="scripted failure"):
        list(oai(url).chat.completions.create(model="hoprank", messages=body["messages"], stream=True))
    bad = httpx.post(f"{url}/v1/chat/completions", json=body | {"max_tokens": 0}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "max_tokens"


def test_a_short_answer_arrives_as_one_delta(index):
    cfg = {
        "agent": {"decompose": "rules", "max_hops": 1, "answer_style": "short", "answer_mode": "generate"},
        "rerank": {"method": "embedding"},
        "llm": {"cache": False},
    }
    agent = Agent.from_config(cfg, index=index, llm=ScriptedLLM(lambda m: "Answer: Marrow Bay."))
    with serve_in_thread(create_app(agent)) as url:
        chunks = list(
            oai(url).chat.completions.create(
                model="hoprank", messages=[{"role": "user", "content": "Where was Ada Quill born?"}], stream=True
            )
        )
    assert [content_of(c) for c in chunks if content_of(c)] == ["Marrow Bay"]


# ---- what the answer step shows ------------------------------------------------------------
EVIDENCE = [
    Hit(id="ada#0", score=1.0, text="Ada Quill was born in Marrow Bay in 1871.", title="Ada Quill", rank=1),
    Hit(id="lamp#0", score=0.9, text="Quill Lamp Works was founded in 1896.", title="Quill Lamp Works", rank=2),
]


def shown_for(raw: str, question: str = "Where was Ada Quill born?") -> tuple[list[str], ShownAnswer]:
    pieces: list[str] = []
    shown = ShownAnswer(pieces.append, question, EVIDENCE, parse_citations)
    for delta in re.findall(r"\s*\S+", raw):
        shown.add(delta)
    return pieces, shown


def test_shown_pieces_are_a_prefix_of_the_cleaned_answer():
    raw = "Ada Quill was born in Marrow Bay [1] [9] in 1871, and the works came later [2]."
    pieces, _ = shown_for(raw)
    final, _ = parse_citations(raw, EVIDENCE)
    assert len(pieces) > 3 and final.startswith("".join(pieces))
    assert "[9]" not in "".join(pieces)  # a marker pointing nowhere is never shown


def test_nothing_is_shown_before_a_valid_citation_or_for_a_short_reply():
    assert shown_for("NOT_FOUND [1]")[0] == []  # may still become the not-found text
    assert shown_for("She was born in a town by the sea, long ago.")[0] == []  # may be rejected uncited


def test_showing_stops_at_what_the_safety_check_flags():
    raw = "Ada Quill was born in Marrow Bay [1]; see https://evil.example/x for more about her life and times."
    pieces, shown = shown_for(raw)
    assert shown.stopped and "evil" not in "".join(pieces) and "Marrow Bay" in "".join(pieces)


# ---- the LLM layer ---------------------------------------------------------------------------
MSGS = [{"role": "user", "content": "hi"}]


def drain(items) -> tuple[list[str], LLMResponse]:
    out = list(items)
    assert isinstance(out[-1], LLMResponse) and all(isinstance(d, str) for d in out[:-1])
    return out[:-1], out[-1]


def test_stream_counts_once_and_the_cache_replays_one_delta(tmp_path):
    from hoprank.tools.llm.cache import ResponseCache

    llm = ScriptedLLM(["one two three"])
    llm.cache = ResponseCache(tmp_path)
    deltas, r = drain(llm.stream(MSGS, max_tokens=8))
    assert deltas == ["one", " two", " three"] and r.text == "one two three" and not r.cached
    deltas, r = drain(llm.stream(MSGS, max_tokens=8))
    assert deltas == ["one two three"] and r.cached
    assert llm.chat(MSGS, max_tokens=8).cached  # a streamed reply serves later plain calls
    assert llm.usage.calls == 3 and llm.usage.cached_calls == 2 and len(llm.calls) == 1


class Flaky(ScriptedLLM):
    """Fails with a transient error before (or after) its first delta on the first call."""

    def __init__(self, after_first_delta: bool):
        super().__init__(["alpha beta"])
        self.after, self.attempts = after_first_delta, 0

    def _stream_complete(self, messages, **params):
        self.attempts += 1
        if self.attempts == 1:
            if self.after:
                yield "alpha"
            raise TransientLLMError("connection dropped")
        yield from super()._stream_complete(messages, **params)


def test_stream_retries_only_before_the_first_delta():
    llm = Flaky(after_first_delta=False)
    llm.max_retries, llm.backoff_s = 2, 0.0
    assert drain(llm.stream(MSGS))[1].text == "alpha beta" and llm.usage.retries == 1
    llm = Flaky(after_first_delta=True)
    llm.max_retries, llm.backoff_s = 2, 0.0
    with pytest.raises(LLMError, match="connection dropped"):
        list(llm.stream(MSGS))
    assert llm.attempts == 1


def test_openai_backend_streams_deltas_and_the_final_usage(llm_server, fresh):
    llm = OpenAICompatLLM(model="scripted", base_url=llm_server.url)
    deltas, r = drain(llm.stream(MSGS, max_tokens=5))
    assert len(deltas) == 5 and r.text == "".join(deltas) and r.finish_reason == "length"
    assert (r.prompt_tokens, r.completion_tokens) == (11, 5)
    assert fresh.requests[-1]["stream_options"] == {"include_usage": True}


@pytest.mark.slow
def test_llamacpp_stream_equals_chat():
    from hoprank.tools.llm.llamacpp import LlamaCppLLM

    llm = LlamaCppLLM(n_ctx=512, max_tokens=24)
    msgs = [{"role": "user", "content": "Where was Ada Lovelace born? One sentence."}]
    for max_tokens in (24, 5):
        plain = llm._complete(msgs, max_tokens=max_tokens, temperature=0.0, seed=0)
        deltas, streamed = drain(llm._stream_complete(msgs, max_tokens=max_tokens, temperature=0.0, seed=0))
        assert len(deltas) > 1 and streamed.text == plain.text == "".join(deltas)
        assert (streamed.prompt_tokens, streamed.completion_tokens, streamed.finish_reason) == (
            plain.prompt_tokens,
            plain.completion_tokens,
            plain.finish_reason,
        )
