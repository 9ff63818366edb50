"""The same eval command in a fresh process gives byte-identical predictions.

Real embedded SmolLM2 through llama.cpp, each run in its own ``hoprank eval`` process with
its own empty LLM cache. The closed-book pair runs the questions in opposite orders: before
the KV cache was cleared per call, an answer depended on the prompt evaluated before it
(llama.cpp reused the shared prefix and batched the rest differently, which changes the
rounding and, at near-ties, the greedy token). The pooled pair runs the real agent twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_corpus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

QUESTIONS = [
    {"id": "q1", "question": "What is the capital of France?", "answer": "Paris", "type": "geo"},
    {"id": "q2", "question": "Who wrote Hamlet?", "answer": "William Shakespeare", "type": "books"},
    {
        "id": "q3",
        "question": "In which town was Ada Quill born?",
        "answer": "Marrow Bay",
        "type": "bridge",
        "gold_doc_ids": ["ada.md"],
    },
    {
        "id": "q4",
        "question": "How long is the Seren River?",
        "answer": "212 kilometres",
        "type": "geo",
        "gold_doc_ids": ["seren.md"],
    },
    {"id": "q5", "question": "Is the Seine longer than the Thames?", "answer": "yes", "type": "comparison"},
]


def _hoprank() -> list[str]:
    exe = Path(sys.executable).with_name("hoprank")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hoprank.cli"]


def _eval(tmp: Path, name: str, records: list[dict], extra: list[str]) -> tuple[dict[str, str], dict]:
    data = tmp / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = tmp / f"{name}.yaml"
    # a generous timeout: a deadline hit under load would fail a question, which is load, not output
    llm = (
        f"  max_tokens: 24\n  n_ctx: 2048\n  n_threads: 2\n  timeout_s: 3600\n  cache_dir: {tmp / (name + '-cache')}\n"
    )
    cfg.write_text("llm:\n" + llm)
    out = tmp / name
    cmd = [
        *_hoprank(),
        "eval",
        "--dataset",
        "jsonl",
        "--path",
        str(data),
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=1500)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text("utf-8").splitlines() if line.strip()]
    return {r["id"]: r["prediction"] for r in rows}, json.loads((out / "run.json").read_text("utf-8"))


def _as_bytes(preds: dict[str, str]) -> bytes:
    return json.dumps(sorted(preds.items()), ensure_ascii=False).encode("utf-8")


def test_closed_book_predictions_are_identical_across_processes_and_question_orders(tmp_path):
    a, info = _eval(tmp_path, "forward", QUESTIONS, ["--setting", "closed-book"])
    b, _ = _eval(tmp_path, "reversed", QUESTIONS[::-1], ["--setting", "closed-book"])
    assert set(a) == {q["id"] for q in QUESTIONS} and any(a.values())
    assert _as_bytes(a) == _as_bytes(b)
    llm = info["llm"]
    assert llm["backend"] == "llamacpp" and llm["seed"] == 0 and llm["n_threads"] == 2 and llm["n_batch"] == 512
    assert llm["greedy"] is True and llm["temperature"] == 0.0 and llm["prefix_cache"] is False


def test_agent_predictions_are_identical_across_processes(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    records = QUESTIONS[2:4]
    extra = ["--setting", "pooled", "--corpus", str(corpus), "--preset", "naive"]
    a, _ = _eval(tmp_path, "first", records, extra)
    b, _ = _eval(tmp_path, "second", records, extra)
    assert set(a) == {"q3", "q4"} and _as_bytes(a) == _as_bytes(b)
