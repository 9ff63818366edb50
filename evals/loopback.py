"""A scripted JSON endpoint on 127.0.0.1, for evaluations and tests that need a real socket on the other side.

Why here: the injection evaluation's obedient model and the test suite's scripted servers (an LLM, a Qdrant
server) are the same thing - a local HTTP server whose replies a function decides - so one implementation serves
both; evals is the lowest layer whose code needs one (tools and agent only talk to servers, never play one).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackServer", "send_json"]


class LoopbackServer:
    """A scripted HTTP endpoint on 127.0.0.1 (a free port), so the client under test talks to a real socket
    instead of a mock. Every request (GET, POST, PUT, DELETE) goes to ``respond(handler, body)`` with its JSON
    body (None when it has none); ``respond`` writes the reply, :func:`send_json` for a JSON one. ``url`` is
    the base address plus ``path`` (e.g. ``/v1`` for an OpenAI-compatible client)."""

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler, Any], None], path: str = "") -> None:
        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                respond(self, json.loads(self.rfile.read(n)) if n else None)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:  # no access log on stderr
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
    """Reply with ``payload`` as JSON and a Content-Length, so clients need not wait for the socket to close."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
