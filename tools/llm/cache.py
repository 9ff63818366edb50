"""Persistent LLM response cache: one sqlite file shared by threads and processes.

Why sqlite in WAL mode: eval runs fan out over threads and sometimes over processes (a
resumed run next to a live one); WAL lets readers and one writer work at once and a
crashed writer never corrupts earlier entries. Keys are sha256 digests of everything that
can change the output (backend, model, messages, generation parameters), so a cache hit is
only ever a response to exactly the same request.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

ENV_CACHE_DIR = "HOPRANK_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/hoprank/llm")
_FILE = "responses.sqlite"


def default_cache_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    """cfg.cache_dir wins, then $HOPRANK_CACHE_DIR, then ~/.cache/hoprank/llm."""
    chosen = configured or os.environ.get(ENV_CACHE_DIR) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def cache_key(backend: str, model: str, messages: Any, params: dict[str, Any]) -> str:
    """A stable digest: sorted keys, params with None dropped (None means 'backend default',
    and the backend's resolved defaults are part of ``params`` already)."""
    payload = {
        "backend": backend,
        "model": model,
        "messages": messages,
        "params": {k: v for k, v in params.items() if v is not None},
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """get/put of JSON-serialisable response records by key."""

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        self.directory = default_cache_dir(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / _FILE
        self._local = threading.local()
        with self._conn() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _conn(self) -> sqlite3.Connection:
        # one connection per (thread, process): sqlite connections must not cross either
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "pid", None) != os.getpid():
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con, self._local.pid = con, os.getpid()
        return con

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            row = self._conn().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None  # a broken cache must never break a run: treat as a miss
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except json.JSONDecodeError:
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        blob = json.dumps(value, ensure_ascii=False, default=str)
        try:
            self._conn().execute(
                "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                (key, blob, time.time()),
            )
        except sqlite3.Error:
            pass  # e.g. read-only disk: lose the cache, keep the answer

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> None:
        self._conn().execute("DELETE FROM responses")
