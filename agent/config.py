"""One validated configuration for everything: YAML or TOML file, then env-var overrides.

Env vars: ``HOPRANK_<SECTION>__<FIELD>`` (e.g. ``HOPRANK_LLM__BASE_URL``), read by
pydantic-settings' ``EnvSettingsSource``, plus the common ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` / ``HOPRANK_LLM_MODEL`` shortcuts. A wrong key or value raises
:class:`ConfigError` naming the key, instead of being silently ignored. Retriever and
reranker names are checked against their registries (``tools/retrieval/factory.py``,
``tools/rerank/factory.py``), which own the lists.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import EnvSettingsSource, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from hoprank.tools.errors import HoprankError
from hoprank.tools.llm.config import LLMConfig

if TYPE_CHECKING:
    from hoprank.tools.ingest.index import Index
    from hoprank.tools.rerank.base import Reranker

__all__ = ["AgentConfig", "Config", "ConfigError", "LLMConfig", "RerankConfig", "RetrievalConfig"]


class ConfigError(HoprankError, ValueError):
    """The configuration has an unknown key or an invalid value; the message names it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _registered(check: Callable[[str], Any]) -> Callable[[str], str]:
    """A field validator from a registry lookup: the registry's one-line error (which lists the
    valid names) becomes the validation message; the canonical name is kept (aliases resolve)."""

    def validate(name: str) -> str:
        try:
            return check(name)
        except ValueError as e:
            raise PydanticCustomError("unknown_name", "{message}", {"message": str(e)}) from None

    return validate


def _retriever_name(name: str) -> str:
    from hoprank.tools.retrieval.factory import retriever_spec

    return retriever_spec(name).name


def _reranker_name(name: str) -> str:
    from hoprank.tools.rerank.factory import reranker_class

    return reranker_class(name).name


class RetrievalConfig(_Section):
    retriever: Annotated[str, AfterValidator(_registered(_retriever_name))] = "hybrid"
    k: int = Field(20, ge=1, le=1000)  # candidates per sub-query
    qdrant_url: str | None = None
    stem: bool = False
    # encoder of new indexes: e5-small | minilm | a sentence-transformers path (None: the default);
    # an existing index keeps its own, and another one is refused (EncoderMismatchError)
    encoder: str | None = None


class RerankConfig(_Section):
    method: Annotated[str, AfterValidator(_registered(_reranker_name))] = "embedding"
    top_k: int = Field(5, ge=1, le=100)
    options: dict[str, Any] = Field(default_factory=dict)  # passed to the reranker

    # keys of ``options`` the agent reads itself (``depth``: candidates reranked), not the reranker
    AGENT_KEYS: ClassVar[tuple[str, ...]] = ("depth",)

    def options_for_factory(self) -> dict[str, Any]:
        """Reranker options minus the agent's own keys."""
        return {k: v for k, v in self.options.items() if k not in self.AGENT_KEYS}


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


POOL_SIZE = 50  # fused candidates kept across all searches of a turn (RRF), both modes


@dataclass(frozen=True)
class Candidates:
    """How many candidates each stage sees: the one place that decides it (:meth:`Config.candidates`).

    Why one place: the counts used to be read from five settings and two literals in three
    modules, and the agentic mode drifted from the pipeline. With the default config (the
    numbers every benchmark ran with) a turn flows 20 -> 50 -> 20 -> 5 -> 5:

    * ``per_query`` = ``retrieval.k`` (20): hits of one search (one sub-query in the
      pipeline); also the most an agentic search tool may ask for.
    * ``tool_default`` = ``agent.evidence_k`` (5): an agentic search tool's ``k`` when the
      model gives none.
    * ``pool`` = 50 (:data:`POOL_SIZE`): the fused pool, the RRF of every search of the turn
      (the pipeline's fuse node, the agentic evidence).
    * ``rerank_depth`` = ``rerank.options.depth`` (20): the head of the pool the reranker reads;
      the rest stays below it in fused order.
    * ``keep`` = max(``rerank.top_k``, ``agent.evidence_k``) (5): reranked hits the reranker
      returns in its own order.
    * ``evidence`` = ``agent.evidence_k`` (5): chunks the generator reads (and assess checks).
    """

    per_query: int
    tool_default: int
    pool: int
    rerank_depth: int
    keep: int
    evidence: int


class Config(_Section):
    index: str | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    rerank: RerankConfig = Field(default_factory=RerankConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)

    @classmethod
    def load(cls, source: str | Path | dict[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Config:
        """Build from a file path, a dict or nothing, then apply the environment (``env``, default
        ``os.environ``): the shortcuts, then ``HOPRANK_<SECTION>__<FIELD>`` (the most specific wins)."""
        data: dict[str, Any] = {}
        if isinstance(source, dict):
            data = json.loads(json.dumps(source))  # deep copy
        elif source is not None:
            data = _read_file(Path(source))
        environ = os.environ if env is None else env
        data = _merge(data, _shortcuts(environ), _env_overrides(environ))
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

    def candidates(self) -> Candidates:
        """The per-stage candidate counts (:class:`Candidates`); a bad ``rerank.options.depth``
        is a :class:`ConfigError`."""
        raw = self.rerank.options.get("depth", 20)
        depth = int(raw) if isinstance(raw, (int, str)) and str(raw).strip().isdigit() else 0
        if isinstance(raw, bool) or depth < 1:
            raise ConfigError(f"invalid configuration:\n  - rerank.options.depth: a positive integer (got {raw!r})")
        evidence = self.agent.evidence_k
        return Candidates(
            per_query=self.retrieval.k,
            tool_default=evidence,
            pool=POOL_SIZE,
            rerank_depth=depth,
            keep=max(self.rerank.top_k, evidence),
            evidence=evidence,
        )


def make_reranker_from_config(
    cfg: Config, index: Index | None = None, method: str | None = None, llm: Any = None
) -> Reranker | None:
    """The one way the CLI, the API, the MCP server and the agent build a reranker from a config.

    ``method`` defaults to ``cfg.rerank.method``; ``rerank.options`` are that configured
    method's constructor options, so they apply to it only, minus the agent's own keys
    (``depth``). ``llm`` (a client, or a callable returning one) is used only when the method
    needs an LLM, so a caller that reranks with embeddings never loads a model; without it the
    reranker builds its client from ``cfg.llm``. ``index`` supplies the encoder, and the
    embedding reranker then scores the passages' stored vectors. Returns None for ``none``."""
    from hoprank.tools.rerank.factory import make_reranker, reranker_class

    name = cfg.rerank.method if method is None else _reranker_name(method)
    if name == "none":
        return None
    cls = reranker_class(name)
    if cls.needs_llm and callable(llm) and not hasattr(llm, "chat"):
        llm = llm()
    options = cfg.rerank.options_for_factory() if name == cfg.rerank.method else {}
    embedder = index.embedder if index is not None and cls.needs_embedder else None
    reranker = make_reranker(name, llm=llm if cls.needs_llm else None, llm_config=cfg.llm, embedder=embedder, **options)
    if index is not None and hasattr(reranker, "use_index"):  # stored vectors instead of re-encoding
        reranker.use_index(index)
    return reranker


def _read_file(path: Path) -> dict[str, Any]:
    """The config file as data. Not pydantic-settings' Yaml/Toml sources: they skip a missing
    file silently (a typo in ``--config`` would run on defaults) and fail on a file that is not a
    mapping with a bare ``ValueError``; here each case is a :class:`ConfigError` naming the file."""
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


# the common variables of OpenAI clients and a short one for the model; ``HOPRANK_INDEX`` needs
# no entry (pydantic-settings maps it to ``index`` like any top-level field)
SHORTCUTS: dict[str, tuple[str, str]] = {
    "OPENAI_BASE_URL": ("llm", "base_url"),
    "OPENAI_API_KEY": ("llm", "api_key"),
    "HOPRANK_LLM_MODEL": ("llm", "model"),
}
ENV_PREFIX, ENV_DELIMITER = "HOPRANK_", "__"


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' env source over a given mapping (``Config.load(env=...)``; the stock
    source always reads ``os.environ``). Values with no declared type (``rerank.options.*``) are
    decoded as JSON, so ``HOPRANK_RERANK__OPTIONS__DEPTH=30`` is the number 30, as in a file."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(
            Config,  # type: ignore[arg-type]  # a plain model: the env settings are given here
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter=ENV_DELIMITER,
            env_parse_none_str="null",
            env_ignore_empty=True,  # an empty variable is an unset one
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)

    def _coerce_env_val_strict(self, field: FieldInfo | None, value: Any) -> Any:
        if not isinstance(field, FieldInfo) and isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return super()._coerce_env_val_strict(field, value)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``HOPRANK_<SECTION>__<FIELD>`` variables as nested data. A section that does not exist is
    an error like an unknown key in a file (pydantic-settings would skip the variable)."""
    for var in environ:
        if var.upper().startswith(ENV_PREFIX) and ENV_DELIMITER in var:
            section = var[len(ENV_PREFIX) :].split(ENV_DELIMITER, 1)[0].lower()
            if section not in Config.model_fields:
                raise ConfigError(f"invalid configuration in the environment:\n  - unknown key '{section}' ({var})")
    try:
        return _EnvSource(environ)()
    except SettingsError as e:  # a section or a mapping given whole must be JSON
        field = re.search(r'field "([^"]+)"', str(e))
        key = field.group(1) if field else "?"
        raise ConfigError(
            f"invalid configuration in the environment:\n  - {key}: a value given whole must be JSON ({e.__cause__})"
        ) from None


def _shortcuts(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, (section, key) in SHORTCUTS.items():
        if environ.get(var):
            out.setdefault(section, {})[key] = environ[var]
    return out


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings, later layers winning key by key (a section given as a whole and as
    single variables keeps both)."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = _merge(out[key], value)
            else:
                out[key] = value
    return out


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
