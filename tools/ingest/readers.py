"""Read files of many kinds into :class:`Document` records.

A bad file (binary, undecodable, unparseable, empty) is reported and skipped: one bad file
must never abort an ingest of thousands of good ones. Inside a JSON / JSONL file the unit is
the record: a bad line or a record without text is reported as ``<file>:<line>`` (``.json``:
``<file>:item <n>``) and skipped, and the file's good records are kept.

JSON / JSONL record layout (documented in the README): each record is an object with
``id`` (optional; defaults to ``<file>:<line or index>``), ``text`` (required; ``contents``
or ``body`` are accepted too), ``title`` (optional) and ``metadata`` (optional object).
A ``.json`` file may hold one record, a list of records, or ``{"documents": [...]}``.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from hoprank.tools.errors import HoprankError
from hoprank.tools.types import Document

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}
JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | JSON_SUFFIXES | PDF_SUFFIXES


class UnreadableFileError(Exception):
    """Raised by a reader for a file that cannot be turned into documents."""


class SourceNotFoundError(HoprankError, FileNotFoundError):
    """A file or folder given to index does not exist."""


@dataclass
class ReadReport:
    """What an ingest read and what it had to skip (with the reason for each skip)."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


class _HTMLText(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template"}
    _BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip_depth:
            self._skip_depth -= 1
        elif tag == "title":
            self._in_title = False
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self.title += data
        else:
            self.parts.append(data)


def _decode(raw: bytes, path: Path) -> str:
    if b"\x00" in raw[:8192]:
        raise UnreadableFileError("binary file (NUL bytes)")
    for enc in ("utf-8", "utf-8-sig"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise UnreadableFileError("not valid UTF-8 text")


def _normalise_ws(text: str) -> str:
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text)
    return text.strip()


def _title_from_text(path: Path, text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.lstrip("#").strip()[:200]
    return path.stem


def read_text(path: Path, doc_id: str) -> list[Document]:
    text = _decode(path.read_bytes(), path)
    if not text.strip():
        raise UnreadableFileError("empty file (nothing to index)")
    title = _title_from_text(path, text)
    return [Document(id=doc_id, text=text.strip(), title=title, source=str(path))]


def read_html(path: Path, doc_id: str) -> list[Document]:
    parser = _HTMLText()
    parser.feed(_decode(path.read_bytes(), path))
    text = _normalise_ws(html.unescape("".join(parser.parts)))
    if not text:
        raise UnreadableFileError("empty file (no text in the HTML body)")
    title = parser.title.strip() or _title_from_text(path, text)
    return [Document(id=doc_id, text=text, title=title, source=str(path))]


def read_pdf(path: Path, doc_id: str) -> list[Document]:
    try:
        from pypdf import PdfReader
    except ImportError as e:  # pragma: no cover - pypdf is a core dependency
        raise UnreadableFileError("PDF support needs pypdf (pip install pypdf)") from e
    try:
        reader = PdfReader(str(path))
        pages = [p.extract_text() or "" for p in reader.pages]
    except Exception as e:  # pypdf raises many kinds of errors on broken files
        raise UnreadableFileError(f"cannot parse PDF: {e}") from e
    text = _normalise_ws("\n\n".join(pages))
    if not text:
        raise UnreadableFileError("PDF has no extractable text (scanned images?)")
    meta = {"pages": len(pages)}
    return [Document(id=doc_id, text=text, title=_title_from_text(path, text), source=str(path), metadata=meta)]


def record_to_document(rec: object, default_id: str, source: str, where: str | None = None) -> Document:
    """Turn one JSON record into a Document, or raise saying which field is wrong."""
    label = "record" if where else f"record {default_id}"  # ``where`` already names file and line
    if not isinstance(rec, dict):
        raise UnreadableFileError(f"{label} is not a JSON object")
    text = rec.get("text", rec.get("contents", rec.get("body")))
    if not isinstance(text, str) or not text.strip():
        raise UnreadableFileError(f"{label} has no non-empty 'text' field")
    meta = rec.get("metadata") or {}
    if not isinstance(meta, dict):
        raise UnreadableFileError(f"{label}: 'metadata' must be an object")
    rid = rec.get("id", rec.get("_id", default_id))
    return Document(id=str(rid), text=text.strip(), title=str(rec.get("title") or ""), source=source, metadata=meta)


def read_json(path: Path, doc_id: str, skipped: list[tuple[str, str]] | None = None) -> list[Document]:
    """Records of a .json / .jsonl file. A bad record is appended to ``skipped`` as
    (``<file>:<line>``, why) and the others are kept; without ``skipped`` it is logged."""
    text = _decode(path.read_bytes(), path)
    if not text.strip():
        raise UnreadableFileError("empty file (nothing to index)")
    bad: list[tuple[str, str]] = []
    docs: list[Document] = []
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        records: list[tuple[str, str, object]] = []  # (default id, where, record)
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((f"{doc_id}:{i}", f"{path}:{i}", json.loads(line)))
            except json.JSONDecodeError as e:
                bad.append((f"{path}:{i}", f"invalid JSON ({e.msg})"))
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UnreadableFileError(f"invalid JSON at line {e.lineno}: {e.msg}") from e
        if isinstance(data, dict) and isinstance(data.get("documents"), list):
            data = data["documents"]
        items = data if isinstance(data, list) else [data]
        records = [(f"{doc_id}:{i}", f"{path}:item {i}", r) for i, r in enumerate(items)]
    for default_id, where, rec in records:
        try:
            docs.append(record_to_document(rec, default_id, str(path), where=where))
        except UnreadableFileError as e:
            bad.append((where, str(e)))
    if not docs and not bad:
        raise UnreadableFileError("no records (empty list)")
    if skipped is None:
        for where, why in bad:
            log.warning("skipped %s: %s", where, why)
    else:
        skipped.extend(bad)
    return docs


def read_file(path: Path, doc_id: str, skipped: list[tuple[str, str]] | None = None) -> list[Document]:
    """Documents of one file; raises :class:`UnreadableFileError` for a file that yields none
    (JSON records that fail on their own go to ``skipped``, see :func:`read_json`)."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return read_text(path, doc_id)
    if suffix in HTML_SUFFIXES:
        return read_html(path, doc_id)
    if suffix in JSON_SUFFIXES:
        return read_json(path, doc_id, skipped)
    if suffix in PDF_SUFFIXES:
        return read_pdf(path, doc_id)
    raise UnreadableFileError(f"unsupported file type {suffix or '(none)'}")


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, str]]:
    """Yield (file, document id) for every file under the given files and folders.

    The document id is the path relative to the folder it was found under (posix), so the
    same file indexed from the same root keeps the same id across runs and machines.
    """
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    yield f, f.relative_to(p).as_posix()
        elif p.is_file():
            yield p, p.name
        else:
            raise SourceNotFoundError(f"no such file or folder: {p}")
