"""LLM-judged scoring of a finished run (RAGAS + nuggets) with scripted judges: flat summary
names with hand-computed values, undetermined counts, failed questions counted, and reuse
of ragas.json / nuggets.json (zero judge calls) on unchanged rows."""

from __future__ import annotations

import json

import pytest

from hoprank.evals.datasets import QAExample
from hoprank.evals.judge import gold_documents, judge_run, parse_judges
from hoprank.evals.runner import SUMMARY, run_eval
from hoprank.tools.errors import HoprankError
from hoprank.tools.llm.base import ScriptedLLM
from hoprank.tools.types import Answer, Document, Hit

DOCS = [
    Document(
        id="Ada Quill",
        title="Ada Quill",
        text="Ada Quill was born in Marrow Bay in 1871. She founded the Quill Lamp Works.",
    ),
    Document(
        id="Quill Lamp Works", title="Quill Lamp Works", text="Quill Lamp Works was founded in 1896 in Marrow Bay."
    ),
    Document(id="Seren River", title="Seren River", text="The Seren River is 212 kilometres long."),
]
Q1, Q2, Q3 = "Who founded the Quill Lamp Works?", "How long is the Seren River?", "Where is Hollin?"
EXAMPLES = [
    QAExample("q1", Q1, "Ada Quill", type="bridge", gold_doc_ids=["Ada Quill", "Quill Lamp Works"], documents=DOCS),
    QAExample("q2", Q2, "212 kilometres", type="comparison", gold_doc_ids=["Seren River"], documents=DOCS),
    QAExample("q3", Q3, "on the Ashe River", type="bridge", gold_doc_ids=["Hollin"], documents=DOCS),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from hoprank.tools.ingest.index import Index

    idx, _ = Index.build(tmp_path_factory.mktemp("judge-index"), documents=DOCS, show_progress=False)
    return idx


def _answer_fn(index):
    chunks = {c.doc_id: c for c in index.chunks}

    def hits(*docs):
        return [Hit.from_chunk(chunks[d], 1.0 / (i + 1), i + 1, "test") for i, d in enumerate(docs)]

    def answer(question: str) -> Answer:
        if question == Q1:
            return Answer(question, "Ada Quill founded it.", evidence=hits("Ada Quill", "Quill Lamp Works"))
        if question == Q2:
            return Answer(question, "212 km", evidence=hits("Seren River"))
        raise RuntimeError("the agent crashed")  # q3 becomes a failed row

    return answer


def _nli(*verdicts: int) -> str:
    return json.dumps(
        {"statements": [{"statement": f"s{i}", "reason": "r", "verdict": v} for i, v in enumerate(verdicts)]}
    )


def judge_reply(messages) -> str:
    """Scripted judge for both pipelines; q1 vs q2 told apart by 'Seren' in the prompt."""
    system = messages[0]["content"]
    text = "\n".join(m["content"] for m in messages)
    seren = "Seren" in text
    # nuggets (system prompts name the stage)
    if "NuggetizeScoreLLM" in system:
        return '["vital"]' if seren else '["vital", "okay"]'
    if "NuggetizeAssignerLLM" in system:
        return '["partial_support"]' if seren else '["support", "not_support"]'
    if "NuggetizeLLM" in system:
        return (
            '["Seren River is 212 km long"]'
            if seren
            else '["Ada Quill founded Quill Lamp Works", "It was founded in 1896"]'
        )
    # ragas (single user message)
    p = messages[0]["content"]
    if "Break down each sentence into one or more fully understandable statements" in p:
        return json.dumps({"statements": ["s0"] if seren else ["s0", "s1"]})
    if "judge the faithfulness of a series of statements" in p:
        return "I am a small model and cannot answer." if seren else _nli(1, 0)
    if "ContextRecallOutput" in p:
        attributed = [1, 0] if seren else [1]
        return json.dumps(
            {
                "classifications": [
                    {"statement": f"s{i}", "reason": "r", "attributed": a} for i, a in enumerate(attributed)
                ]
            }
        )
    return "???"


@pytest.fixture()
def run_dir(tmp_path, index):
    out = tmp_path / "run"
    run_eval(EXAMPLES, _answer_fn(index), out, show_progress=False)
    return out


METRICS = ["faithfulness", "context_recall"]


def test_judged_summary_names_values_undetermined_and_failed(run_dir, index):
    llm = ScriptedLLM(judge_reply)
    s = judge_run(run_dir, EXAMPLES, index, llm, None, ragas_metrics=METRICS)
    m = s["metrics"]
    assert m["n.failed"] == 1 and m["n.total"] == 3
    # faithfulness: q1 1 of 2 statements supported; q2 unparseable; q3 failed
    assert m["ragas.faithfulness"] == pytest.approx(0.5)
    assert m["ragas.faithfulness.undetermined"] == 2
    # context recall: q1 1/1, q2 1/2; q3 failed -> undetermined, not 0
    assert m["ragas.context_recall"] == pytest.approx(0.75)
    assert m["ragas.context_recall.undetermined"] == 1
    # nuggets: q1 (1, .5, 1, .5), q2 (0, 0, .5, .5), q3 failed (0, 0, 0, 0)
    assert m["nuggets.v_strict"] == pytest.approx(1 / 3, abs=1e-6)
    assert m["nuggets.a_strict"] == pytest.approx(1 / 6, abs=1e-6)
    assert m["nuggets.v"] == pytest.approx(0.5)
    assert m["nuggets.a"] == pytest.approx(1 / 3, abs=1e-6)
    assert m["nuggets.v_strict.undetermined"] == 0
    assert m["nuggets.fallbacks"] == 0 and m["nuggets.fallback_nuggets"] == 0
    assert "ragas.answer_relevancy" not in m  # not asked for
    # per type: bridge = q1 + failed q3
    bridge = s["by_type"]["bridge"]
    assert bridge["nuggets.v_strict"] == pytest.approx(0.5) and bridge["ragas.faithfulness.undetermined"] == 1
    assert s["metric_descriptions"]["ragas.faithfulness.undetermined"]
    # files: reasons, and the failed question never reached the judge
    ragas = json.loads((run_dir / "ragas.json").read_text())["result"]
    assert ragas["undetermined_reasons"]["faithfulness"] == {"unparseable_llm_output": 1, "failed_question": 1}
    assert ragas["undetermined_reasons"]["context_recall"] == {"failed_question": 1}
    assert not any(Q3 in json.dumps(c) for c in llm.calls)
    nug = json.loads((run_dir / "nuggets.json").read_text())["result"]
    q3 = next(p for p in nug["per_response"] if p["qid"] == "q3")
    assert q3["v_strict"] == 0.0 and q3["error"] == "failed_question" and nug["failed_questions"] == 1
    # evidence texts reached the judge (contexts looked up by chunk id in the index)
    assert any("212 kilometres long" in json.dumps(c) for c in llm.calls)
    assert json.loads((run_dir / SUMMARY).read_text())["metrics"] == m


def test_second_call_reuses_files_and_changed_rows_recompute(run_dir, index):
    first = judge_run(run_dir, EXAMPLES, index, ScriptedLLM(judge_reply), None, ragas_metrics=METRICS)
    again = ScriptedLLM(judge_reply)
    second = judge_run(run_dir, EXAMPLES, index, again, None, ragas_metrics=METRICS)
    assert again.calls == [] and second["metrics"] == first["metrics"]
    # a resumed `hoprank eval` rewrites summary.json but keeps still-valid judged scores
    resumed = run_eval(EXAMPLES, _answer_fn(index), run_dir, show_progress=False)
    assert resumed["metrics"]["nuggets.a"] == pytest.approx(first["metrics"]["nuggets.a"])
    # another metric list re-runs RAGAS only; nuggets.json is still reused
    third = ScriptedLLM(judge_reply)
    judge_run(run_dir, EXAMPLES, index, third, None, ragas_metrics=["context_recall"])
    assert third.calls and all("Nuggetize" not in c[0]["content"] for c in third.calls)
    # a retried question changes the rows: nothing stale is reused
    run_eval(EXAMPLES, lambda q: Answer(q, "Ashe River"), run_dir, show_progress=False, retry_failed=True)
    fourth = ScriptedLLM(judge_reply)
    s = judge_run(run_dir, EXAMPLES, index, fourth, None, ragas_metrics=METRICS, nuggets=False)
    assert fourth.calls and s["metrics"]["n.failed"] == 0
    assert s["metrics"]["ragas.context_recall.undetermined"] == 1  # q3 now answered, no evidence
    reasons = json.loads((run_dir / "ragas.json").read_text())["result"]["undetermined_reasons"]
    assert reasons["context_recall"] == {"missing_contexts": 1}


def test_small_model_garbage_is_undetermined_and_fallbacks_counted(run_dir, index):
    s = judge_run(
        run_dir, EXAMPLES, index, ScriptedLLM(["Hello! How can I help you today?"]), None, ragas_metrics=METRICS
    )
    m = s["metrics"]
    assert "ragas.faithfulness" not in m and m["ragas.faithfulness.undetermined"] == 3
    assert m["nuggets.fallback_nuggets"] == 2 and m["nuggets.fallbacks"] > 0
    assert m["nuggets.a"] == 0.0  # every label defaulted to not_support


def test_gold_documents_and_judge_names():
    # supporting paragraphs only; the title is prefixed unless the text already opens with it
    assert gold_documents(EXAMPLES[0]) == (DOCS[0].text, DOCS[1].text)
    mhr = QAExample("m", "q", "a", gold_doc_ids=["Some Article"], supporting_facts=["fact one"])
    assert gold_documents(mhr) == ("fact one",)
    assert gold_documents(QAExample("x", "q", "a", documents=DOCS[2:])) == (
        "Seren River. The Seren River is 212 kilometres long.",
    )
    assert parse_judges("ragas, nuggets") == (True, True) and parse_judges(None) == (False, False)
    with pytest.raises(HoprankError, match="'rouge'"):
        parse_judges("ragas,rouge")


def test_cli_judge_and_report(run_dir, index, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hoprank.cli import app
    from hoprank.evals import judge as J

    monkeypatch.setattr(J, "make_judge_llm", lambda *a, **k: ScriptedLLM(judge_reply))
    res = CliRunner().invoke(
        app,
        [
            "judge",
            str(run_dir),
            "--index",
            str(index.path),
            "--ragas-metrics",
            "faithfulness,context_recall",
            "--quiet",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{") :])
    assert summary["metrics"]["ragas.context_recall"] == pytest.approx(0.75)
    bad = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            "jsonl",
            "--path",
            str(tmp_path / "none.jsonl"),
            "--judge",
            "bleu",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert bad.exit_code != 0 and "bleu" in str(bad.exception)
    res = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "rep"), "--resamples", "100"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "LLM-judged" in md and "| run | nuggets.v_strict | 0.333 | 0 |" in md
    assert "ragas.faithfulness.undetermined" in md  # metric definitions list it
