"""Report generation: markdown + self-contained HTML with plots and a paired bootstrap CI."""

from __future__ import annotations

import base64
import re

import pytest
from test_eval_runner import deterministic_answer, deterministic_examples

from hoprank.evals import report as Rep
from hoprank.evals.runner import RunSpec, run_eval
from hoprank.tools.types import Answer


def _better(question: str) -> Answer:
    a = deterministic_answer(question)
    i = int(question.split()[2].rstrip("?"))
    from dataclasses import replace

    return replace(a, answer=f"answer {i % 3}", status="answered", error=None, evidence=a.evidence or deterministic_answer("question number 0?").evidence)


def test_paired_bootstrap_hand_checked():
    a = [0.0] * 10
    b = [1.0] * 10
    ci = Rep.paired_bootstrap(a, b, resamples=500, seed=1)
    assert ci["diff"] == 1.0 and ci["lo"] == 1.0 and ci["hi"] == 1.0 and ci["p_le_0"] == 0.0
    a = [0, 1, 0, 1, 0, 1, 0, 1]
    b = [1, 0, 0, 1, 1, 1, 0, 1]
    ci1 = Rep.paired_bootstrap(a, b, resamples=2000, seed=7)
    ci2 = Rep.paired_bootstrap(a, b, resamples=2000, seed=7)
    assert ci1 == ci2  # seeded
    assert ci1["diff"] == pytest.approx(0.125) and ci1["lo"] < 0.125 < ci1["hi"]
    with pytest.raises(ValueError):
        Rep.paired_bootstrap([1.0], [1.0, 2.0])


def test_report_markdown_and_html(tmp_path):
    exs = deterministic_examples()
    run_eval(exs, deterministic_answer, tmp_path / "base", spec=RunSpec("jsonl"), show_progress=False)
    run_eval(exs[:12], _better, tmp_path / "better", spec=RunSpec("jsonl"), show_progress=False)
    md, html = Rep.write_report([tmp_path / "base", tmp_path / "better"], tmp_path / "rep", resamples=1000, seed=3)
    text = md.read_text()
    assert "## By question type" in text and "| base | even |" in text
    assert "Paired bootstrap 95% CI (1000 resamples, seed 3" in text
    m = re.search(r"\| better - base \| answer.em \| 12 \| ([-0-9.]+) \| \[([-0-9.]+), ([-0-9.]+)\] \|", text)
    assert m, text
    diff, lo, hi = map(float, m.groups())
    assert lo <= diff <= hi and diff > 0
    for png in ("metrics.png", "recall_at_k.png", "cost_quality.png"):
        assert (tmp_path / "rep" / png).read_bytes().startswith(b"\x89PNG")
    page = html.read_text()
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(imgs) == 3 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in imgs)
    assert "95% CI" in page and "better - base" in page and "<table>" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched


def test_report_cli(tmp_path):
    from typer.testing import CliRunner

    from hoprank.agent.cli import app

    run_eval(deterministic_examples()[:4], deterministic_answer, tmp_path / "a", show_progress=False)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "a"), "--out", str(tmp_path / "r"), "--resamples", "200"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.html").exists() and (tmp_path / "r" / "report.md").exists()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0
