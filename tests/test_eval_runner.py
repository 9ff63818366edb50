"""The run manager end to end with deterministic answer functions, plus resume after SIGKILL."""

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

from hoprank.evals import runner as R
from hoprank.evals.datasets import QAExample
from hoprank.tools.errors import HoprankError
from hoprank.tools.types import Answer, Citation, Document, Hit


def _doc(title: str, text: str) -> Document:
    return Document(id=title, text=text, title=title, source="fixture")


DOCS = {
    "Ada Quill": "Ada Quill was born in Marrow Bay in 1871. She founded the Quill Lamp Works.",
    "Marrow Bay": "Marrow Bay is a port town on the Seren River.",
    "Seren River": "The Seren River is 212 kilometres long and flows into the Grey Sound.",
    "Otto Brenn": "Otto Brenn was a clockmaker born in Hollin in 1860.",
    "Hollin": "Hollin is a mountain village on the Ashe River.",
}


def tiny_examples() -> list[QAExample]:
    d = {t: _doc(t, x) for t, x in DOCS.items()}
    return [
        QAExample(
            "q1",
            "Which river flows by the town where Ada Quill was born?",
            "Seren River",
            "bridge",
            "easy",
            ["Ada Quill", "Marrow Bay"],
            [("Ada Quill", 0), ("Marrow Bay", 0)],
            [d["Ada Quill"], d["Marrow Bay"], d["Otto Brenn"]],
        ),
        QAExample(
            "q2",
            "On which river is the village where Otto Brenn was born?",
            "Ashe River",
            "bridge",
            "easy",
            ["Otto Brenn", "Hollin"],
            [("Otto Brenn", 0), ("Hollin", 0)],
            [d["Otto Brenn"], d["Hollin"], d["Seren River"]],
        ),
        QAExample(
            "q3",
            "How long is the Seren River?",
            "212 kilometres",
            "comparison",
            "hard",
            ["Seren River"],
            [("Seren River", 0)],
            [d["Seren River"], d["Hollin"]],
        ),
        QAExample(
            "q4",
            "Was Ada Quill born before Otto Brenn?",
            "no",
            "comparison",
            "hard",
            ["Ada Quill", "Otto Brenn"],
            [],
            [d["Ada Quill"], d["Otto Brenn"]],
        ),
    ]


def test_pooled_run_end_to_end_with_real_index(tmp_path):
    """A deterministic answer_fn over the real pooled index (BM25): rows, summary, run.json."""
    exs = tiny_examples()
    out = tmp_path / "run"
    idx, ipath = R.build_pooled_index(exs, out, show_progress=False)
    assert sorted({c.doc_id for c in idx.chunk_by_id.values()}) == sorted(DOCS)
    bm25 = idx.retriever("bm25")
    canned = {"q1": "the Seren River", "q2": "Ashe", "q3": "212 kilometres"}

    def answer_fn(question: str) -> Answer:
        if question.startswith("Was Ada"):
            raise RuntimeError("boom")  # must become a failed row, not a crash
        hits = bm25.search(question, 5)
        qid = next(e.id for e in exs if e.question == question)
        return Answer(
            question,
            canned[qid],
            citations=[Citation(1, hits[0].id)],
            evidence=hits,
            trace={"usage": {"calls": 2, "prompt_tokens": 100, "completion_tokens": 5}, "seconds": 0.5},
        )

    spec = R.RunSpec("jsonl", dataset_path="fixture", dataset_sha256="abc", setting="pooled", config={"x": 1})
    s = R.run_eval(exs, answer_fn, out, spec=spec, concurrency=2, show_progress=False)
    rows = R.read_rows(out / R.RESULTS)
    assert sorted(r["id"] for r in rows) == ["q1", "q2", "q3", "q4"]
    by = {r["id"]: r for r in rows}
    assert by["q4"]["status"] == "failed" and "boom" in by["q4"]["error"]
    assert by["q4"]["answer"]["f1"] == 0.0 and all(v == 0.0 for v in by["q4"]["retrieval"].values())
    assert by["q1"]["answer"]["em"] == 1.0 and by["q2"]["answer"]["em"] == 0.0
    assert by["q3"]["retrieval"]["recall@5"] == 1.0  # BM25 finds the only gold paragraph
    assert by["q1"]["evidence"][0].endswith("#0") and by["q1"]["evidence_docs"]
    m = s["metrics"]
    assert m["n.total"] == 4 and m["n.failed"] == 1 and m["n.answered"] == 3
    assert m["answer.em"] == pytest.approx(2 / 4)
    assert m["cost.llm_calls_per_q"] == pytest.approx(6 / 4)
    assert m["cost.seconds_per_q"] == pytest.approx((0.5 * 3 + by["q4"]["seconds"]) / 4, abs=1e-4)
    # 5 chunks retrieved: @k up to 5, and no @10 computed over 5 items
    assert m["n.retrieval_depth"] == 5 and "retrieval.mrr@10" not in m
    assert "retrieval.recall@10" not in s["by_type"]["bridge"]
    for k in ("retrieval.both_gold@5", "retrieval.recall@2", "retrieval.mrr@5", "retrieval.sp_em", "answer.f1"):
        assert k in m and k in s["metric_descriptions"]
    assert set(s["by_type"]) == {"bridge", "comparison"} and s["by_type"]["bridge"]["n.total"] == 2
    info = json.loads((out / R.RUN_INFO).read_text())
    assert info["identity"]["dataset_sha256"] == "abc" and "numpy" in info["packages"]
    assert json.loads((out / R.SUMMARY).read_text())["metrics"] == m
    # the index is reused, not rebuilt
    mtime = (ipath / ".complete").stat().st_mtime_ns
    R.build_pooled_index(exs, out, show_progress=False)
    assert (ipath / ".complete").stat().st_mtime_ns == mtime


def test_timeout_and_wrong_return_type_are_failed_rows(tmp_path):
    exs = tiny_examples()[:2]

    def slow_or_bad(question: str):
        if "Ada" in question:
            time.sleep(2)
            return Answer(question, "late")
        return "not an Answer"

    s = R.run_eval(exs, slow_or_bad, tmp_path, timeout_s=0.3, show_progress=False)
    rows = {r["id"]: r for r in R.read_rows(tmp_path / R.RESULTS)}
    assert rows["q1"]["status"] == "failed" and "timeout" in rows["q1"]["error"]
    assert rows["q2"]["status"] == "failed" and "expected" in rows["q2"]["error"]
    assert s["metrics"]["n.failed"] == 2 and s["metrics"]["answer.f1"] == 0.0


async def _async_fn(question: str) -> Answer:
    return Answer(question, "Seren River", trace={"seconds": 0.1})


def test_async_answer_fn_and_retry_failed(tmp_path):
    exs = tiny_examples()[:1]
    R.run_eval(exs, lambda q: (_ for _ in ()).throw(RuntimeError("x")), tmp_path, show_progress=False)
    assert R.read_rows(tmp_path / R.RESULTS)[0]["status"] == "failed"
    s = R.run_eval(exs, _async_fn, tmp_path, show_progress=False)  # kept: no retry by default
    assert s["metrics"]["n.failed"] == 1
    s = R.run_eval(exs, _async_fn, tmp_path, show_progress=False, retry_failed=True)
    assert s["metrics"]["n.failed"] == 0 and s["metrics"]["answer.em"] == 1.0
    assert len(R.read_rows(tmp_path / R.RESULTS)) == 1


def test_multihop_rag_rows_skip_null_queries_in_retrieval(tmp_path):
    facts = ["Lumen shipped its first lamp on Monday.", "The new Lumen lamp is bright."]
    exs = [
        QAExample(
            "m1",
            "Did both report the lamp?",
            "Yes",
            "comparison_query",
            gold_doc_ids=["A", "B"],
            supporting_facts=facts,
            metadata={"dataset": "multihop-rag"},
        ),
        QAExample(
            "m2",
            "Who won the 2031 cup?",
            "Insufficient information.",
            "null_query",
            metadata={"dataset": "multihop-rag"},
        ),
    ]
    hits = [
        Hit("B#0", 1.0, "Review: The new Lumen\nlamp is bright. Really.", doc_id="B", rank=1),
        Hit("A#3", 0.5, "unrelated", doc_id="A", rank=2),
    ]

    def fn(q: str) -> Answer:
        return Answer(
            q, "yes, both did" if "both" in q else "insufficient information", evidence=hits, trace={"seconds": 1.0}
        )

    s = R.run_eval(exs, fn, tmp_path, show_progress=False)
    m = s["metrics"]
    assert m["n.total"] == 2 and m["n.retrieval_scored"] == 1
    # two chunks retrieved: MultiHop-RAG's @4 and @10 would be computed over 2 items, so neither is reported
    assert m["n.retrieval_depth"] == 2 and not [k for k in m if k.startswith("retrieval.mhr")]
    assert m["answer.word_overlap_lenient"] == 1.0 and s["by_type"]["null_query"]["answer.word_overlap_lenient"] == 1.0
    # the reference keeps punctuation on words: "yes," does not match "Yes"; "insufficient" matches
    assert s["by_type"]["comparison_query"]["answer.mhr_f1"] == 0.0
    assert s["by_type"]["null_query"]["answer.mhr_f1"] == 1.0
    assert m["answer.mhr_f1"] == 0.5 and m["answer.mhr_accuracy"] == 0.5  # n / (n + 2 * wrong) = 2 / 4
    deep = hits + [Hit(f"C#{i}", 0.1, "filler", doc_id="C", rank=3 + i) for i in range(8)]
    deep_fn = lambda q: Answer(q, "Yes", evidence=deep, trace={"seconds": 1.0})  # noqa: E731
    s = R.run_eval(exs, deep_fn, tmp_path / "deep", show_progress=False)
    m = s["metrics"]
    assert m["retrieval.mhr_hits@4"] == 1.0 and m["retrieval.mhr_mrr@10"] == 1.0 and m["retrieval.mhr_map@10"] == 0.5
    assert s["by_type"]["comparison_query"]["answer.mhr_f1"] == 1.0
    s2 = R.run_eval(exs, fn, tmp_path / "cb", show_progress=False, score_retrieval=False)
    assert s2["metrics"]["n.retrieval_scored"] == 0


def test_resume_refuses_a_different_config(tmp_path):
    exs = tiny_examples()[:1]
    R.run_eval(exs, _async_fn, tmp_path, spec=R.RunSpec("jsonl", config={"a": 1}), show_progress=False)
    with pytest.raises(R.RunMismatchError, match="config"):
        R.run_eval(exs, _async_fn, tmp_path, spec=R.RunSpec("jsonl", config={"a": 2}), show_progress=False)


def test_read_rows_tolerates_torn_tail(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "ans')
    assert [r["id"] for r in R.read_rows(p, repair=True)] == ["a", "b"]
    assert p.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    p.write_text('{"id": "a"}\n{"id": "b"}')  # complete row, newline lost
    assert [r["id"] for r in R.read_rows(p, repair=True)] == ["a", "b"]
    assert p.read_text().endswith('"b"}\n')
    p.write_text('{"id": "a"}\n{bad\n{"id": "c"}\n')
    with pytest.raises(HoprankError, match="line 2"):
        R.read_rows(p)


RUN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_eval_runner import deterministic_examples, deterministic_answer
    from hoprank.evals.runner import RunSpec, run_eval

    def slow(q):
        time.sleep(float(sys.argv[2]))
        return deterministic_answer(q)

    spec = RunSpec("jsonl", config={{"k": 1}})
    run_eval(deterministic_examples(), slow, sys.argv[1], spec=spec, concurrency=2, show_progress=False)
    """
)


def deterministic_examples() -> list[QAExample]:
    return [
        QAExample(
            f"d{i:02d}",
            f"question number {i}?",
            f"answer {i % 3}",
            "even" if i % 2 == 0 else "odd",
            gold_doc_ids=[f"doc{i}", f"doc{i + 1}"],
        )
        for i in range(16)
    ]


def deterministic_answer(question: str) -> Answer:
    i = int(question.split()[2].rstrip("?"))
    hits = [
        Hit(f"doc{j}#0", 1.0 / (r + 1), f"text {j}", doc_id=f"doc{j}", rank=r + 1)
        for r, j in enumerate((i + 1, i + 7, i))
    ]
    if i % 5 == 4:
        return Answer(
            question, "", status="failed", error="flaky endpoint", trace={"usage": {"calls": 1}, "seconds": 0.25}
        )
    return Answer(
        question,
        f"answer {i % 2}",
        evidence=hits,
        trace={
            "usage": {"calls": 1 + i % 3, "prompt_tokens": 10 * i, "completion_tokens": 3},
            "seconds": 0.1 * (i % 4),
        },
    )


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT.format(tests=str(Path(__file__).parent)))
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.15"], env=env)
    results = killed / R.RESULTS
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results.exists() and results.read_text().count("\n") >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(R.read_rows(results))
    assert 5 <= n_before < 16, "the run must be killed mid-way"
    with open(results, "a") as f:  # a row torn by the kill
        f.write('{"id": "d15", "question": "quest')
    # restart to completion, in-process, with the same output folder
    s_resumed = R.run_eval(
        deterministic_examples(),
        deterministic_answer,
        killed,
        spec=R.RunSpec("jsonl", config={"k": 1}),
        concurrency=3,
        show_progress=False,
    )
    rows = R.read_rows(results)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 16
    s_clean = R.run_eval(
        deterministic_examples(),
        deterministic_answer,
        tmp_path / "clean",
        spec=R.RunSpec("jsonl", config={"k": 1}),
        show_progress=False,
    )
    assert s_resumed == s_clean
    assert s_clean["metrics"]["n.failed"] == 3  # d04, d09, d14


def test_presets_merge_into_config():
    from hoprank.evals.presets import PRESETS, apply_preset, flatten, preset

    naive = apply_preset({}, "naive")
    got = (naive.agent.decompose, naive.agent.max_hops, naive.rerank.method, naive.retrieval.k)
    assert got == ("none", 0, "none", 10)  # retrieves 10 for its @10 metrics
    assert naive.agent.answer_style == "short"
    assert apply_preset({}, "decompose").agent.decompose == "auto"
    hop = apply_preset({"llm": {"max_tokens": 64}}, "hop")
    assert hop.agent.max_hops == 2 and hop.llm.max_tokens == 64
    for m in ("setwise", "rebel", "listwise", "pointwise", "cross-encoder", "embedding"):
        assert apply_preset({}, f"rerank-{m}").rerank.method == m
    assert apply_preset({}, "full").agent.verify is True
    assert set(PRESETS) >= {"naive", "decompose", "hop", "full"}
    assert flatten(preset("naive"))["agent.max_hops"] == 0
    with pytest.raises(HoprankError, match="unknown preset"):
        preset("turbo")
