"""LLM clients behind one chat interface (embedded llama.cpp, OpenAI-compatible, vLLM)."""

from hoprank.tools.llm.base import ChatLLM, LLMResponse, ScriptedLLM, Usage

__all__ = ["ChatLLM", "LLMResponse", "ScriptedLLM", "Usage"]
