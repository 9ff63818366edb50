"""The on-disk index: chunks, their embeddings and a manifest, written atomically.

Layout of an index folder::

    manifest.json              generation, encoder (name + dim), settings, sources
    chunks.<gen>.jsonl         one chunk per line
    embeddings.<gen>.npy       float32 [n_chunks, dim], row i = chunk i (memory-mapped)
    .batches-<encoder>/        embedding batches of a build in progress (removed when it ends)
    qdrant/                    embedded Qdrant store (synced from the chunks on demand)

A build writes the files of a new generation first and switches ``manifest.json`` last
with ``os.replace``; a run killed at any point leaves the previous generation readable.
Re-indexing reuses chunks of unchanged files and embeddings of unchanged chunks.

Embeddings are streamed: each batch is written to ``.batches-<encoder>/`` as soon as it is
encoded (keyed by a hash of the embedded text), and the final matrix is assembled into a
memory-mapped file. Memory stays bounded by one batch, and a build killed mid-way resumes:
the next run encodes only the texts no finished batch holds.

An index records its encoder; searching it or adding to it with another encoder is an
:class:`~hoprank.tools.embeddings.EncoderMismatchError`. Indexes written before the
registry existed carry no encoder field and were encoded with MiniLM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import numpy as np

from hoprank.tools.embeddings import (
    DEFAULT_ENCODER,
    LEGACY_ENCODER,
    Encoder,
    EncoderMismatchError,
    canonical_encoder_name,
    encoder_rate,
    make_encoder,
)
from hoprank.tools.errors import IndexNotFoundError
from hoprank.tools.ingest.chunking import ChunkingConfig, chunk_document
from hoprank.tools.ingest.readers import UnreadableFileError, iter_files, read_file
from hoprank.tools.retrieval.base import Retriever
from hoprank.tools.retrieval.factory import make_retriever
from hoprank.tools.types import Chunk, Document

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: the manifest records the encoder {"name", "dim"}
EMBED_BATCH = 256  # chunks per embedding batch written to disk
LARGE_JOB_CHUNKS = 20_000  # above this, warn with a time estimate before encoding


# ---- files -------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A fresh temp file next to ``path`` for the caller to fill; fsynced and renamed over
    ``path`` when the block ends, removed if it raises.

    A path rather than an open file, so writers that open the file themselves (a numpy
    memmap) get the same crash safety as streamed writes. Created with mode 0666 minus the
    umask (like any file the user writes), not the 0600 of ``tempfile.mkstemp``: an index is
    data other users and services may need to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """:func:`_atomic_path` as an open binary file."""
    with _atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (the directory entry) where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    with _atomic_file(path) as f:
        f.write(data)


def _file_sha1(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


@dataclass
class BuildStats:
    """What a build did, for the CLI summary and the benchmarks."""

    files_seen: int = 0
    files_reused: int = 0
    files_read: int = 0
    files_removed: int = 0
    documents: int = 0
    chunks: int = 0
    chunks_embedded: int = 0  # chunks whose vector is new in this build (not from the old index)
    chunks_resumed: int = 0  # of those, texts found in batches of an interrupted earlier build
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or file:line, why)
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)  # (id, kept file, skipped file)
    warnings: list[str] = field(default_factory=list)


def _encoder_of(manifest: dict[str, Any]) -> tuple[str, int | None]:
    enc = manifest.get("encoder")
    if isinstance(enc, dict) and enc.get("name"):
        return str(enc["name"]), enc.get("dim")
    # format 1 had "embedding_model" (always the bundled MiniLM in practice)
    return canonical_encoder_name(manifest.get("embedding_model") or LEGACY_ENCODER), manifest.get("dim")


def check_encoder(path: Path, recorded: str, wanted: str, doing: str = "open") -> None:
    """One-line error when ``wanted`` is not the encoder the index at ``path`` was built with."""
    if canonical_encoder_name(wanted) != recorded:
        raise EncoderMismatchError(
            f"cannot {doing} index {path} with encoder {canonical_encoder_name(wanted)!r}: it was built with "
            f"{recorded!r}; use --encoder {recorded}, or a new --index folder for {canonical_encoder_name(wanted)!r}"
        )


class Index:
    """A loaded index. Cheap to open: embeddings are memory-mapped, BM25 is built lazily."""

    def __init__(self, path: Path, manifest: dict[str, Any], chunks: list[Chunk], embeddings: np.ndarray):
        self.path = Path(path)
        self.manifest = manifest
        self.chunks = chunks
        self.embeddings = embeddings
        self._retrievers: dict[str, Retriever] = {}

    # ---- opening -------------------------------------------------------------------
    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @classmethod
    def open(cls, path: str | Path, encoder: str | None = None) -> Index:
        """Open the index at ``path``; with ``encoder``, refuse one built with another."""
        path = Path(path)
        mf = path / MANIFEST
        if not mf.is_file():
            raise IndexNotFoundError(
                f"no hoprank index at {path} (missing {MANIFEST}); build one with "
                f"'hoprank index DOCS... --index {path}'"
            )
        manifest = json.loads(mf.read_text("utf-8"))
        if encoder is not None:
            check_encoder(path, _encoder_of(manifest)[0], encoder)
        gen = manifest["generation"]
        chunks = []
        with open(path / f"chunks.{gen}.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    chunks.append(Chunk.from_dict(json.loads(line)))
        emb_file = path / f"embeddings.{gen}.npy"
        embeddings = np.load(emb_file, mmap_mode="r") if chunks else np.zeros((0, manifest.get("dim") or 0), np.float32)
        if len(chunks) != embeddings.shape[0]:
            raise IndexNotFoundError(
                f"index at {path} is inconsistent: {len(chunks)} chunks, {embeddings.shape[0]} vectors"
            )
        return cls(path, manifest, chunks, embeddings)

    # ---- accessors -----------------------------------------------------------------
    @property
    def generation(self) -> int:
        return int(self.manifest["generation"])

    @property
    def encoder_name(self) -> str:
        """The encoder this index was built with (``minilm`` for pre-registry indexes)."""
        return _encoder_of(self.manifest)[0]

    @property
    def embedding_model(self) -> str:  # the pre-registry name of encoder_name
        return self.encoder_name

    @cached_property
    def embedder(self) -> Encoder:
        """The encoder to search this index with (queries: ``embedder.encode_queries``)."""
        enc = make_encoder(self.encoder_name)
        if self.embeddings.shape[1] and enc.dim != self.embeddings.shape[1]:
            raise EncoderMismatchError(
                f"index {self.path} holds {self.embeddings.shape[1]}-d vectors "
                f"but encoder {enc.name!r} gives {enc.dim}-d"
            )
        return enc

    @cached_property
    def chunk_by_id(self) -> dict[str, Chunk]:
        return {c.id: c for c in self.chunks}

    @cached_property
    def row_by_id(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.chunks)}

    def __len__(self) -> int:
        return len(self.chunks)

    def retriever(self, name: str, **opts: Any) -> Retriever:
        """A retriever over this index, built once per (name, options) and reused."""
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
        encoder: str | Encoder | None = None,
        show_progress: bool = False,
        qdrant: bool = False,
        batch_size: int = EMBED_BATCH,
    ) -> tuple[Index, BuildStats]:
        """Create or update the index at ``path`` from files/folders and/or documents.

        Files whose bytes did not change since the last build are not re-read; chunks whose
        text did not change keep their embedding. Files that no longer exist are dropped.
        Documents passed directly replace earlier API documents with the same id.

        Equal document ids from different sources: the one read first is kept, later ones
        are skipped with a warning naming both files. Reading order: documents kept from
        earlier builds, then the given paths in order (files in a folder sorted by path),
        then ``documents``. ``encoder``: a registry name, a sentence-transformers path or an
        :class:`Encoder`; default: the index's own, else :data:`DEFAULT_ENCODER`.
        """
        path = Path(path)
        file_list = list(iter_files(sources))  # a missing source fails here, before any folder exists
        old = cls.open(path) if cls.exists(path) else None
        old_manifest = old.manifest if old else {}
        if isinstance(encoder, Encoder):
            enc = encoder
        else:
            enc = make_encoder(encoder or (old.encoder_name if old else DEFAULT_ENCODER))
        if old is not None:
            check_encoder(path, old.encoder_name, enc.name, doing="add to")
        path.mkdir(parents=True, exist_ok=True)
        chunking = chunking or (ChunkingConfig(**old_manifest["chunking"]) if old else ChunkingConfig())
        settings_same = old is not None and old_manifest.get("chunking") == asdict(chunking)
        stats = BuildStats()
        old_sources: dict[str, dict] = dict(old_manifest.get("sources", {})) if settings_same else {}
        old_chunks = old.chunk_by_id if old else {}

        new_sources: dict[str, dict] = {}
        new_chunks: list[Chunk] = []
        doc_owner: dict[str, str] = {}  # document id -> source key that supplied it first

        def add(key: str, chunks: list[Chunk], label: str) -> tuple[list[str], bool]:
            """Add a source's chunks, minus documents another source supplied first;
            returns the kept chunk ids and whether a document was lost to a duplicate id."""
            lost: set[str] = set()
            for c in chunks:
                owner = doc_owner.setdefault(c.doc_id, key)
                if owner != key and c.doc_id not in lost:
                    lost.add(c.doc_id)
                    kept = _label(owner)
                    stats.duplicates.append((c.doc_id, kept, label))
                    log.warning(
                        "duplicate id %r in %s: already read from %s, which is kept (first read wins)",
                        c.doc_id,
                        label,
                        kept,
                    )
            kept_chunks = [c for c in chunks if c.doc_id not in lost]
            new_chunks.extend(kept_chunks)
            return [c.id for c in kept_chunks], bool(lost)

        # 1. keep sources of earlier builds whose files still exist (or that came from the API)
        seen_keys = {str(f.resolve()) for f, _ in file_list}
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
            ids, _ = add(
                key,
                [old_chunks[cid] for cid in info["chunk_ids"] if cid in old_chunks],
                _label(key),
            )
            new_sources[key] = {**info, "chunk_ids": ids}

        # 2. files given now: reuse when the bytes are unchanged, else read and chunk
        from tqdm.auto import tqdm

        done_keys: set[str] = set()
        for f, doc_id in tqdm(file_list, desc="reading", unit="file", disable=not show_progress):
            key = str(f.resolve())
            if key in done_keys:  # the same file reached twice (a folder and a file in it)
                continue
            done_keys.add(key)
            stats.files_seen += 1
            try:
                sha = _file_sha1(f)
            except OSError as e:
                stats.skipped.append((str(f), f"cannot read: {e.strerror or e}"))
                continue
            prev = old_sources.get(key)
            if prev and prev.get("sha1") == sha and all(c in old_chunks for c in prev["chunk_ids"]):
                stats.files_reused += 1
                ids, lost = add(key, [old_chunks[c] for c in prev["chunk_ids"]], str(f))
                new_sources[key] = {"sha1": None if lost else sha, "chunk_ids": ids}
                continue
            try:
                docs = read_file(f, doc_id, skipped=stats.skipped)
            except (UnreadableFileError, OSError) as e:
                stats.skipped.append((str(f), str(e)))
                continue
            stats.files_read += 1
            cs: list[Chunk] = []
            for d in docs:
                stats.documents += 1
                cs.extend(chunk_document(d, chunking))
            ids, lost = add(key, cs, str(f))
            # a file that lost a document to a duplicate id is re-read next time (no sha1), so
            # the rule is applied afresh and the warning repeats while the conflict lasts
            new_sources[key] = {"sha1": None if lost else sha, "chunk_ids": ids}

        # 3. documents passed directly (benchmarks, the HTTP API)
        for d in documents:
            key = f"api:{d.id}"
            cs = chunk_document(d, chunking)
            stats.documents += 1
            ids, _ = add(key, cs, "the documents passed in")
            new_sources[key] = {"sha1": None, "chunk_ids": ids}
        stats.chunks = len(new_chunks)
        for where, why in stats.skipped:
            log.warning("skipped %s: %s", where, why)

        # 4. embeddings: reuse rows of unchanged chunks, stream the rest to disk in batches
        reuse: dict[int, int] = {}  # new row -> old row
        if old is not None and settings_same:
            for i, c in enumerate(new_chunks):
                oc = old_chunks.get(c.id)
                if oc is not None and oc.metadata.get("text_hash") == c.metadata.get("text_hash"):
                    reuse[i] = old.row_by_id[c.id]
        gen = (old.generation + 1) if old else 1
        emb_path = path / f"embeddings.{gen}.npy"
        dim = _write_embeddings(
            path,
            emb_path,
            new_chunks,
            reuse,
            old.embeddings if old is not None else None,
            enc,
            batch_size,
            show_progress,
            stats,
        )

        # 5. write the chunks of the new generation, then switch the manifest atomically
        with _atomic_file(path / f"chunks.{gen}.jsonl") as f:
            for c in new_chunks:
                f.write((json.dumps(c.to_dict(), ensure_ascii=False) + "\n").encode("utf-8"))
        manifest = {
            "format": FORMAT_VERSION,
            "generation": gen,
            "encoder": {"name": enc.name, "dim": int(dim)},
            "dim": int(dim),
            "chunking": asdict(chunking),
            "n_chunks": len(new_chunks),
            "sources": new_sources,
        }
        atomic_write_bytes(path / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
        _remove_old_generations(path, keep=gen)
        _remove_leftovers(path)
        index = cls.open(path)
        index.__dict__["embedder"] = enc  # the encoder already loaded for the build
        if qdrant:
            index.retriever("qdrant")  # syncs the embedded Qdrant store
        return index, stats


def _label(key: str) -> str:
    return "the documents passed in" if key.startswith("api:") else key


def _embed_text(chunk: Chunk) -> str:
    """Embed the title with the text: titles carry the entity a multi-hop query names."""
    if chunk.title and not chunk.text.startswith(chunk.title):
        return f"{chunk.title}\n{chunk.text}"
    return chunk.text


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _batch_dir(path: Path, encoder_name: str) -> Path:
    """Where the batches of an unfinished build wait, one folder per encoder (a batch
    encoded with one encoder must never be reused by another)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_name)[-40:]
    return path / f".batches-{slug}-{_text_key(encoder_name)[:8]}"


def _finished_batches(folder: Path, wanted: set[str]) -> dict[str, Path]:
    """Text key -> batch file, for the wanted keys that an earlier (killed) build encoded."""
    found: dict[str, Path] = {}
    for f in sorted(folder.glob("batch-*.npz")):
        try:
            with np.load(f) as z:
                keys = [str(k) for k in z["keys"]]
        except (OSError, ValueError, KeyError):  # an unreadable leftover: encode again
            continue
        for k in keys:
            if k in wanted:
                found.setdefault(k, f)
    return found


def _write_embeddings(
    path: Path,
    target: Path,
    chunks: list[Chunk],
    reuse: dict[int, int],
    old_embeddings: np.ndarray | None,
    enc: Encoder,
    batch_size: int,
    show_progress: bool,
    stats: BuildStats,
) -> int:
    """Write the embedding matrix of ``chunks`` to ``target``; returns its dimension.

    Rows in ``reuse`` are copied from the old matrix; the other texts are encoded in
    batches, each saved to the batch folder as it finishes, then every row is copied into a
    memory-mapped file. Peak memory: one batch plus the text keys."""
    rows_by_key: dict[str, list[int]] = {}
    for i, c in enumerate(chunks):
        if i not in reuse:
            rows_by_key.setdefault(_text_key(_embed_text(c)), []).append(i)
    stats.chunks_embedded = sum(len(r) for r in rows_by_key.values())
    folder = _batch_dir(path, enc.name)
    done = _finished_batches(folder, set(rows_by_key)) if folder.is_dir() else {}
    stats.chunks_resumed = sum(len(rows_by_key[k]) for k in done)
    pending = [k for k in rows_by_key if k not in done]
    dim = enc.dim
    if old_embeddings is not None and reuse and old_embeddings.shape[1] != dim:
        raise EncoderMismatchError(
            f"index {path} holds {old_embeddings.shape[1]}-d vectors; encoder {enc.name!r} gives {dim}-d"
        )
    batch_size = max(1, int(batch_size))
    if len(pending) > LARGE_JOB_CHUNKS:
        rate = encoder_rate(enc.name)
        eta = (
            f"about {len(pending) / rate / 60:.0f} minutes at {rate:.0f} chunks/s (measured on 2 CPU cores)"
            if rate
            else "time unknown"
        )
        msg = (
            f"large ingest: {len(pending):,} chunks to embed with {enc.name} in {-(-len(pending) // batch_size):,} "
            f"batches of {batch_size}, {eta}; finished batches are kept, so an interrupted run resumes"
        )
        stats.warnings.append(msg)
        log.warning(msg)

    if pending:
        from tqdm.auto import tqdm

        folder.mkdir(parents=True, exist_ok=True)
        bar = tqdm(
            total=stats.chunks_embedded,
            initial=stats.chunks_resumed,
            desc=f"embedding ({enc.name})",
            unit="chunk",
            disable=not show_progress,
        )
        for b in range(0, len(pending), batch_size):
            keys = pending[b : b + batch_size]
            vecs = np.asarray(
                enc.encode_passages([_embed_text(chunks[rows_by_key[k][0]]) for k in keys]),
                dtype=np.float32,
            )
            if vecs.shape != (len(keys), dim):
                raise EncoderMismatchError(
                    f"encoder {enc.name!r} returned shape {vecs.shape}, expected ({len(keys)}, {dim})"
                )
            batch_file = folder / f"batch-{_text_key(''.join(keys))}.npz"
            with _atomic_file(batch_file) as f:
                np.savez(f, keys=np.array(keys), vectors=vecs)
            for k in keys:
                done[k] = batch_file
            bar.update(sum(len(rows_by_key[k]) for k in keys))
        bar.close()

    if not chunks:
        with _atomic_file(target) as f:
            np.save(f, np.zeros((0, dim), dtype=np.float32))
        return dim
    with _atomic_path(target) as tmp:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(chunks), dim))
        filled = np.zeros(len(chunks), dtype=bool)
        if reuse:
            new_rows = np.fromiter(reuse.keys(), dtype=np.int64, count=len(reuse))
            old_rows = np.fromiter(reuse.values(), dtype=np.int64, count=len(reuse))
            for s in range(0, len(new_rows), 8192):  # blocks: never the whole old matrix at once
                mm[new_rows[s : s + 8192]] = old_embeddings[old_rows[s : s + 8192]]
            filled[new_rows] = True
        by_file: dict[Path, list[str]] = {}
        for k, f in done.items():
            by_file.setdefault(f, []).append(k)
        for f, keys in by_file.items():
            with np.load(f) as z:
                pos = {str(k): i for i, k in enumerate(z["keys"])}
                vecs = z["vectors"]
            for k in keys:
                rows = rows_by_key[k]
                mm[rows] = vecs[pos[k]]
                filled[rows] = True
        if not filled.all():  # pragma: no cover - a bug, never a silent zero vector
            raise RuntimeError(f"{int((~filled).sum())} chunks got no embedding")
        mm.flush()
        del mm
    return dim


def _remove_leftovers(path: Path) -> None:
    """After a finished build: batch folders (of any encoder: the index now fixes its
    encoder) and temp files of killed runs."""
    for f in path.iterdir():
        if f.name.startswith(".batches-") and f.is_dir():
            shutil.rmtree(f, ignore_errors=True)
        elif f.name.startswith(".") and f.name.endswith(".tmp") and f.is_file():
            f.unlink(missing_ok=True)


def _remove_old_generations(path: Path, keep: int) -> None:
    for f in path.iterdir():
        parts = f.name.split(".")
        if len(parts) == 3 and parts[0] in ("chunks", "embeddings") and parts[1].isdigit() and int(parts[1]) != keep:
            f.unlink(missing_ok=True)
