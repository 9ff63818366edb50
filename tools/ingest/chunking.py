"""Cut documents into chunks by words or by sentences, with overlap.

Chunk ids are ``<doc_id>#<n>``: stable for the same document and chunking settings, and
readable in citations. Each chunk records its character offsets in the document text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from hoprank.tools.types import Chunk, Document

_WORD = re.compile(r"\S+")
_SENT = re.compile(r"[^.!?。！？\n]+(?:[.!?。！？]+|\n+|$)")


@dataclass(frozen=True)
class ChunkingConfig:
    """``size`` and ``overlap`` count words (unit="tokens") or sentences (unit="sentences")."""

    size: int = 200
    overlap: int = 40
    unit: Literal["tokens", "sentences"] = "tokens"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"chunk size must be >= 1, got {self.size}")
        if not 0 <= self.overlap < self.size:
            raise ValueError(f"chunk overlap must be in [0, size), got {self.overlap} for size {self.size}")
        if self.unit not in ("tokens", "sentences"):
            raise ValueError(f"chunk unit must be 'tokens' or 'sentences', got {self.unit!r}")


def _spans(text: str, unit: str) -> list[tuple[int, int]]:
    pattern = _WORD if unit == "tokens" else _SENT
    return [(m.start(), m.end()) for m in pattern.finditer(text) if m.group().strip()]


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def chunk_document(doc: Document, cfg: ChunkingConfig = ChunkingConfig()) -> list[Chunk]:
    spans = _spans(doc.text, cfg.unit)
    if not spans:
        return []
    step = cfg.size - cfg.overlap
    chunks: list[Chunk] = []
    for n, start_idx in enumerate(range(0, len(spans), step)):
        window = spans[start_idx : start_idx + cfg.size]
        start, end = window[0][0], window[-1][1]
        text = doc.text[start:end].strip()
        meta = dict(doc.metadata)
        meta["text_hash"] = text_hash(text)
        chunks.append(
            Chunk(
                id=f"{doc.id}#{n}",
                doc_id=doc.id,
                text=text,
                title=doc.title,
                source=doc.source,
                start=start,
                end=end,
                metadata=meta,
            )
        )
        if start_idx + cfg.size >= len(spans):
            break
    return chunks
