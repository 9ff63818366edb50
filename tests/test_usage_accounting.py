"""Issue 10.2-3: LLM usage is recorded the same whether a response came from the cache or not.

* an eval run killed with SIGKILL mid-question and resumed (its first LLM calls now cache
  hits) ends with a summary.json byte-identical to an uninterrupted run's, cost included;
* the agent's token budget counts cached tokens, so the same question with the same config
  takes the same path on a cold and on a warm cache.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hoprank.agent.app.api import Agent
from hoprank.evals import runner as R
from hoprank.evals.datasets import QAExample
from hoprank.tools.llm.base import ScriptedLLM, usage_of
from hoprank.tools.llm.cache import ResponseCache
from hoprank.tools.types import Answer, Hit

N = 12


def examples() -> list[QAExample]:
    return [
        QAExample(
            f"u{i:02d}",
            f"question number {i}?",
            f"answer {i % 2}",
            "even" if i % 2 == 0 else "odd",
            gold_doc_ids=[f"doc{i}"],
        )
        for i in range(N)
    ]


def scripted(messages: list[dict]) -> str:
    """Deterministic replies whose length depends on the prompt (so tokens vary per call)."""
    i, j = (int(x) for x in messages[-1]["content"].split("|"))
    return " ".join(["answer", str(i % 2)] + ["word"] * (j + i % 3))


def cached_llm(cache_dir: str | Path) -> ScriptedLLM:
    llm = ScriptedLLM(scripted, max_concurrency=1)
    llm.cache = ResponseCache(cache_dir)
    return llm


def answer_fn(llm: ScriptedLLM, pause: float = 0.0):
    """Each question makes 2-4 LLM calls, pausing *after* each one, so a kill at any moment
    catches in-flight questions whose first calls are already in the cache."""

    def answer(question: str) -> Answer:
        i = int(question.split()[2].rstrip("?"))
        responses = []
        for j in range(2 + i % 3):
            responses.append(llm.chat([{"role": "user", "content": f"{i}|{j}"}]))
            time.sleep(pause)
        hits = [Hit(f"doc{i}#0", 1.0, "text", doc_id=f"doc{i}", rank=1)]
        # seconds are pinned: wall time is the one cost that legitimately differs between runs
        return Answer(
            question,
            responses[-1].text.split(" word")[0],
            evidence=hits,
            trace={"usage": usage_of(*responses), "seconds": 0.1 * (i % 3)},
        )

    return answer


RUN_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_usage_accounting import answer_fn, cached_llm, examples
    from hoprank.evals.runner import RunSpec, run_eval

    run_eval(examples(), answer_fn(cached_llm(sys.argv[2]), float(sys.argv[3])), sys.argv[1],
             spec=RunSpec("jsonl", config={{"k": 1}}), concurrency=2, show_progress=False)
    """
)


def test_resumed_run_after_sigkill_has_a_byte_identical_summary_cost_included(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT.format(tests=str(Path(__file__).parent)))
    killed, cache = tmp_path / "killed", tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(killed), str(cache), "0.1"], env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    results = killed / R.RESULTS
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(R.read_rows(results))
    assert 4 <= n_before < N, "the run must be killed mid-way"

    # resume in-process on the same cache: the killed questions' first calls are replayed
    llm = cached_llm(cache)
    R.run_eval(
        examples(), answer_fn(llm), killed, spec=R.RunSpec("jsonl", config={"k": 1}), concurrency=2, show_progress=False
    )
    rows = R.read_rows(results)
    assert sorted(r["id"] for r in rows) == [e.id for e in examples()]
    assert llm.usage.cached_calls >= 1, "the resume must replay calls the killed run paid for"
    assert sum(r["tokens"]["cached_calls"] for r in rows) == llm.usage.cached_calls

    clean = tmp_path / "clean"
    R.run_eval(
        examples(),
        answer_fn(cached_llm(tmp_path / "cache2")),
        clean,
        spec=R.RunSpec("jsonl", config={"k": 1}),
        show_progress=False,
    )
    resumed_bytes, clean_bytes = (killed / R.SUMMARY).read_bytes(), (clean / R.SUMMARY).read_bytes()
    assert resumed_bytes == clean_bytes
    cost = json.loads(clean_bytes)["metrics"]
    assert cost["cost.llm_calls_per_q"] == pytest.approx(sum(2 + i % 3 for i in range(N)) / N)
    assert cost["cost.tokens_per_q"] > 0


def test_closed_book_counts_a_cache_hit_like_a_paid_call(tmp_path):
    llm = ScriptedLLM(["Paris"])
    llm.cache = ResponseCache(tmp_path)
    fn = R.closed_book_answer_fn(llm)
    cold, warm = fn("Capital of France?"), fn("Capital of France?")
    assert warm.trace["usage"]["cached_calls"] == 1 and cold.trace["usage"]["cached_calls"] == 0
    for key in ("calls", "prompt_tokens", "completion_tokens"):
        assert cold.trace["usage"][key] == warm.trace["usage"][key] > 0


def test_token_budget_takes_the_same_path_on_a_cold_and_a_warm_cache(built_index, tmp_path):
    """Before: only paid tokens counted, so a warm cache let the same question hop further."""

    def script(msgs):
        if "JSON" in msgs[-1]["content"]:
            return (
                '{"type": "bridge", "subquestions": ["Who founded Quill Lamp Works?", "Where was that founder born?"]}'
            )
        return "Marrow Bay " + "filler " * 60 + "[1]"

    def run() -> Answer:
        llm = ScriptedLLM(script)
        llm.cache = ResponseCache(tmp_path / "cache")
        cfg = {"rerank": {"method": "none"}, "agent": {"max_hops": 3, "max_tokens_budget": 100, "decompose": "llm"}}
        return Agent.from_config(cfg, index=built_index, llm=llm).ask(
            "In which town was the founder of Quill Lamp Works born?"
        )

    cold, warm = run(), run()
    assert warm.trace["usage"]["cached_calls"] == warm.trace["usage"]["calls"] > 0
    assert cold.trace["usage"]["cached_calls"] == 0
    assert (warm.status, warm.trace["hops"], warm.trace["stop_reason"], warm.answer) == (
        cold.status,
        cold.trace["hops"],
        cold.trace["stop_reason"],
        cold.answer,
    )
    for key in ("calls", "prompt_tokens", "completion_tokens"):
        assert warm.trace["usage"][key] == cold.trace["usage"][key]
    assert "budget" in (cold.trace["stop_reason"] or ""), cold.trace["stop_reason"]


def test_one_usage_record_from_responses_to_trace(tmp_path):
    """The client's running total, a rerank call's recorder, a node's trace step and an eval
    row count the same calls the same way (one Usage, summed), cache replays included."""
    from hoprank.agent.context import step
    from hoprank.tools.rerank.base import CallRecorder
    from hoprank.tools.types import Step, Usage

    llm = cached_llm(tmp_path / "cache")
    before = llm.usage.snapshot()
    rec = CallRecorder()
    batch = [[{"role": "user", "content": f"{i}|1"}] for i in range(3)]
    first = rec.chat_many(llm, batch, "rank")
    again = rec.chat_many(llm, batch[:2], "rank")  # replayed from the cache
    assert [r.cached for r in again] == [True, True]
    spent = llm.usage.snapshot() - before
    assert rec.usage == spent == usage_of(*first, *again) == sum(map(usage_of, first + again), Usage())
    assert spent.calls == 5 and spent.cached_calls == 2 and spent.paid_calls == 3

    entry = step("rerank", "3 candidates", time.perf_counter(), llm=usage_of(*again), fallback="text mode")
    assert entry["tokens"] == usage_of(*again).tokens > 0 and entry["data"]["fallback"] == "text mode"
    assert Step.from_dict(json.loads(json.dumps(entry))).usage == usage_of(*again)
    row = R._usage({"usage": usage_of(*again).to_dict()})
    assert (row["llm_calls"], row["cached_calls"], row["total_tokens"]) == (2, 2, entry["tokens"])
