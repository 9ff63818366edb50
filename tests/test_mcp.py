"""MCP server, driven by the ``mcp`` SDK's own client: stdio (a spawned subprocess, as a
desktop client would run it) and streamable HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def mcp_index(tmp_path_factory, corpus_dir) -> Path:
    from hoprank.tools.ingest.index import Index

    path = tmp_path_factory.mktemp("mcp-index")
    Index.build(path, sources=[corpus_dir], qdrant=False, show_progress=False)
    return path


@pytest.fixture(scope="module")
def fast_config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("mcp-cfg") / "hoprank.yaml"
    p.write_text(
        "agent:\n  decompose: rules\n  max_hops: 1\n"
        "llm:\n  max_tokens: 48\n  cache: false\n"
        "rerank:\n  method: embedding\n  options: {depth: 30}\n"
    )
    return p


def _params(index: Path, config: Path) -> StdioServerParameters:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "hoprank.agent.app.mcp_server", "--index", str(index), "--config", str(config)],
        env=env,
    )


async def _call(session: ClientSession, tool: str, **args) -> tuple[bool, str]:
    res = await session.call_tool(tool, args)
    return bool(res.isError), "".join(getattr(c, "text", "") for c in res.content)


async def _result(session: ClientSession, tool: str, **args) -> dict:
    """A successful call's structured result (an object, not JSON inside a string); the text
    content carries the same JSON for clients without structured output."""
    res = await session.call_tool(tool, args)
    text = "".join(getattr(c, "text", "") for c in res.content)
    assert not res.isError, text
    assert isinstance(res.structuredContent, dict) and json.loads(text) == res.structuredContent
    return res.structuredContent


async def test_stdio_search_rerank_and_errors(mcp_index, fast_config):
    from hoprank.tools.rerank import reranker_names
    from hoprank.tools.retrieval import retriever_names

    async with stdio_client(_params(mcp_index, fast_config)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert set(tools) == {"search", "rerank", "ask"}
            search_args = tools["search"].inputSchema["properties"]
            assert search_args["k"]["minimum"] == 1 and search_args["k"]["maximum"] == 100
            # the enums are the registries' names, whatever they hold
            assert search_args["retriever"]["enum"] == retriever_names()
            assert tools["rerank"].inputSchema["properties"]["method"]["enum"] == reranker_names()
            assert tools["search"].annotations.readOnlyHint and tools["rerank"].annotations.readOnlyHint
            assert tools["ask"].annotations.readOnlyHint is False  # it writes the thread's history
            for name in tools:
                assert tools[name].outputSchema["type"] == "object"
            assert "hits" in tools["search"].outputSchema["properties"]

            out = await _result(session, "search", query="Where was Ada Quill born?", k=3, retriever="bm25")
            assert out["retriever"] == "bm25" and len(out["hits"]) == 3
            assert out["hits"][0]["id"].startswith("ada.md")
            assert [h["rank"] for h in out["hits"]] == [1, 2, 3] and isinstance(out["hits"][0]["score"], float)

            out = await _result(
                session, "rerank", query="Which river flows into the Grey Sound?", k=2, method="embedding"
            )
            assert out["method"] == "embedding" and len(out["hits"]) == 2
            assert out["hits"][0]["id"].startswith("seren.md")
            out = await _result(session, "rerank", query="Which river flows into the Grey Sound?", k=2, method="none")
            assert out["method"] == "none" and len(out["hits"]) == 2

            # an unknown name is refused by the schema's enum, with the valid names in the message
            err, text = await _call(session, "search", query="x", retriever="grep")
            assert err and "'grep'" in text and "'qdrant-hybrid'" in text
            err, text = await _call(session, "rerank", query="x", method="fancy")
            assert err and "'fancy'" in text and "'setwise'" in text
            err, text = await _call(session, "search", query="   ")
            assert err and "empty" in text
            err, text = await _call(session, "search", query="x", k=0)
            assert err and "greater than or equal to 1" in text


@pytest.mark.slow
async def test_stdio_ask_with_embedded_model(mcp_index, fast_config):
    async with stdio_client(_params(mcp_index, fast_config)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            out = await _result(session, "ask", question="Where was Ada Quill born?", thread_id="mcp-1")
            assert out["thread_id"] == "mcp-1"
            assert out["status"] in ("answered", "not_found", "partial")
            evidence = {h["id"] for h in out["evidence"]}
            assert evidence and all(c["chunk_id"] in evidence for c in out["citations"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_streamable_http_search(mcp_index, fast_config):
    from mcp.client.streamable_http import streamablehttp_client

    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "hoprank.agent.app.mcp_server",
        "--index",
        str(mcp_index),
        "--config",
        str(fast_config),
        "--transport",
        "http",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"MCP HTTP server exited: {proc.stderr.read()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("MCP HTTP server did not open its port")
                time.sleep(0.2)
        async with streamablehttp_client(f"http://127.0.0.1:{port}/mcp") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                out = await _result(session, "search", query="clock tower village", k=2, retriever="hybrid")
                assert out["hits"][0]["id"].startswith("hollin.md")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---- issue 10.13: MCP over HTTP needs a key like `serve`; non-loopback without one refused --
KEY = "mcp-secret-key"


def _start_http(
    mcp_index: Path, fast_config: Path, port: int, args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "hoprank.agent.app.mcp_server",
        "--index",
        str(mcp_index),
        "--config",
        str(fast_config),
        "--transport",
        "http",
        "--port",
        str(port),
        *args,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"MCP HTTP server exited: {proc.stderr.read()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("MCP HTTP server did not open its port")
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize("via_env", [False, True])
async def test_streamable_http_requires_the_api_key(mcp_index, fast_config, via_env):
    import httpx
    from mcp.client.streamable_http import streamablehttp_client

    port = _free_port()
    proc = _start_http(
        mcp_index,
        fast_config,
        port,
        [] if via_env else ["--api-key", KEY],
        env={"HOPRANK_API_KEY": KEY} if via_env else None,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with httpx.AsyncClient() as raw:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
                r = await raw.post(url, json=INIT, headers={**MCP_HEADERS, **headers})
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
        async with streamablehttp_client(url, headers={"Authorization": f"Bearer {KEY}"}) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                out = await _result(session, "search", query="clock tower village", k=2, retriever="bm25")
                assert out["hits"][0]["id"].startswith("hollin.md")
    finally:
        _stop(proc)


def test_non_loopback_host_without_a_key_is_refused(mcp_index, fast_config):
    hoprank = str(Path(sys.executable).parent / "hoprank")
    env = {k: v for k, v in os.environ.items() if k != "HOPRANK_API_KEY"}
    for cmd in (
        [
            hoprank,
            "mcp",
            "--index",
            str(mcp_index),
            "--transport",
            "http",
            "--host",
            "0.0.0.0",
            "--port",
            str(_free_port()),
        ],
        [
            sys.executable,
            "-m",
            "hoprank.agent.app.mcp_server",
            "--index",
            str(mcp_index),
            "--transport",
            "http",
            "--host",
            "0.0.0.0",
        ],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert "refusing to serve MCP over HTTP on 0.0.0.0 without an API key" in r.stderr and "--api-key" in r.stderr


def test_loopback_detection():
    from hoprank.agent.app.server import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "::", "example.org"))
