"""The same rerankers, unchanged, against a real OpenAI-compatible endpoint: llama.cpp's
own server on loopback serving the bundled SmolLM2 (what vLLM or OpenAI would be)."""

from __future__ import annotations

import pytest

from hoprank.agent.config import LLMConfig
from hoprank.tools.llm import make_llm
from hoprank.tools.llm.llamacpp import bundled_model_path
from hoprank.tools.llm.local_server import free_port, start_llamacpp_server
from hoprank.tools.rerank import make_reranker
from hoprank.tools.types import Hit


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "llama_server.log"
    proc = start_llamacpp_server(bundled_model_path(), port, n_ctx=2048, threads=2, log=log)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=30)


HITS = [
    Hit(id="a", score=0.9, text="Hollin is a mountain village with a clock tower.", title="Hollin", rank=1),
    Hit(
        id="b",
        score=0.8,
        text="The Seren River is 212 kilometres long and flows into the Grey Sound.",
        title="Seren River",
        rank=2,
    ),
    Hit(id="c", score=0.7, text="Otto Brenn was a clockmaker born in Hollin.", title="Otto Brenn", rank=3),
    Hit(id="d", score=0.6, text="Quill Lamp Works made lanterns for ships.", title="Quill Lamp Works", rank=4),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "method,opts", [("listwise", {}), ("pointwise", {}), ("setwise", {"num_child": 3}), ("rebel", {})]
)
def test_rerankers_through_an_openai_compatible_endpoint(endpoint, method, opts, tmp_path):
    llm = make_llm(LLMConfig(backend="openai", base_url=endpoint, cache=False, max_tokens=128, timeout_s=300))
    reranker = make_reranker(method, llm=llm, **opts)
    out = reranker.rerank("How long is the Seren River?", HITS, top_k=3)
    assert 1 <= len(out) <= 3
    assert [h.rank for h in out] == list(range(1, len(out) + 1))
    assert len({h.id for h in out}) == len(out) and {h.id for h in out} <= {h.id for h in HITS}
    assert all(h.retriever == reranker.name for h in out)
    assert llm.usage.calls >= 1 and llm.usage.prompt_tokens > 0  # real HTTP calls were made
