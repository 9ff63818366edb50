"""hoprank: multi-hop question answering over document collections.

The real code lives in the sub-packages ``hoprank.agent``, ``hoprank.tools``,
``hoprank.evals`` and ``hoprank.prompts`` (mapped from the top-level folders). This root
stays tiny and imports lazily so that ``import hoprank`` does not pull torch or llama.cpp.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Agent", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Agent":
        from hoprank.agent.app.api import Agent

        return Agent
    raise AttributeError(f"module 'hoprank' has no attribute {name!r}")
