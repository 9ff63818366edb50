"""``hoprank eval`` through the real CLI: the real agent and the real embedded models."""

from __future__ import annotations

import json

import pytest
from test_eval_datasets import MHR_QUERIES, hf_record, official_record
from typer.testing import CliRunner

from hoprank.cli import app
from hoprank.evals.runner import RESULTS, read_rows


def _hotpot_file(tmp_path):
    recs = [official_record(0), hf_record()]
    recs[1]["question"] = "Who founded the Quill Lamp Works?"
    recs[1]["answer"] = "Ada Quill"
    p = tmp_path / "hotpot.json"
    p.write_text(json.dumps(recs))
    return p


def _config(tmp_path):
    c = tmp_path / "cfg.yaml"
    c.write_text(f"llm:\n  max_tokens: 24\n  n_ctx: 2048\n  cache_dir: {tmp_path / 'cache'}\n")
    return c


def test_eval_errors_name_the_problem(tmp_path):
    q = tmp_path / "MultiHopRAG.json"
    q.write_text(json.dumps(MHR_QUERIES))
    res = CliRunner().invoke(app, ["eval", "--dataset", "multihop-rag", "--path", str(q), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "--corpus" in str(res.exception)
    res = CliRunner().invoke(
        app, ["eval", "--dataset", "hotpotqa", "--path", str(q), "--setting", "sideways", "--out", str(tmp_path / "o2")]
    )
    assert res.exit_code != 0 and "--setting" in str(res.exception)
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            "hotpotqa",
            "--path",
            str(_hotpot_file(tmp_path)),
            "--preset",
            "turbo",
            "--out",
            str(tmp_path / "o3"),
        ],
    )
    assert res.exit_code != 0 and "unknown preset" in str(res.exception)


@pytest.mark.slow
def test_eval_cli_real_agent_distractor_then_resume(tmp_path):
    path, cfg, out = _hotpot_file(tmp_path), _config(tmp_path), tmp_path / "run"
    args = [
        "eval",
        "--dataset",
        "hotpotqa",
        "--path",
        str(path),
        "--setting",
        "distractor",
        "--preset",
        "naive",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--quiet",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{") :])
    m = summary["metrics"]
    assert m["n.total"] == 2 and m["n.retrieval_scored"] == 2
    # each question has 3 paragraphs: the ranked lists are 3 deep, so no @5 / @10 is reported
    assert 0.0 <= m["answer.f1"] <= 1.0 and m["n.retrieval_depth"] == 3 and m["retrieval.recall@2"] > 0
    assert "retrieval.recall@5" not in m and "retrieval.recall@10" not in m
    rows = read_rows(out / RESULTS)
    assert {r["status"] for r in rows} <= {"answered", "not_found", "partial", "failed"}
    # each question searched only its own paragraphs
    for r in rows:
        assert set(r["evidence_docs"]) <= {"Ada Quill", "Marrow Bay", "Otto Brenn"}
    assert len(list((out / "indexes").iterdir())) == 2
    run = json.loads((out / "run.json").read_text())
    assert run["identity"]["preset"] == "naive" and run["identity"]["config"]["agent"]["decompose"] == "none"
    assert run["packages"]["llama-cpp-python"]
    # same --out again: nothing re-answered, nothing duplicated, same summary
    res2 = CliRunner().invoke(app, args)
    assert res2.exit_code == 0, res2.output
    assert len(read_rows(out / RESULTS)) == 2
    assert json.loads(res2.output[res2.output.index("{") :])["metrics"] == m


@pytest.mark.slow
def test_eval_cli_closed_book_multihop_rag(tmp_path):
    q = tmp_path / "MultiHopRAG.json"
    q.write_text(json.dumps(MHR_QUERIES))
    out = tmp_path / "cb"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            "multihop-rag",
            "--path",
            str(q),
            "--setting",
            "closed-book",
            "--config",
            str(_config(tmp_path)),
            "--out",
            str(out),
            "--quiet",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    s = json.loads(res.output[res.output.index("{") :])
    assert s["metrics"]["n.total"] == 2 and set(s["by_type"]) == {"comparison_query", "null_query"}
    assert s["metrics"]["n.retrieval_scored"] == 0  # closed-book: no retrieval metrics at all
    assert not any(k.startswith("retrieval.") for k in s["metrics"])
    assert all(r["prediction"] or r["status"] != "answered" for r in read_rows(out / RESULTS))
