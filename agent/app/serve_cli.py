"""``hoprank serve`` (HTTP + web page) and ``hoprank mcp`` (MCP tools) commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from hoprank.tools.errors import HoprankError


def _load_agent(index: Path, config: Optional[Path]):
    from hoprank import Agent
    from hoprank.tools.ingest.index import Index

    if not Index.exists(index):
        raise HoprankError(f"no hoprank index in {index}; build one first: hoprank index DOCS --index {index}")
    return Agent.from_config(config, index=index)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        index: Path = typer.Option(..., "--index", "-i", help="Index folder (built with `hoprank index`)."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file (YAML/TOML)."),
        host: str = typer.Option("127.0.0.1", help="Bind address. Loopback by default; use 0.0.0.0 only behind auth."),
        port: int = typer.Option(8000, help="TCP port."),
        api_key: Optional[str] = typer.Option(
            None,
            "--api-key",
            envvar="HOPRANK_API_KEY",
            help="Require 'Authorization: Bearer KEY' on /v1/* (env HOPRANK_API_KEY).",
        ),
        timeout: float = typer.Option(600.0, help="Seconds one request may take before it fails with 504."),
        max_body_mb: float = typer.Option(2.0, help="Largest request body, in MB (413 above)."),
        graceful: float = typer.Option(30.0, help="Seconds in-flight requests get to finish on SIGTERM."),
    ) -> None:
        """Serve an OpenAI-compatible chat API (/v1/chat/completions), document upload and the web page."""
        from hoprank.agent.app.server import ServerSettings, run_server

        if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
            typer.echo(
                f"warning: serving on {host} without --api-key: anyone who can reach it can query and add documents",
                err=True,
            )
        settings = ServerSettings(
            api_key=api_key, request_timeout_s=timeout, max_body_bytes=int(max_body_mb * 1_000_000)
        )
        agent = _load_agent(index, config)
        typer.echo(
            f"hoprank serving {index} at http://{host}:{port}/  (OpenAI base_url: http://{host}:{port}/v1)", err=True
        )
        run_server(agent, host=host, port=port, settings=settings, graceful_s=graceful)

    @app.command("mcp")
    def mcp_cmd(
        index: Path = typer.Option(..., "--index", "-i", help="Index folder."),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config file (YAML/TOML)."),
        transport: str = typer.Option("stdio", help="stdio | http (streamable HTTP at /mcp)"),
        host: str = typer.Option("127.0.0.1", help="Bind address for --transport http."),
        port: int = typer.Option(8001, help="Port for --transport http."),
        api_key: Optional[str] = typer.Option(
            None,
            "--api-key",
            envvar="HOPRANK_API_KEY",
            help=(
                "--transport http: require 'Authorization: Bearer KEY' on /mcp (env HOPRANK_API_KEY); "
                "needed for a non-loopback --host."
            ),
        ),
    ) -> None:
        """Serve search / rerank / ask as MCP tools (stdio for desktop clients, or streamable HTTP)."""
        from hoprank.agent.app.mcp_server import run_mcp

        if transport not in ("stdio", "http"):
            raise HoprankError(f"--transport must be stdio or http, got {transport!r}")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        run_mcp(index, config, transport=transport, host=host, port=port, api_key=api_key)
