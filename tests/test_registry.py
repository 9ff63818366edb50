"""The registries own the retriever and reranker names (issue 12.1), and the configuration that
is validated against them, read from files and the environment (pydantic-settings)."""

from __future__ import annotations

import inspect

import pytest

from hoprank.agent.config import Config, ConfigError, RerankConfig, make_reranker_from_config
from hoprank.tools.llm import ScriptedLLM
from hoprank.tools.llm.config import LLMConfig
from hoprank.tools.rerank import (
    ALIASES,
    RERANKERS,
    EmbeddingReranker,
    ListwiseReranker,
    RerankError,
    llm_rerankers,
    make_reranker,
    reranker_class,
    reranker_names,
    reranker_options,
)
from hoprank.tools.retrieval import RETRIEVERS, make_retriever, retriever_names, retriever_options


# ---- retrievers ----------------------------------------------------------------------------
def _constructor(name: str):
    from hoprank.tools.retrieval.bm25 import BM25SRetriever, RankBM25Retriever
    from hoprank.tools.retrieval.dense import DenseRetriever
    from hoprank.tools.retrieval.fusion import FusionRetriever
    from hoprank.tools.retrieval.qdrant import QdrantRetriever

    classes = {"bm25": BM25SRetriever, "rank-bm25": RankBM25Retriever, "dense": DenseRetriever}
    classes |= {"hybrid": FusionRetriever} | {n: QdrantRetriever for n in RETRIEVERS if n.startswith("qdrant")}
    return classes[name].__init__


def test_every_retriever_option_is_a_constructor_keyword():
    """The options an entry declares are its class's keywords (minus what the factory supplies),
    so a declared option can never be refused by the constructor, nor a real one be missing."""
    supplied = {"self", "chunks", "tokenizer", "index", "embeddings", "embedder", "retrievers", "mode"}
    for name, spec in RETRIEVERS.items():
        keywords = set(inspect.signature(_constructor(name)).parameters) - supplied
        extra = {"parts"} if name == "hybrid" else set()  # the fused retrievers, by name
        assert set(spec.own_options) == keywords | extra, name
        assert spec.description and spec.name == name


def test_retrievers_build_by_name_and_refuse_unknown_names_and_options(built_index):
    for name in ("bm25", "rank-bm25", "dense", "hybrid"):
        hits = make_retriever(name, built_index).search("Where was Ada Quill born?", 3)
        assert hits and hits[0].retriever == name
    with pytest.raises(ValueError, match=r"unknown retriever 'grep'; choose one of: bm25, .*qdrant-hybrid"):
        make_retriever("grep", built_index)
    with pytest.raises(ValueError, match=r"unknown option 'k1' for the 'dense' retriever; valid options: stem"):
        make_retriever("dense", built_index, k1=1.2)
    bm25 = make_retriever("bm25", built_index, k1=1.2, b=0.5, stem=True)
    assert bm25.search("lanterns", 2)


def test_hybrid_parts_tokenize_like_the_whole(built_index):
    fused = built_index.retriever("hybrid", stem=True)
    assert [type(p).__name__ for p in fused.retrievers] == ["BM25SRetriever", "DenseRetriever"]
    assert fused.retrievers[0].tokenizer("lanterns") == fused.retrievers[0].tokenizer("lantern")


def test_retriever_options_keeps_what_the_retriever_takes():
    assert retriever_options("qdrant-hybrid", url="http://q:6333", stem=True) == {"url": "http://q:6333", "stem": True}
    assert retriever_options("hybrid", url="http://q:6333", stem=False) == {}  # no url; stem off is no option
    assert retriever_options("bm25", url=None) == {}


# ---- rerankers -----------------------------------------------------------------------------
def test_which_rerankers_need_an_llm_or_an_embedder_is_declared_by_the_classes():
    assert llm_rerankers() == ["setwise", "rebel", "listwise", "pointwise"]
    assert [n for n, cls in RERANKERS.items() if cls.needs_embedder] == ["embedding"]
    assert reranker_names()[-1] == "none" and len(reranker_names()) == len(RERANKERS)


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_aliases_resolve_in_the_registry_and_the_config(alias, name):
    assert reranker_class(alias.upper().replace("-", "_")).name == name
    assert RerankConfig(method=alias).method == name


def test_reranker_options_come_from_the_constructor():
    assert reranker_options("embedding") == ["agg", "main_weight", "max_doc_words"]
    assert "num_child" in reranker_options("rank-r1") and "llm" not in reranker_options("setwise")
    assert reranker_options("none") == []
    with pytest.raises(RerankError, match="unknown reranker 'colbert'; choose one of: setwise, rebel"):
        reranker_options("colbert")


def test_an_llm_reranker_gets_the_llm_and_others_do_not_need_one():
    llm = ScriptedLLM(["[2] > [1]"])
    assert make_reranker("rankgpt", llm=llm).llm is llm
    assert isinstance(make_reranker("embedding", llm=llm), EmbeddingReranker)  # llm accepted, unused


# ---- config validated against the registries ----------------------------------------------
def test_config_names_come_from_the_registries():
    cfg = Config.load({"retrieval": {"retriever": "qdrant-sparse"}, "rerank": {"method": "RankGPT"}}, env={})
    assert cfg.retrieval.retriever == "qdrant-sparse" and cfg.rerank.method == "listwise"
    for key, value, valid in (("retrieval", "bm99", "qdrant-hybrid"), ("rerank", "fancy", "cross-encoder")):
        field = "retriever" if key == "retrieval" else "method"
        with pytest.raises(ConfigError) as e:
            Config.load({key: {field: value}}, env={})
        line = str(e.value).splitlines()[-1]
        assert line.startswith(f"  - {key}.{field}: unknown ") and f"'{value}'" in line and valid in line


def test_cli_help_lists_the_registered_names(capsys):
    from hoprank.agent.app.cli_errors import run_cli
    from hoprank.cli import app

    assert run_cli(app, ["search", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert " | ".join(retriever_names()) in out.replace("│ ", "").replace(" │", "")
    assert "cross-encoder" in out and "qdrant-sparse" in out


# ---- one reranker from a config --------------------------------------------------------------
def test_reranker_from_config_applies_the_configured_options_only(built_index):
    cfg = Config.load({"rerank": {"method": "embedding", "options": {"depth": 30, "agg": "mean"}}}, env={})
    rr = make_reranker_from_config(cfg, built_index)
    assert isinstance(rr, EmbeddingReranker) and rr.agg == "mean" and rr.embedder is built_index.embedder

    asked: list[int] = []

    def llm_factory() -> ScriptedLLM:
        asked.append(1)
        return ScriptedLLM(["[1] > [2]"])

    other = make_reranker_from_config(cfg, built_index, method="rankgpt", llm=llm_factory)
    assert isinstance(other, ListwiseReranker) and asked == [1]  # agg is embedding's: not passed on
    make_reranker_from_config(cfg, built_index, llm=llm_factory)
    assert asked == [1]  # an embedding reranker never asks for the LLM
    assert make_reranker_from_config(cfg, built_index, method="none") is None
    with pytest.raises(RerankError, match="unknown option 'num_child' for the 'embedding' reranker"):
        make_reranker_from_config(Config.load({"rerank": {"options": {"num_child": 3}}}, env={}), built_index)


# ---- env vars through pydantic-settings -------------------------------------------------------
def test_env_overrides_file_and_shortcuts(tmp_path):
    f = tmp_path / "hoprank.toml"
    f.write_text('index = "from-file"\n[llm]\nmodel = "file-model"\nmax_tokens = 100\n[rerank.options]\nagg = "max"\n')
    env = {
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "HOPRANK_LLM_MODEL": "shortcut-model",
        "HOPRANK_LLM__MODEL": "nested-model",  # the specific variable wins over the shortcut
        "HOPRANK_LLM__CACHE": "false",
        "HOPRANK_LLM__N_THREADS": "null",
        "HOPRANK_RERANK__OPTIONS__DEPTH": "30",
        "HOPRANK_AGENT__MAX_HOPS": "3",
        "HOPRANK_INDEX": "from-env",
        "HOPRANK_API_KEY": "a server setting, not config",
        "HOPRANK_RETRIEVAL__ENCODER": "",  # empty: unset
    }
    cfg = Config.load(f, env=env)
    assert cfg.index == "from-env" and cfg.llm.model == "nested-model" and cfg.llm.max_tokens == 100
    assert cfg.llm.backend == "openai" and cfg.llm.base_url == "http://127.0.0.1:9/v1"  # base_url -> openai
    assert cfg.llm.cache is False and cfg.llm.n_threads is None and cfg.agent.max_hops == 3
    assert cfg.rerank.options == {"agg": "max", "depth": 30} and cfg.retrieval.encoder is None


def test_env_argument_replaces_the_process_environment(monkeypatch):
    monkeypatch.setenv("HOPRANK_LLM__MODEL", "process-model")
    assert Config.load(env={}).llm.model is None
    assert Config.load().llm.model == "process-model"
    assert Config.load(env={"HOPRANK_LLM__MODEL": "7"}).llm.model == "7"  # a string field stays a string


def test_an_explicit_backend_is_kept():
    cfg = Config.load({"llm": {"backend": "llamacpp"}}, env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert cfg.llm.backend == "llamacpp"
    assert LLMConfig(base_url="http://127.0.0.1:9/v1").backend == "openai"
    assert Config.load({"llm": {"base_url": "http://127.0.0.1:9/v1"}}, env={}).llm.backend == "openai"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HOPRANK_LLM__TEMPRATURE": "0.1"}, "unknown key 'llm.temprature'"),
        ({"HOPRANK_RERANKER__METHOD": "setwise"}, "unknown key 'reranker' (HOPRANK_RERANKER__METHOD)"),
        ({"HOPRANK_LLM__MAX_TOKENS": "0"}, "llm.max_tokens: Input should be greater than or equal to 1"),
        ({"HOPRANK_RETRIEVAL__RETRIEVER": "bm99"}, "retrieval.retriever: unknown retriever 'bm99'"),
        ({"HOPRANK_RERANK__OPTIONS": "{depth: 3"}, "rerank: a value given whole must be JSON"),
    ],
)
def test_a_wrong_env_var_names_the_key(env, expected):
    with pytest.raises(ConfigError, match="invalid configuration") as e:
        Config.load(env=env)
    assert expected in str(e.value)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("missing.yaml", None, "config file not found"),
        ("c.ini", "x=1", "must end in .yaml, .yml, .toml or .json"),
        ("c.yaml", "- a\n- b\n", "must hold a mapping at the top level"),
        ("c.toml", "llm = [", "cannot parse config file"),
        ("c.yaml", "llm:\n  modle: x\n", "unknown key 'llm.modle'"),
    ],
)
def test_a_bad_config_file_is_named(tmp_path, name, text, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        Config.load(path, env={})
