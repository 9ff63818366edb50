"""The on-disk index: chunks, their embeddings and a manifest, written atomically.

Layout of an index folder::

    manifest.json              generation, settings, sources (file hash -> chunk ids)
    chunks.<gen>.jsonl         one chunk per line
    embeddings.<gen>.npy       float32 [n_chunks, dim], row i = chunk i (memory-mapped)
    qdrant/                    embedded Qdrant store (synced from the chunks on demand)

A build writes the files of a new generation first and switches ``manifest.json`` last
with ``os.replace``; a run killed at any point leaves the previous generation readable.
Re-indexing reuses chunks of unchanged files and embeddings of unchanged chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hoprank.tools.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder
from hoprank.tools.errors import IndexNotFoundError
from hoprank.tools.ingest.chunking import ChunkingConfig, chunk_document
from hoprank.tools.ingest.readers import ReadReport, UnreadableFileError, iter_files, read_file
from hoprank.tools.types import Chunk, Document

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class BuildStats:
    """What a build did, for the CLI summary and the benchmarks."""

    files_seen: int = 0
    files_reused: int = 0
    files_read: int = 0
    files_removed: int = 0
    documents: int = 0
    chunks: int = 0
    chunks_embedded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


class Index:
    """A loaded index. Cheap to open: embeddings are memory-mapped, BM25 is built lazily."""

    def __init__(self, path: Path, manifest: dict[str, Any], chunks: list[Chunk], embeddings: np.ndarray):
        self.path = Path(path)
        self.manifest = manifest
        self.chunks = chunks
        self.embeddings = embeddings
        self._retrievers: dict[str, Any] = {}

    # ---- opening -------------------------------------------------------------------
    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @classmethod
    def open(cls, path: str | Path) -> Index:
        path = Path(path)
        mf = path / MANIFEST
        if not mf.is_file():
            raise IndexNotFoundError(
                f"no hoprank index at {path} (missing {MANIFEST}); build one with "
                f"'hoprank index DOCS... --index {path}'"
            )
        manifest = json.loads(mf.read_text("utf-8"))
        gen = manifest["generation"]
        chunks = []
        with open(path / f"chunks.{gen}.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    chunks.append(Chunk.from_dict(json.loads(line)))
        emb_file = path / f"embeddings.{gen}.npy"
        embeddings = np.load(emb_file, mmap_mode="r") if emb_file.stat().st_size else np.zeros((0, 0), np.float32)
        if len(chunks) != embeddings.shape[0]:
            raise IndexNotFoundError(f"index at {path} is inconsistent: {len(chunks)} chunks, {embeddings.shape[0]} vectors")
        return cls(path, manifest, chunks, embeddings)

    # ---- accessors -----------------------------------------------------------------
    @property
    def generation(self) -> int:
        return int(self.manifest["generation"])

    @property
    def embedding_model(self) -> str:
        return self.manifest.get("embedding_model", DEFAULT_EMBEDDING_MODEL)

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder(self.embedding_model)

    @cached_property
    def chunk_by_id(self) -> dict[str, Chunk]:
        return {c.id: c for c in self.chunks}

    @cached_property
    def row_by_id(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.chunks)}

    def __len__(self) -> int:
        return len(self.chunks)

    def retriever(self, name: str, **opts: Any):
        """A retriever over this index, built once per (name, options) and reused."""
        from hoprank.tools.retrieval.factory import make_retriever

        key = name + json.dumps(opts, sort_keys=True, default=str)
        if key not in self._retrievers:
            self._retrievers[key] = make_retriever(name, self, **opts)
        return self._retrievers[key]

    # ---- building ------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        path: str | Path,
        sources: Iterable[str | Path] = (),
        documents: Sequence[Document] = (),
        chunking: ChunkingConfig | None = None,
        embedding_model: str | None = None,
        show_progress: bool = False,
        qdrant: bool = False,
    ) -> tuple[Index, BuildStats]:
        """Create or update the index at ``path`` from files/folders and/or documents.

        Files whose bytes did not change since the last build are not re-read; chunks whose
        text did not change keep their embedding. Files that no longer exist are dropped.
        Documents passed directly replace earlier documents with the same id.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        old = cls.open(path) if cls.exists(path) else None
        old_manifest = old.manifest if old else {}
        chunking = chunking or (
            ChunkingConfig(**old_manifest["chunking"]) if old else ChunkingConfig()
        )
        embedding_model = embedding_model or (old.embedding_model if old else DEFAULT_EMBEDDING_MODEL)
        settings_same = old is not None and old_manifest.get("chunking") == asdict(chunking) and old.embedding_model == embedding_model
        stats = BuildStats()
        old_sources: dict[str, dict] = dict(old_manifest.get("sources", {})) if settings_same else {}
        old_chunks = old.chunk_by_id if old else {}

        new_sources: dict[str, dict] = {}
        new_chunks: list[Chunk] = []
        report = ReadReport()

        # 1. keep sources of earlier builds whose files still exist (or that came from the API)
        seen_keys: set[str] = set()
        file_list = list(iter_files(sources))
        for f, _ in file_list:
            seen_keys.add(str(f.resolve()))
        api_ids = {d.id for d in documents}
        for key, info in old_sources.items():
            if key in seen_keys:
                continue
            if key.startswith("api:"):
                if key[4:] in api_ids:
                    continue
            elif not Path(key).exists():
                stats.files_removed += 1
                continue
            new_sources[key] = info
            new_chunks.extend(old_chunks[cid] for cid in info["chunk_ids"] if cid in old_chunks)

        # 2. files given now: reuse when the bytes are unchanged, else read and chunk
        from tqdm.auto import tqdm

        for f, doc_id in tqdm(file_list, desc="reading", unit="file", disable=not show_progress):
            stats.files_seen += 1
            key = str(f.resolve())
            try:
                sha = _file_sha1(f)
            except OSError as e:
                report.skipped.append((str(f), f"cannot read: {e.strerror or e}"))
                continue
            prev = old_sources.get(key)
            if prev and prev.get("sha1") == sha and all(c in old_chunks for c in prev["chunk_ids"]):
                stats.files_reused += 1
                new_sources[key] = prev
                new_chunks.extend(old_chunks[c] for c in prev["chunk_ids"])
                continue
            try:
                docs = read_file(f, doc_id)
            except (UnreadableFileError, OSError) as e:
                report.skipped.append((str(f), str(e)))
                continue
            stats.files_read += 1
            ids: list[str] = []
            for d in docs:
                stats.documents += 1
                cs = chunk_document(d, chunking)
                new_chunks.extend(cs)
                ids.extend(c.id for c in cs)
            new_sources[key] = {"sha1": sha, "chunk_ids": ids}

        # 3. documents passed directly (benchmarks, the HTTP API)
        for d in documents:
            cs = chunk_document(d, chunking)
            stats.documents += 1
            new_chunks.extend(cs)
            new_sources[f"api:{d.id}"] = {"sha1": None, "chunk_ids": [c.id for c in cs]}

        # duplicate chunk ids (the same file reachable under two roots): keep the first
        uniq: dict[str, Chunk] = {}
        for c in new_chunks:
            uniq.setdefault(c.id, c)
        new_chunks = list(uniq.values())
        stats.chunks = len(new_chunks)
        stats.skipped = report.skipped
        for fpath, why in report.skipped:
            log.warning("skipped %s: %s", fpath, why)

        # 4. embeddings: reuse rows of unchanged chunks, encode the rest in batches
        embedder = Embedder(embedding_model)
        reuse_rows: dict[str, int] = {}
        if old is not None and settings_same:
            for c in new_chunks:
                oc = old_chunks.get(c.id)
                if oc is not None and oc.metadata.get("text_hash") == c.metadata.get("text_hash"):
                    reuse_rows[c.id] = old.row_by_id[c.id]
        todo = [i for i, c in enumerate(new_chunks) if c.id not in reuse_rows]
        stats.chunks_embedded = len(todo)
        fresh = embedder.encode([_embed_text(new_chunks[i]) for i in todo], show_progress=show_progress)
        dim = fresh.shape[1] if len(todo) else (old.embeddings.shape[1] if old is not None and len(old) else embedder.dim)
        emb = np.zeros((len(new_chunks), dim), dtype=np.float32)
        if todo:
            emb[todo] = fresh
        for i, c in enumerate(new_chunks):
            if c.id in reuse_rows:
                emb[i] = old.embeddings[reuse_rows[c.id]]

        # 5. write the new generation, then switch the manifest atomically
        gen = (old.generation + 1) if old else 1
        chunk_bytes = "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in new_chunks).encode("utf-8")
        atomic_write_bytes(path / f"chunks.{gen}.jsonl", chunk_bytes)
        import io

        buf = io.BytesIO()
        np.save(buf, emb)
        atomic_write_bytes(path / f"embeddings.{gen}.npy", buf.getvalue())
        manifest = {
            "format": FORMAT_VERSION,
            "generation": gen,
            "embedding_model": embedding_model,
            "dim": int(dim),
            "chunking": asdict(chunking),
            "n_chunks": len(new_chunks),
            "sources": new_sources,
        }
        atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
        _remove_old_generations(path, keep=gen)
        index = cls.open(path)
        if qdrant:
            index.retriever("qdrant")  # syncs the embedded Qdrant store
        return index, stats


def _embed_text(chunk: Chunk) -> str:
    """Embed the title with the text: titles carry the entity a multi-hop query names."""
    if chunk.title and not chunk.text.startswith(chunk.title):
        return f"{chunk.title}\n{chunk.text}"
    return chunk.text


def _remove_old_generations(path: Path, keep: int) -> None:
    for f in path.iterdir():
        parts = f.name.split(".")
        if len(parts) == 3 and parts[0] in ("chunks", "embeddings") and parts[1].isdigit() and int(parts[1]) != keep:
            f.unlink(missing_ok=True)
