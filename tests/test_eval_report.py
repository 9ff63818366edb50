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

    return replace(
        a,
        answer=f"answer {i % 3}",
        status="answered",
        error=None,
        evidence=a.evidence or deterministic_answer("question number 0?").evidence,
    )


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

    from hoprank.cli import app

    run_eval(deterministic_examples()[:4], deterministic_answer, tmp_path / "a", show_progress=False)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "a"), "--out", str(tmp_path / "r"), "--resamples", "200"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.html").exists() and (tmp_path / "r" / "report.md").exists()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0


def test_mean_ci_bca_and_degenerate_cases():
    ci = Rep.mean_ci([0, 1] * 15, resamples=2000, seed=0)
    assert ci["method"] == "bca" and ci["n"] == 30 and ci["lo"] < 0.5 < ci["hi"]
    assert 0.25 < ci["lo"] and ci["hi"] < 0.75  # about +-1.96 * 0.5 / sqrt(30) = +-0.18
    assert Rep.mean_ci([1.0, 1.0, 1.0]) == {"n": 3, "mean": 1.0, "lo": 1.0, "hi": 1.0, "method": "degenerate"}
    assert Rep.mean_ci([])["method"] == "none"
    assert Rep.mean_ci([0, 1, 1, 0], seed=5) == Rep.mean_ci([0, 1, 1, 0], seed=5)  # seeded


def test_mhr_accuracy_interval_is_the_mapped_interval_of_the_share_correct():
    rows = [{"answer": {"mhr_correct": float(i % 3 == 0)}} for i in range(40)]
    share = Rep.metric_ci(rows, "answer.mhr_f1", resamples=1000)
    acc = Rep.metric_ci(rows, "answer.mhr_accuracy", resamples=1000)
    n, tp = 40, sum(1 for i in range(40) if i % 3 == 0)
    assert acc["mean"] == pytest.approx(n / (n + 2 * (n - tp)))
    assert acc["lo"] == pytest.approx(1 / (3 - 2 * share["lo"])) and acc["hi"] == pytest.approx(
        1 / (3 - 2 * share["hi"])
    )


def test_report_sorts_metrics_by_k_warns_on_small_n_and_gives_each_run_its_interval(tmp_path):
    exs = deterministic_examples()
    run_eval(exs, deterministic_answer, tmp_path / "base", spec=RunSpec("jsonl"), show_progress=False)
    md, _ = Rep.write_report([tmp_path / "base"], tmp_path / "rep", resamples=500)
    text = md.read_text()
    assert "n = 16 < 30" in text and "(n<30)" in text
    overall = text.split("## Overall")[1].split("##")[0]
    assert re.search(r"\| answer.em \| 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\] \|", overall), overall
    names = [
        line.split("|")[1].strip()
        for line in overall.splitlines()
        if line.startswith("| ") and "." in line.split("|")[1]
    ]
    scores = [n for n in names if not n.startswith(("cost.", "n."))]
    from hoprank.evals.metrics import metric_sort_key

    assert scores == sorted(scores, key=metric_sort_key)
    definitions = [
        line.split("`")[1] for line in text.split("## Metric definitions")[1].splitlines() if line.startswith("- `")
    ]
    assert definitions == sorted(definitions, key=metric_sort_key)
    ks = [int(d.rsplit("@", 1)[1]) for d in definitions if d.startswith("retrieval.recall@")]
    assert ks == sorted(ks)


@pytest.mark.browser
@pytest.mark.slow
def test_report_html_fits_1280_pixels(tmp_path):
    from pathlib import Path

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail("Chromium not found at /usr/bin/chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    exs = deterministic_examples()
    names = ["naive", "decompose-with-a-long-name", "hop", "rerank-embedding", "full"]
    for name in names:
        run_eval(
            exs,
            deterministic_answer if name != "hop" else _better,
            tmp_path / name,
            spec=RunSpec("jsonl"),
            show_progress=False,
        )
    _, page_path = Rep.write_report([tmp_path / n for n in names], tmp_path / "rep", resamples=200)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=args, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(page_path.as_uri())
        widths = page.evaluate(
            "[document.documentElement.scrollWidth,"
            " ...[...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().right)]"
        )
        browser.close()
    assert widths[0] <= 1280 and max(widths[1:]) <= 1280, widths
