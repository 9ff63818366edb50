"""The shared records Usage and Step: sums, JSON round trips, old key spellings."""

from __future__ import annotations

import json

from hoprank.tools.types import Step, Usage


def test_usage_sums_and_counts_paid_calls() -> None:
    a = Usage(calls=2, prompt_tokens=10, completion_tokens=3, cached_calls=1, cached_tokens=7, seconds=0.25)
    b = Usage(calls=1, prompt_tokens=5, completion_tokens=2, seconds=0.5, retries=2, failures=1)
    total = sum([a, b], Usage())
    assert total == Usage(
        calls=3,
        prompt_tokens=15,
        completion_tokens=5,
        cached_calls=1,
        cached_tokens=7,
        seconds=0.75,
        retries=2,
        failures=1,
    )
    assert sum([a, b]) == total  # plain sum starts from 0
    assert total.paid_calls == 2 and total.tokens == 20 and total.cache_hits == 1
    assert sum([], Usage()) == Usage()


def test_usage_json_round_trip() -> None:
    u = Usage(calls=4, prompt_tokens=100, completion_tokens=20, cached_calls=1, cached_tokens=30, seconds=1.23456)
    d = json.loads(json.dumps(u.to_dict()))
    assert set(d) == {
        "calls",
        "prompt_tokens",
        "completion_tokens",
        "cached_calls",
        "cached_tokens",
        "seconds",
        "retries",
        "failures",
    }
    assert d["seconds"] == 1.235
    assert Usage.from_dict(d) == Usage(**{**u.to_dict(), "seconds": 1.235})


def test_usage_reads_old_spellings() -> None:
    """Saved eval rows say llm_calls, rerank traces cache_hits/llm_seconds/failed_calls, and a
    rerank trace's "seconds" is wall time, so llm_seconds wins over it."""
    row = {"llm_calls": 3.0, "prompt_tokens": 9.0, "completion_tokens": 1.0, "total_tokens": 10.0}
    assert Usage.from_dict(row) == Usage(calls=3, prompt_tokens=9, completion_tokens=1)
    rerank = {"llm_calls": 2, "cache_hits": 1, "llm_seconds": 0.4, "seconds": 9.0, "failed_calls": 1}
    assert Usage.from_dict(rerank) == Usage(calls=2, cached_calls=1, seconds=0.4, failures=1)
    assert Usage.from_dict({"calls": None, "prompt_tokens": "x", "completion_tokens": float("nan")}) == Usage()
    assert Usage.from_dict(None) == Usage()


def test_step_dict_shape_and_round_trip() -> None:
    u = Usage(calls=1, prompt_tokens=12, completion_tokens=4)
    s = Step("generate", "answered; 2 citations", seconds=0.123456, usage=u, detail={"raw": "x"}, fallback="auto-cited")
    d = s.to_dict()
    assert list(d) == ["node", "summary", "elapsed_s", "tokens", "llm", "data"]
    assert d["node"] == "generate" and d["elapsed_s"] == 0.1235 and d["tokens"] == 16
    assert d["llm"]["calls"] == 1 and d["data"] == {"raw": "x", "fallback": "auto-cited"}
    back = Step.from_dict(json.loads(json.dumps(d)))
    assert back.fallback == "auto-cited" and back.detail == {"raw": "x"} and back.usage == u
    assert back.seconds == 0.1235


def test_step_without_llm_or_fallback() -> None:
    d = Step("search", "bm25: 'q' -> 3 hits", detail={"query": "q"}).to_dict()
    assert d["tokens"] == 0 and d["llm"] == {} and d["data"] == {"query": "q"}
    back = Step.from_dict(d)
    assert back.usage is None and back.fallback is None and back.node == "search"
