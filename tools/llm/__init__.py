"""LLM clients behind one chat interface (embedded llama.cpp, OpenAI-compatible, vLLM)."""

from hoprank.tools.llm.base import (
    ChatLLM,
    LLMResponse,
    ScriptedLLM,
    TransientLLMError,
    UsageMeter,
    extract_json,
    is_transient,
    usage_of,
)
from hoprank.tools.llm.factory import make_llm
from hoprank.tools.types import Usage

__all__ = [
    "ChatLLM",
    "LLMResponse",
    "ScriptedLLM",
    "TransientLLMError",
    "Usage",
    "UsageMeter",
    "extract_json",
    "is_transient",
    "make_llm",
    "usage_of",
]
