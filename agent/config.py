"""One validated configuration for everything: YAML or TOML file, then env-var overrides.

Env vars: ``HOPRANK_<SECTION>__<FIELD>`` (e.g. ``HOPRANK_LLM__BASE_URL``), plus the common
``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` / ``HOPRANK_LLM_MODEL`` shortcuts. A wrong key or
value raises :class:`ConfigError` naming the key, instead of being silently ignored.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hoprank.tools.errors import HoprankError


class ConfigError(HoprankError, ValueError):
    """The configuration has an unknown key or an invalid value; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LLMConfig(_Section):
    backend: Literal["llamacpp", "openai", "vllm"] = "llamacpp"
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


class RetrievalConfig(_Section):
    retriever: Literal["bm25", "rank-bm25", "dense", "qdrant", "qdrant-hybrid", "hybrid"] = "hybrid"
    k: int = Field(20, ge=1, le=1000)  # candidates per sub-query
    qdrant_url: str | None = None
    stem: bool = False
    # encoder of new indexes: e5-small | minilm | a sentence-transformers path (None: the default);
    # an existing index keeps its own, and another one is refused (EncoderMismatchError)
    encoder: str | None = None


class RerankConfig(_Section):
    method: Literal["none", "setwise", "rebel", "listwise", "pointwise", "cross-encoder", "embedding"] = "embedding"
    top_k: int = Field(5, ge=1, le=100)
    options: dict[str, Any] = Field(default_factory=dict)  # passed to the reranker

    def options_for_factory(self) -> dict[str, Any]:
        """Reranker options minus the agent's own keys (``depth``: candidates reranked)."""
        return {k: v for k, v in self.options.items() if k != "depth"}


class AgentConfig(_Section):
    mode: Literal["pipeline", "agentic"] = "pipeline"
    decompose: Literal["auto", "llm", "rules", "none"] = "auto"
    max_hops: int = Field(2, ge=0, le=10)
    max_steps: int = Field(40, ge=1, le=500)  # nodes per turn; parallel searches count
    max_tokens_budget: int = Field(20000, ge=100)
    verify: bool = False
    answer_style: Literal["full", "short"] = "full"
    evidence_k: int = Field(5, ge=1, le=50)  # chunks shown to the generator
    # evidence as chains (agent/chain.py): pairs of chunks scored together, entity links followed
    chain: bool = True
    # short answers: "spans" picks a candidate span of the evidence by the LLM's likelihood
    # (agent/spans.py; free generation when no span fits or the backend cannot score),
    # "generate" asks the LLM to write the short answer
    answer_mode: Literal["spans", "generate"] = "spans"
    # document-borne instructions (hoprank.tools.safety): "screen" removes instruction-like spans from
    # retrieved text, "flag" marks answers that carry foreign URLs/e-mails/prompt text; "on" does both
    injection_guard: Literal["on", "screen", "flag", "off"] = "on"


class Config(_Section):
    index: str | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)

    @classmethod
    def load(cls, source: str | Path | dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Config:
        """Build from a file path, a dict or nothing, then apply env-var overrides."""
        data: dict[str, Any] = {}
        if isinstance(source, dict):
            data = json.loads(json.dumps(source))  # deep copy
        elif source is not None:
            data = _read_file(Path(source))
        _apply_env(data, os.environ if env is None else env)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(_explain(e, source)) from None

    def with_overrides(self, **dotted: Any) -> Config:
        """``cfg.with_overrides(**{"llm.base_url": url})`` -> a new validated config."""
        data = self.model_dump()
        for key, value in dotted.items():
            if value is None:
                continue
            node = data
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
        try:
            return Config.model_validate(data)
        except ValidationError as e:
            raise ConfigError(_explain(e, "overrides")) from None


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text("utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml", ".json"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml, .toml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot parse config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _apply_env(data: dict[str, Any], env: Any) -> None:
    shortcuts = {
        "OPENAI_BASE_URL": "llm.base_url",
        "OPENAI_API_KEY": "llm.api_key",
        "HOPRANK_LLM_MODEL": "llm.model",
        "HOPRANK_INDEX": "index",
    }
    pairs: list[tuple[str, str]] = []
    for var, dotted in shortcuts.items():
        if env.get(var):
            pairs.append((dotted, env[var]))
    for var, value in env.items():
        if var.startswith("HOPRANK_") and "__" in var:
            pairs.append((var[len("HOPRANK_") :].lower().replace("__", "."), value))
    for dotted, value in pairs:
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"env override {dotted}: {p} is not a section")
        node[parts[-1]] = _coerce(value)
    if pairs and "base_url" in data.get("llm", {}) and "backend" not in data["llm"]:
        data["llm"]["backend"] = "openai"


def _coerce(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def _explain(e: ValidationError, source: object) -> str:
    where = f" in {source}" if isinstance(source, (str, Path)) else ""
    lines = [f"invalid configuration{where}:"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}'")
        else:
            lines.append(f"  - {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)
