"""``LLMConfig``: the settings of one chat client, at the layer that builds it.

Why here and not in ``hoprank.agent.config``: ``make_llm`` and the LLM rerankers read these
settings, and ``tools/`` must not import upward into ``agent/``. The agent's ``Config``
holds an ``LLMConfig`` as its ``llm`` section (and re-exports the class).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Backend = Literal["llamacpp", "openai", "vllm"]
BACKENDS: tuple[str, ...] = get_args(Backend)


class LLMConfig(BaseModel):
    """One chat client: which backend, which model, and the limits every call obeys."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    backend: Backend = "llamacpp"
    model: str | None = None  # llamacpp: a .gguf path (default: bundled SmolLM2); openai/vllm: model name
    base_url: str | None = None  # an OpenAI-compatible endpoint (vLLM, OpenAI, llama.cpp server)
    api_key: str | None = None  # not needed for local servers
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1, le=32768)
    n_ctx: int = Field(4096, ge=256, le=131072)
    n_threads: int | None = Field(None, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0, le=10)
    concurrency: int = Field(4, ge=1, le=256)
    cache: bool = True
    cache_dir: str | None = None  # default: ~/.cache/hoprank/llm
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _endpoint_means_openai(cls, data: Any) -> Any:
        """A ``base_url`` given without a ``backend`` means an OpenAI-compatible endpoint: the
        embedded backend would silently ignore the URL (``OPENAI_BASE_URL=...`` alone is enough)."""
        if isinstance(data, dict) and data.get("base_url") and "backend" not in data:
            return {**data, "backend": "openai"}
        return data
