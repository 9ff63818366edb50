"""Start llama.cpp's own OpenAI-compatible server on loopback: the real endpoint that
benchmarks and tests compare the embedded backend against, no network needed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llamacpp_server(
    model: Path, port: int, n_ctx: int, threads: int, log: Path, timeout_s: float = 120.0
) -> subprocess.Popen:
    """``python -m llama_cpp.server`` bound to 127.0.0.1; returns once /v1/models answers."""
    cmd = [
        sys.executable,
        "-m",
        "hoprank.tools.llm.llamacpp_server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        "--verbose",
        "False",
    ]
    # the server logs a lot: to a file, never to an unread pipe (a full pipe blocks it)
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"llama_cpp.server did not answer /v1/models within {timeout_s:g} s; its log: {log}")
