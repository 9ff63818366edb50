"""Shared fixtures. Tests never read ../shared: they build their own small corpora."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURE_DOCS = {
    "ada.md": (
        "# Ada Quill\nAda Quill was born in Marrow Bay in 1871. "
        "She founded the Quill Lamp Works, which built the first tidal lantern."
    ),
    "marrow-bay.md": (
        "# Marrow Bay\nMarrow Bay is a port town on the Seren River. Its lighthouse was lit by a tidal lantern in 1902."
    ),
    "seren.md": "# Seren River\nThe Seren River is 212 kilometres long and flows into the Grey Sound.",
    "lamp-works.md": (
        "# Quill Lamp Works\nQuill Lamp Works was founded in 1896 in Marrow Bay. "
        "It made lanterns for ships and lighthouses."
    ),
    "otto.md": (
        "# Otto Brenn\nOtto Brenn was a clockmaker born in Hollin in 1860. He repaired the town clock of Hollin."
    ),
    "hollin.md": "# Hollin\nHollin is a mountain village on the Ashe River, known for its clock tower built in 1790.",
    "cafe.md": (
        "# Café Ñandú\nThe Café Ñandú in São Brenno serves crème brûlée; its owner Zoë Małecka opened it in 1999."
    ),
}


def write_corpus(root: Path, docs: dict[str, str] = FIXTURE_DOCS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def make_pdf(lines: list[str]) -> bytes:
    """A small one-page PDF whose text layer holds ``lines`` (Helvetica), built with pypdf,
    so upload and ingest tests read a real PDF without shipping a binary fixture."""
    import io

    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    w = PdfWriter()
    page = w.add_blank_page(width=612, height=792)
    ops = ["BT /F1 12 Tf 50 740 Td 16 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    stream = DecodedStreamObject()
    stream.set_data(("\n".join(ops) + " ET").encode("latin-1"))
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
    )
    page[NameObject("/Contents")] = w._add_object(stream)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


class LoopbackServer:
    """A scripted HTTP endpoint on 127.0.0.1 (a free port), so the client under test talks to a real socket
    instead of a mock. Every request (GET, POST, PUT, DELETE) goes to ``respond(handler, body)`` with its JSON
    body (None when it has none); ``respond`` writes the reply, :func:`send_json` for a JSON one."""

    def __init__(self, respond: Callable[[BaseHTTPRequestHandler, Any], None], path: str = "") -> None:
        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                respond(self, json.loads(self.rfile.read(n)) if n else None)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
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


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, corpus_dir):
    """One index shared by read-only tests (building costs an embedding pass)."""
    from hoprank.tools.ingest.index import Index

    path = tmp_path_factory.mktemp("index")
    idx, _ = Index.build(path, sources=[corpus_dir], qdrant=False)
    return idx
