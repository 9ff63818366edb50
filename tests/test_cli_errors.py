"""Issue 10.5-6: one error path for every command, exercised through the real ``hoprank``
executable (a subprocess) and its in-process entry (``run_cli``, what ``main`` runs): one
line that names the cause and what to do, an exit code != 0, a traceback only with
``--debug`` / ``HOPRANK_DEBUG=1``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hoprank.agent.app.cli_errors import run_cli
from hoprank.cli import app

HOPRANK = str(Path(sys.executable).parent / "hoprank")
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def endpoint_500() -> Iterator[str]:
    """An OpenAI-compatible URL whose every request gets HTTP 500."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _fail(self) -> None:
            body = b'{"error": {"message": "boom", "type": "server_error"}}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._fail()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._fail()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def hoprank(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HOPRANK_", "OPENAI_"))}
    full = {**base, "HOPRANK_LLM__MAX_RETRIES": "0", "HOPRANK_LLM__CACHE": "false", "COLUMNS": "200", **(env or {})}
    return subprocess.run([HOPRANK, *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=500)


def one_error_line(stderr: str) -> str:
    """The stderr of a failed command: exactly one line, 'error: ...', no traceback."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def in_process(capsys, *args: str) -> tuple[int, str]:
    code = run_cli(app, list(args))
    return code, capsys.readouterr().err


# ---- the cases, through the executable -------------------------------------------
def test_ask_against_a_500_endpoint(built_index, endpoint_500):
    r = hoprank(
        "ask",
        "Where was Ada Quill born?",
        "--index",
        str(built_index.path),
        "--llm-base-url",
        endpoint_500,
        "--llm-model",
        "m",
    )
    line = one_error_line(r.stderr)
    assert r.returncode == 1
    assert "could not answer" in line and "HTTP 500" in line and "LLM endpoint" in line


def test_eval_against_a_500_endpoint_exits_nonzero(built_index, endpoint_500, tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"question": q, "answer": "x"})
            for q in ("Where was Ada Quill born?", "How long is the Seren River?")
        )
        + "\n"
    )
    env = {"HOPRANK_LLM__BACKEND": "openai", "HOPRANK_LLM__BASE_URL": endpoint_500, "HOPRANK_LLM__MODEL": "m"}
    r = hoprank(
        "eval",
        "-d",
        "jsonl",
        "--path",
        str(data),
        "--index",
        str(built_index.path),
        "--out",
        str(tmp_path / "run"),
        "-q",
        env=env,
    )
    line = one_error_line(r.stderr)
    assert r.returncode == 1
    assert "every question failed (2 of 2)" in line and "HTTP 500" in line and "--retry-failed" in line


def test_index_of_a_missing_path_fails_and_creates_nothing(tmp_path):
    target = tmp_path / "X"
    r = hoprank("index", str(tmp_path / "missing"), "--index", str(target), "-q")
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "missing" in line
    assert not target.exists()


def test_unreachable_openai_base_url_blames_the_connection(built_index):
    env = {"OPENAI_BASE_URL": closed_port_url(), "HOPRANK_LLM__BACKEND": "openai"}
    r = hoprank("ask", "Where was Ada Quill born?", "--index", str(built_index.path), env=env)
    line = one_error_line(r.stderr)
    assert r.returncode == 1
    assert "refused" in line.lower() and "llm.model is not set" not in line


def test_debug_flag_and_env_show_the_traceback(tmp_path):
    for args, env in ((("--debug",), None), ((), {"HOPRANK_DEBUG": "1"})):
        r = hoprank("search", "x", "--index", str(tmp_path / "none"), *args, env=env)
        assert (
            r.returncode == 2
            and "Traceback" in r.stderr
            and r.stderr.rstrip().splitlines()[-1].startswith("error: no hoprank index")
        )


# ---- the same path in-process (fast) -----------------------------------------------------
def test_unknown_retriever_names_the_flag(built_index, capsys):
    code, err = in_process(capsys, "search", "lanterns", "--index", str(built_index.path), "--retriever", "bm99")
    line = one_error_line(err)
    assert code == 2 and line.startswith("error: --retriever 'bm99'") and "bm25" in line


def test_unknown_rerank_on_ask_names_the_flag(built_index, capsys):
    code, err = in_process(
        capsys, "ask", "Where was Ada Quill born?", "--index", str(built_index.path), "--rerank", "fancy"
    )
    line = one_error_line(err)
    assert code == 2 and line.startswith("error: --rerank 'fancy'") and "embedding" in line


def test_non_utf8_dataset_is_named(tmp_path, capsys):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes('{"question": "Où est né Zoë?", "answer": "São Brenno"}\n'.encode("latin-1"))
    code, err = in_process(
        capsys,
        "eval",
        "-d",
        "jsonl",
        "--path",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--setting",
        "closed-book",
        "-q",
    )
    line = one_error_line(err)
    assert code == 2 and str(data) in line and "UTF-8" in line


def test_empty_dataset_exits_nonzero(tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    code, err = in_process(
        capsys,
        "eval",
        "-d",
        "jsonl",
        "--path",
        str(data),
        "--out",
        str(tmp_path / "run"),
        "--setting",
        "closed-book",
        "-q",
    )
    one_error_line(err)
    assert code == 2


def test_unexpected_exception_is_one_line_with_the_debug_hint(built_index, capsys, monkeypatch):
    from hoprank.tools.ingest.index import Index

    def broken(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Index, "open", broken)
    code, err = in_process(capsys, "search", "x", "--index", str(built_index.path))
    line = one_error_line(err)
    assert code == 1 and "RuntimeError: disk on fire" in line and "--debug" in line


def test_usage_errors_keep_typer_s_message_and_exit_2(capsys):
    code, err = in_process(capsys, "ask", "q", "--max-hops", "many")
    assert code == 2 and "--max-hops" in err and "Traceback" not in err


# ---- issue 12.1: `search --rerank` builds its reranker like the agent (rerank.options.depth is the agent's) ----
def test_search_rerank_with_depth_in_the_config(built_index, tmp_path, capsys):
    cfg = tmp_path / "hoprank.yaml"
    cfg.write_text("rerank:\n  method: setwise\n  options: {depth: 30}\n")
    args = ["search", "Where was Ada Quill born?", "--index", str(built_index.path), "-r", "bm25", "-k", "6"]
    code = run_cli(app, [*args, "--rerank", "embedding", "--config", str(cfg), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    hits = json.loads(out)
    assert hits and [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    assert hits[0]["id"].startswith("ada.md") and all("retrieval_score" in h["metadata"] for h in hits)  # reranked

    # options that are the reranker's still reach it, and a wrong one is still named
    cfg.write_text("rerank:\n  method: embedding\n  options: {depth: 30, agg: median}\n")
    code, err = in_process(capsys, *args, "--rerank", "embedding", "--config", str(cfg))
    line = one_error_line(err)
    assert code == 2 and "embedding agg must be 'max' or 'mean'" in line
