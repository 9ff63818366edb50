"""``make_llm(cfg)``: the one place that turns an ``LLMConfig`` into a chat client.

Every component (rerankers, the agent, the evals, the server) builds its LLM here, so a
config change or an env var (``OPENAI_BASE_URL``, ``HOPRANK_LLM__BACKEND`` ...) switches all
of them at once, and so retries, timeouts, the cache and the concurrency bound are always on.
"""

from __future__ import annotations

from typing import Any

from hoprank.tools.errors import LLMError
from hoprank.tools.llm.base import ChatLLM
from hoprank.tools.llm.config import BACKENDS, LLMConfig


def make_llm(cfg: Any = None) -> ChatLLM:
    """Build the configured backend. ``cfg`` is an ``LLMConfig`` (or ``None`` for the
    defaults: embedded SmolLM2). Raises MissingExtraError naming the extra to install, or
    LLMError for an unknown backend; it never returns None."""
    if cfg is None:
        cfg = LLMConfig()
    elif isinstance(cfg, dict):
        cfg = LLMConfig.model_validate(cfg)
    elif hasattr(cfg, "llm") and not hasattr(cfg, "backend"):
        cfg = cfg.llm  # a whole Config was passed: use its llm section
    backend = getattr(cfg, "backend", None)
    if backend == "llamacpp":
        from hoprank.tools.llm.llamacpp import LlamaCppLLM

        return LlamaCppLLM.from_config(cfg)
    if backend == "openai":
        from hoprank.tools.llm.openai_compat import OpenAICompatLLM

        return OpenAICompatLLM.from_config(cfg)
    if backend == "vllm":
        from hoprank.tools.llm.vllm_engine import VLLMEngineLLM

        return VLLMEngineLLM.from_config(cfg)
    raise LLMError(f"unknown llm.backend {backend!r}; choose one of {', '.join(BACKENDS)}")
