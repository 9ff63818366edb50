"""HTTP server: an OpenAI-compatible chat endpoint over the hoprank agent, plus the web page.

Why OpenAI-compatible: every chat client, SDK and UI already speaks it, so pointing them at
``http://127.0.0.1:8000/v1`` is the whole integration. What OpenAI has no field for
(citations, evidence, the step trace) travels in an extra ``hoprank`` object, which the
official clients keep in ``model_extra`` instead of rejecting.

Reliability rules (DESIGN.md): oversized bodies get 413, absurd parameters 400, an LLM
failure a clear 5xx (or an error event in a stream), every request has a deadline, a client
that disconnects cancels the agent work, and uvicorn's graceful shutdown lets in-flight
requests finish on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from hoprank.agent.app.page import example_questions, read_upload, upload_extensions
from hoprank.tools.errors import MAX_QUESTION_CHARS, HoprankError, InvalidQueryError
from hoprank.tools.types import Document, Usage

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
MODEL_ID = "hoprank"
MAX_TOKENS_LIMIT = 32768


@dataclasses.dataclass
class ServerSettings:
    """Limits of one server; the defaults suit a laptop serving a few people."""

    api_key: str | None = None
    max_body_bytes: int = 2_000_000  # documents are uploaded as JSON, so allow a few MB
    max_question_chars: int = MAX_QUESTION_CHARS  # the agent's own limit: one constant
    max_messages: int = 200
    request_timeout_s: float = 600.0  # a CPU model answering a multi-hop question is slow
    keepalive_s: float = 15.0  # SSE comment lines so proxies keep the stream open
    model_id: str = MODEL_ID
    max_documents: int = 10_000


# ---------------------------------------------------------------------------- errors


class APIError(Exception):
    """An error with an HTTP status, rendered in OpenAI's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _error(
    status: int, message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> JSONResponse:
    return JSONResponse(APIError(status, message, type_, param, code).body(), status_code=status)


_CODES = {404: "not_found", 405: "method_not_allowed"}


# ---------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, numpy scalars/arrays, sets, paths -> plain JSON values (never raises)."""
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not f.name.startswith("_")
        }
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, BaseModel):
        return to_jsonable(obj.model_dump())
    if hasattr(obj, "tolist"):  # numpy
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    return str(obj)


def answer_extra(answer: Any) -> dict[str, Any]:
    """The ``hoprank`` field: what the agent knows beyond the answer text."""
    return {
        "status": getattr(answer, "status", None),
        "error": getattr(answer, "error", None),
        "thread_id": getattr(answer, "thread_id", None),
        "citations": to_jsonable(getattr(answer, "citations", [])),
        "evidence": to_jsonable(getattr(answer, "evidence", [])),
        "trace": to_jsonable(getattr(answer, "trace", {})),
    }


# ---------------------------------------------------------------------------- requests


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat request that means something here; extras are ignored."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None
    conversation_id: str | None = None
    thread_id: str | None = None
    stream_options: dict[str, Any] | None = None


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type", "text") == "text")


def validate_chat(req: ChatRequest, settings: ServerSettings) -> str:
    """Reject absurd parameters with a message that names the parameter; return the question."""
    for name in ("max_tokens", "max_completion_tokens"):
        v = getattr(req, name)
        if v is not None and not (1 <= v <= MAX_TOKENS_LIMIT):
            raise APIError(400, f"{name} must be between 1 and {MAX_TOKENS_LIMIT}, got {v}", param=name)
    if req.n is not None and req.n != 1:
        raise APIError(400, f"n must be 1 (hoprank returns one answer per request), got {req.n}", param="n")
    if req.temperature is not None and not (0.0 <= req.temperature <= 2.0):
        raise APIError(400, f"temperature must be between 0 and 2, got {req.temperature}", param="temperature")
    if req.top_p is not None and not (0.0 <= req.top_p <= 1.0):
        raise APIError(400, f"top_p must be between 0 and 1, got {req.top_p}", param="top_p")
    if len(req.messages) > settings.max_messages:
        raise APIError(
            400, f"at most {settings.max_messages} messages per request, got {len(req.messages)}", param="messages"
        )
    for name in ("conversation_id", "thread_id", "user"):
        v = getattr(req, name)
        if v is not None and len(v) > 256:
            raise APIError(400, f"{name} is longer than 256 characters", param=name)
    if req.model is not None and req.model != settings.model_id:
        raise APIError(
            404,
            f"The model {req.model!r} does not exist; this server serves {settings.model_id!r}",
            param="model",
            code="model_not_found",
        )
    last = req.messages[-1]
    if last.role != "user":
        raise APIError(
            400,
            f"the last message must come from the user (it is the question), got role {last.role!r}",
            param="messages",
        )
    question = _text_of(last.content).strip()
    if not question:
        raise APIError(400, "the last user message is empty; send a question", param="messages")
    if len(question) > settings.max_question_chars:
        raise APIError(
            400,
            f"the question is {len(question):,} characters long; the limit is {settings.max_question_chars:,}",
            param="messages",
        )
    return question


class ThreadMap:
    """Maps a stateless OpenAI-style history onto the agent's checkpointed threads.

    Clients such as the ``openai`` SDK resend the whole history each turn. After each answer
    we remember ``hash(user, history + answer) -> thread``; the next turn's prior messages
    hash to the same key and continue that thread, so the agent sees its own history and
    never another conversation's. A history this server did not answer (it restarted, or the
    client wrote or edited the turns) gets a new thread, which the agent starts from the
    turns the client sent (``Agent.seed_history``). ``conversation_id`` (or ``thread_id``)
    is the explicit way. Bounded LRU so a long-running server does not grow without limit.
    """

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._map: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(user: str | None, messages: list[dict[str, str]]) -> str:
        h = hashlib.sha256(json.dumps([user or "", messages], ensure_ascii=False).encode("utf-8"))
        return h.hexdigest()[:32]

    def resolve(self, req: ChatRequest) -> str:
        explicit = req.conversation_id or req.thread_id
        if explicit:
            return explicit
        prior = _plain(req.messages[:-1])
        if not [m for m in prior if m["role"] != "system"]:
            return f"chat-{uuid.uuid4().hex}"  # a new conversation
        k = self.key(req.user, prior)
        with self._lock:
            if k in self._map:
                self._map.move_to_end(k)
                return self._map[k]
        return f"chat-{uuid.uuid4().hex}"  # unknown history: a new thread, seeded from the messages

    def remember(self, req: ChatRequest, answer_text: str, thread_id: str) -> None:
        if req.conversation_id or req.thread_id:
            return
        msgs = _plain(req.messages) + [{"role": "assistant", "content": answer_text}]
        k = self.key(req.user, msgs)
        with self._lock:
            self._map[k] = thread_id
            self._map.move_to_end(k)
            while len(self._map) > self.capacity:
                self._map.popitem(last=False)


def _plain(messages: list[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": _text_of(m.content)} for m in messages]


# ---------------------------------------------------------------------------- middleware


class BodyLimitMiddleware:
    """Pure ASGI: 413 before reading an oversized body (Content-Length) or while streaming it."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                too_big = int(cl) > self.max_bytes
            except ValueError:
                await _send_json(send, 400, APIError(400, "invalid Content-Length header").body())
                return
            if too_big:
                await _send_json(send, 413, self._body())
                return
        received = 0
        started = False
        rejected = False

        async def limited_receive() -> dict:
            # FastAPI turns any exception while reading the body into a 400, so instead of
            # raising we answer 413 here and tell the app the client went away.
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    rejected = True
                    if not started:
                        await _send_json(send, 413, self._body())
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: dict) -> None:
            nonlocal started
            if rejected:
                return  # the 413 already went out; drop whatever the app answers
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        await self.app(scope, limited_receive, guarded_send)

    def _body(self) -> dict:
        return APIError(
            413, f"request body is larger than the limit of {self.max_bytes:,} bytes", code="request_too_large"
        ).body()


class AuthMiddleware:
    """Pure ASGI bearer-token check for the ``protected`` path prefixes (``/v1/`` here: the
    page and /health stay open; ``/mcp`` for the MCP server).

    Constant-time comparison so the key cannot be guessed byte by byte from timings."""

    def __init__(self, app: Any, api_key: str | None, protected: tuple[str, ...] = ("/v1/",)):
        self.app, self.api_key, self.protected = app, api_key, protected

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.api_key and scope.get("path", "").startswith(self.protected):
            headers = dict(scope.get("headers") or [])
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode("utf-8"), self.api_key.encode("utf-8")
            )
            if not ok:
                body = APIError(
                    401,
                    "missing or invalid API key: send 'Authorization: Bearer <key>'",
                    "authentication_error",
                    code="invalid_api_key",
                ).body()
                await _send_json(send, 401, body, extra_headers=[(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (serving there needs no API key)."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


async def _send_json(
    send: Any, status: int, body: dict, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())] + (
        extra_headers or []
    )
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


# ---------------------------------------------------------------------------- app


def create_app(agent: Any, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app around one loaded agent (anything with ``astream``/``aask``/``add_documents``)."""
    settings = settings or ServerSettings()
    app = FastAPI(title="hoprank", version=_version(), docs_url="/docs", redoc_url=None)
    app.state.agent = agent
    app.state.settings = settings
    threads = ThreadMap()
    docs_lock = asyncio.Lock()
    # outermost last: the body limit runs before auth so a huge body never gets read
    app.add_middleware(AuthMiddleware, api_key=settings.api_key)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        # unknown routes (404), wrong methods (405)...: OpenAI's error object, not {"detail"}
        kind = {401: "authentication_error", 404: "not_found_error"}.get(e.status_code, "invalid_request_error")
        headers = dict(e.headers) if e.headers else None
        body = APIError(e.status_code, str(e.detail), kind, code=_CODES.get(e.status_code)).body()
        return JSONResponse(body, status_code=e.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled server error")
        return _error(500, f"internal server error: {type(e).__name__}", type_="server_error", code="internal_error")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {err.get('msg')}")
        return _error(400, "invalid request: " + "; ".join(parts))

    # ---- pages and metadata ----------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/web/{name}", include_in_schema=False)
    async def web_asset(name: str) -> Any:
        path = (WEB_DIR / name).resolve()
        if path.parent != WEB_DIR or not path.is_file():
            return _error(404, f"no such asset: {name}", type_="not_found")
        return FileResponse(path)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        index = getattr(agent, "index", None)
        return {
            "status": "ok",
            "model": settings.model_id,
            "chunks": len(index) if index is not None else None,
            "auth": bool(settings.api_key),
            "version": _version(),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": settings.model_id, "object": "model", "created": 0, "owned_by": "hoprank"}],
        }

    # ---- documents -------------------------------------------------------------------
    @app.post("/v1/documents")
    async def add_documents(request: Request) -> JSONResponse:
        try:
            payload = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"body is not valid JSON: {e}") from None
        return await index_documents(parse_documents(payload, settings.max_documents))

    @app.post("/v1/documents/upload")
    async def upload_document(request: Request, filename: str) -> JSONResponse:
        """One file as the raw body, read by the readers ``hoprank index`` uses (PDF, HTML...)."""
        try:
            documents, skipped = await asyncio.to_thread(read_upload, filename, await request.body())
        except HoprankError as e:
            raise APIError(400, str(e), param="filename") from None
        return await index_documents(documents, skipped=[{"where": w, "why": y} for w, y in skipped])

    @app.get("/v1/documents/formats")
    async def document_formats() -> dict[str, Any]:
        """What the web page offers: the upload suffixes and example questions for this index."""
        index = getattr(agent, "index", None)
        examples = await asyncio.to_thread(example_questions, index) if index is not None else []
        return {"extensions": upload_extensions(), "examples": examples}

    async def index_documents(documents: list[Document], **extra: Any) -> JSONResponse:
        async with docs_lock:  # one re-index at a time; readers keep the previous generation
            try:
                stats = await asyncio.to_thread(agent.add_documents, documents)
            except HoprankError as e:
                raise APIError(400, str(e)) from None
        index = getattr(agent, "index", None)
        return JSONResponse(
            {
                "added": len(documents),
                "ids": [d.id for d in documents],
                "chunks": len(index) if index is not None else None,
                "stats": to_jsonable(stats),
                **extra,
            }
        )

    # ---- chat ------------------------------------------------------------------------
    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request, body: ChatRequest) -> Any:
        question = validate_chat(body, settings)
        thread_id = threads.resolve(body)
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            chunks = _Chunks(cid, created, settings.model_id, include_usage)
            return EventSourceResponse(
                _stream(agent, question, thread_id, body, chunks, settings, threads),
                headers={"Cache-Control": "no-cache"},
                sep="\n",
                ping=settings.keepalive_s,
                ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep="\n"),
                # SIGTERM: a streamed answer may finish like any other request
                shutdown_grace_period=settings.request_timeout_s,
            )
        answer = await _ask_with_disconnect(
            request, agent, question, thread_id, settings.request_timeout_s, _agent_options(body)
        )
        extra = answer_extra(answer)
        if getattr(answer, "status", "") == "failed":
            return JSONResponse(
                {
                    "error": {
                        "message": f"the agent failed: {answer.error or 'unknown error'}",
                        "type": "upstream_error",
                        "param": None,
                        "code": "agent_failed",
                    },
                    "hoprank": extra,
                },
                status_code=502,
            )
        threads.remember(body, answer.answer, thread_id)
        usage = _usage(answer)
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": settings.model_id,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.answer},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
            "hoprank": extra,
        }

    return app


def parse_documents(payload: Any, max_documents: int = 10_000) -> list[Document]:
    """``[{id, title, text, metadata}]`` or ``{"documents": [...]}`` -> Documents, or a 400."""
    if isinstance(payload, dict) and "documents" in payload:
        payload = payload["documents"]
    elif isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise APIError(
            400, 'send a JSON list of documents: [{"id": ..., "title": ..., "text": ..., "metadata": {...}}]'
        )
    if len(payload) > max_documents:
        raise APIError(400, f"at most {max_documents} documents per request, got {len(payload)}")
    out: list[Document] = []
    seen: set[str] = set()
    for i, rec in enumerate(payload):
        if not isinstance(rec, dict):
            raise APIError(400, f"documents[{i}] must be an object, got {type(rec).__name__}")
        text = rec.get("text", rec.get("contents", rec.get("body")))
        if not isinstance(text, str) or not text.strip():
            raise APIError(400, f"documents[{i}] has no non-empty 'text' string")
        doc_id = rec.get("id")
        if doc_id is None:
            doc_id = f"upload-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"
        elif not isinstance(doc_id, str) or not doc_id.strip():
            # str(["a"]) would silently become the id "['a']"
            raise APIError(
                400,
                f"documents[{i}].id must be a non-empty string, got {type(doc_id).__name__} {doc_id!r:.80}",
                param=f"documents[{i}].id",
            )
        if doc_id in seen:
            raise APIError(400, f"documents[{i}]: duplicate id {doc_id!r}")
        seen.add(doc_id)
        meta = rec.get("metadata") or {}
        if not isinstance(meta, dict):
            raise APIError(400, f"documents[{i}].metadata must be an object")
        title = rec.get("title") or ""
        if not isinstance(title, str):
            raise APIError(
                400, f"documents[{i}].title must be a string, got {type(title).__name__}", param=f"documents[{i}].title"
            )
        out.append(
            Document(id=doc_id, text=text, title=str(title), source=str(rec.get("source", "upload")), metadata=meta)
        )
    return out


async def _ask_with_disconnect(
    request: Request, agent: Any, question: str, thread_id: str, timeout_s: float, options: dict[str, Any]
) -> Any:
    """Run the agent; cancel it when the client goes away or the deadline passes."""
    task = asyncio.ensure_future(agent.aask(question, thread_id=thread_id, **options))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            if done:
                break
            if await request.is_disconnected():
                task.cancel()
                raise APIError(499, "client disconnected", code="client_closed")
            if time.monotonic() >= deadline:
                task.cancel()
                raise APIError(
                    504, f"the agent did not answer within {timeout_s:g} s", type_="timeout_error", code="timeout"
                )
        return task.result()
    except InvalidQueryError as e:
        raise APIError(400, str(e), param="messages") from None
    except APIError:
        raise
    except asyncio.CancelledError:
        task.cancel()
        raise
    except Exception as e:  # an LLM or backend failure: a clear 5xx, never a hang
        log.exception("agent failed")
        raise APIError(
            502, f"the agent failed: {type(e).__name__}: {e}", type_="upstream_error", code="agent_failed"
        ) from None
    finally:
        if not task.done():
            task.cancel()


def _event(obj: Any) -> ServerSentEvent:
    return ServerSentEvent(json.dumps(obj, ensure_ascii=False), sep="\n")


class _Chunks:
    """The ``chat.completion.chunk`` objects of one streamed reply."""

    def __init__(self, cid: str, created: int, model: str, include_usage: bool):
        self.cid, self.created, self.model, self.include_usage = cid, created, model, include_usage

    def chunk(self, delta: dict, finish: str | None = None, extra: dict | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if self.include_usage:  # OpenAI's shape: null on every chunk but the last
            d["usage"] = None
        if extra is not None:
            d["hoprank"] = extra
        return d

    def usage(self, answer: Any) -> dict[str, Any]:
        """The last chunk under ``stream_options.include_usage``: no choices, the usage."""
        return {
            "id": self.cid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": _usage(answer),
        }


def _agent_options(req: ChatRequest) -> dict[str, Any]:
    """What the request asks of the agent beyond the question: the conversation a stateless
    client resent (the turns before the question) and the answer's token cap. Only options
    that are set, so an agent without them keeps working."""
    options: dict[str, Any] = {}
    prior = [m for m in _plain(req.messages[:-1]) if m["role"] in ("user", "assistant") and m["content"].strip()]
    if prior:
        options["history"] = prior
    cap = req.max_completion_tokens or req.max_tokens
    if cap:
        options["max_tokens"] = cap
    return options


async def _stream(
    agent: Any,
    question: str,
    thread_id: str,
    req: ChatRequest,
    chunks: _Chunks,
    settings: ServerSettings,
    threads: ThreadMap,
) -> AsyncIterator[ServerSentEvent]:
    """OpenAI chunk stream: role, step chunks (empty delta + ``hoprank.step``), the answer's
    tokens as the LLM writes them, the rest of the answer (text the agent held back or wrote
    without the LLM, such as a span answer), a finish chunk with ``hoprank`` (citations,
    evidence, trace), the usage chunk when asked for, then ``[DONE]``.

    sse-starlette does the framing, the keep-alive comments and the disconnect watch: when
    the client leaves it cancels this generator, which closes ``agent.astream`` and so stops
    the graph. The deadline is enforced here, per event."""
    yield _event(chunks.chunk({"role": "assistant", "content": ""}, extra={"thread_id": thread_id}))
    events = agent.astream(question, thread_id=thread_id, tokens=True, **_agent_options(req))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.request_timeout_s
    shown: list[str] = []
    error: APIError | None = None
    try:
        while True:
            try:
                ev = await asyncio.wait_for(anext(events), max(0.0, deadline - loop.time()))
            except StopAsyncIteration:
                error = APIError(502, "the agent ended without an answer", "upstream_error", code="agent_failed")
                break
            etype = ev.get("type") if isinstance(ev, dict) else None
            if etype == "token":
                shown.append(ev["text"])
                yield _event(chunks.chunk({"content": ev["text"]}))
            elif etype == "step":
                step = to_jsonable({k: v for k, v in ev.items() if k != "type"})
                yield _event(chunks.chunk({}, extra={"step": step, "thread_id": thread_id}))
            elif etype == "answer":
                for event in _finish(ev["answer"], "".join(shown), chunks):
                    yield event
                if getattr(ev["answer"], "status", "") != "failed":
                    threads.remember(req, ev["answer"].answer or "", thread_id)
                break
            elif etype == "error":
                status = int(ev.get("status", 502))
                kind = "invalid_request_error" if status == 400 else "upstream_error"
                error = APIError(status, f"the agent failed: {ev.get('error')}", kind, code="agent_failed")
                break
    except asyncio.TimeoutError:
        timeout = settings.request_timeout_s
        error = APIError(504, f"the agent did not answer within {timeout:g} s", "timeout_error", code="timeout")
    except InvalidQueryError as e:
        error = APIError(400, f"the agent failed: {e}", code="agent_failed")
    except Exception as e:  # noqa: BLE001 - becomes an error event, never a hung stream
        log.exception("agent stream failed")
        error = APIError(502, f"the agent failed: {type(e).__name__}: {e}", "upstream_error", code="agent_failed")
    finally:
        await events.aclose()  # stops the graph when the client went away mid-answer
    if error is not None:
        yield _event(error.body())
    yield ServerSentEvent("[DONE]", sep="\n")


def _finish(answer: Any, shown: str, chunks: _Chunks) -> Iterator[ServerSentEvent]:
    """The end of a streamed reply: the part of the answer not shown yet, the finish chunk
    and the usage chunk, or the error object of a failed answer.

    The tokens shown are a prefix of the answer except when something rewrote it after
    generation (a revision in ``verify`` mode); then the finish chunk carries the answer in
    ``hoprank.answer`` with ``hoprank.stream_replaced: true``, for clients that can replace."""
    extra = answer_extra(answer)
    if getattr(answer, "status", "") == "failed":
        err = APIError(
            502, f"the agent failed: {answer.error or 'unknown error'}", "upstream_error", code="agent_failed"
        ).body()
        yield _event(err | {"hoprank": extra})
        return
    text = answer.answer or ""
    if text.startswith(shown):
        if text[len(shown) :]:
            yield _event(chunks.chunk({"content": text[len(shown) :]}))
    else:
        extra |= {"answer": text, "stream_replaced": True}
    yield _event(chunks.chunk({}, finish="stop", extra=extra))
    if chunks.include_usage:
        yield _event(chunks.usage(answer))


def _usage(answer: Any) -> dict[str, int]:
    """OpenAI's usage object from the answer's LLM accounting (every call of the question,
    cache replays included), whether the trace holds the ``Usage`` record or its dict."""
    u = (getattr(answer, "trace", None) or {}).get("usage")
    u = u if isinstance(u, Usage) else Usage.from_dict(u)
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.tokens}


def _version() -> str:
    try:
        from hoprank import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "0"


# ---------------------------------------------------------------------------- running


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket bound now, so a test can use port 0 without a race."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, graceful_s: float = 5.0) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server in a background thread; yields the base URL.

    For tests, benchmarks and notebooks: the same server stack as ``hoprank serve``."""
    import uvicorn

    sock = bind_socket(host, port)
    real_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=graceful_s, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="hoprank-server")
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > 30:
            raise RuntimeError("the hoprank server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{real_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=graceful_s + 5)
        sock.close()


def run_server(
    agent: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServerSettings | None = None,
    graceful_s: float = 30.0,
) -> None:
    """Blocking: serve until SIGINT/SIGTERM; in-flight requests get ``graceful_s`` to finish."""
    import uvicorn

    app = create_app(agent, settings)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=graceful_s)


__all__ = [
    "APIError",
    "AuthMiddleware",
    "is_loopback",
    "ServerSettings",
    "ThreadMap",
    "create_app",
    "parse_documents",
    "run_server",
    "serve_in_thread",
    "to_jsonable",
    "validate_chat",
]
