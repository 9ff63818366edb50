"""What the web page needs from the server besides chat: the upload formats, reading an
uploaded file, and example questions that fit the index being served.

Why here and not in the page: the page must accept exactly what ``hoprank index`` reads, so
the formats come from the readers' own suffix sets and an upload goes through the same
readers (PDF and HTML included) instead of a second, JavaScript reader that could drift.
The example questions are derived from the index, so a user who indexed their own files is
not shown questions about the bundled sample corpus.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from hoprank.tools.errors import HoprankError
from hoprank.tools.ingest.readers import SUPPORTED_SUFFIXES, UnreadableFileError, read_file
from hoprank.tools.retrieval.links import link_graph, title_is_name
from hoprank.tools.types import Document

SCAN_CHUNKS = 400  # chunks looked at for example questions (the first ones, in index order)


class UploadError(HoprankError, ValueError):
    """An uploaded file that cannot be indexed (its type, its name or its content)."""


def upload_extensions() -> list[str]:
    """The file suffixes an upload accepts: the ones ``hoprank index`` reads."""
    return sorted(SUPPORTED_SUFFIXES)


def read_upload(filename: str, data: bytes) -> tuple[list[Document], list[tuple[str, str]]]:
    """The documents of one uploaded file, read by the CLI's readers, and the records skipped.

    The file name (without any folder a browser may send) becomes the document id, as
    ``hoprank index`` names a file it is given directly; the readers need a path, so the
    bytes go through a temporary file under that name."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name.strip()
    if not name or name.startswith("."):
        raise UploadError(f"an upload needs a file name, got {filename!r:.80}")
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UploadError(
            f"cannot index {suffix or 'files without a suffix'}: upload one of {' '.join(upload_extensions())}"
        )
    if not data:
        raise UploadError(f"{name} is empty")
    skipped: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="hoprank-upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            docs = read_file(path, name, skipped)
        except UnreadableFileError as e:
            raise UploadError(f"cannot read {name}: {e}") from None
    # the readers record where they read from: the temporary path means nothing to anyone
    tmp_prefix = str(path)
    docs = [dataclasses.replace(d, source=d.source.replace(tmp_prefix, name)) for d in docs]
    skipped = [(where.replace(tmp_prefix, name), why) for where, why in skipped]
    if not docs:
        raise UploadError(f"{name} holds no readable record: " + "; ".join(f"{w}: {y}" for w, y in skipped[:3]))
    return docs, skipped


def example_questions(index: Any, n: int = 2) -> list[str]:
    """Up to ``n`` questions the served index can answer, or none.

    The rule: a passage titled with a name that mentions another named document gives a
    two-hop question, "How is <title> connected to <other title>?" (candidates from the
    entity links the agent itself follows, see tools/retrieval/links.py, kept when the text
    names the other title itself, so a question never rests on a weaker link); without such pairs, "What do the
    documents say about <title>?" for named documents; with no named document, nothing
    (file-name titles make poor questions). Deterministic: index order, each title once."""
    chunks = list(index.chunks)
    if not chunks or n < 1:
        return []
    graph = link_graph(index)
    used: set[str] = set()
    pairs: list[str] = []
    singles: list[str] = []
    for row, chunk in enumerate(chunks[:SCAN_CHUNKS]):
        title = chunk.title.strip()
        if not title_is_name(title) or title in used:
            continue
        if title not in singles:
            singles.append(title)
        for other in graph.mentioned(chunk.text, exclude=row):
            other_title = chunks[other].title.strip()
            if (
                chunks[other].doc_id != chunk.doc_id
                and title_is_name(other_title)
                and other_title not in used | {title}
                and _names(chunk.text, other_title)
            ):
                pairs.append(f"How is {title} connected to {other_title}?")
                used |= {title, other_title}
                break
        if len(pairs) >= n:
            break
    if pairs:
        return pairs[:n]
    return [f"What do the documents say about {t}?" for t in singles[:n]]


def _names(text: str, title: str) -> bool:
    """Does ``text`` name ``title`` as whole words (case-insensitive)?"""
    return re.search(rf"(?<!\w){re.escape(title)}(?!\w)", text, re.IGNORECASE) is not None
