"""Delivery layer: the Python API, the CLI, the OpenAI-compatible HTTP server, the MCP server
and the web page. Everything here drives the graph in ``hoprank.agent``; nothing in the graph
imports from here."""
