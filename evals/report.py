"""Compare eval runs: markdown + a self-contained HTML page (plots embedded as base64 PNG).

Differences between two runs are reported with a paired bootstrap 95% confidence interval
over the questions both runs answered, because on a few dozen questions a gap of several
F1 points is often noise; the interval says so.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hoprank.evals import judge as _judge  # noqa: F401  (registers ragas.* / nuggets.* metric names)
from hoprank.evals import metrics as M
from hoprank.evals.runner import RESULTS, RUN_INFO, SUMMARY, read_rows, summarize
from hoprank.tools.errors import HoprankError

HEADLINE = ("answer.em", "answer.f1", "answer.word_overlap", "retrieval.both_gold@2", "retrieval.both_gold@5", "retrieval.recall@5", "retrieval.mrr@10", "retrieval.mhr_hits@10")
COMPARE = ("answer.f1", "answer.em", "answer.word_overlap", "retrieval.both_gold@5", "retrieval.recall@5", "retrieval.mhr_hits@10")


@dataclass
class Run:
    name: str
    path: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return self.summary.get("metrics", {})


def load_run(path: str | Path, name: str | None = None) -> Run:
    path = Path(path)
    if not (path / RESULTS).exists():
        raise HoprankError(f"{path} is not an eval run folder (no {RESULTS}); run `hoprank eval --out {path}` first")
    rows = read_rows(path / RESULTS)
    dedup: dict[str, dict[str, Any]] = {}
    for r in rows:
        dedup.setdefault(r["id"], r)
    rows = list(dedup.values())
    summary = json.loads((path / SUMMARY).read_text("utf-8")) if (path / SUMMARY).exists() else summarize(rows)
    info = json.loads((path / RUN_INFO).read_text("utf-8")) if (path / RUN_INFO).exists() else {}
    return Run(name or path.name, path, rows, summary, info)


def row_value(row: dict[str, Any], metric: str) -> float | None:
    """A per-question value of a summary metric (``answer.f1`` -> row["answer"]["f1"])."""
    group, _, key = metric.partition(".")
    block = row.get(group)
    if isinstance(block, dict) and key in block:
        return float(block[key])
    return None


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict[str, float]:
    """Mean of b - a with a percentile bootstrap CI; questions resampled in pairs."""
    if len(a) != len(b):
        raise ValueError("paired bootstrap needs equal-length score lists")
    if not 100 <= resamples <= 100_000:
        raise ValueError(f"resamples must be in [100, 100000], got {resamples}")
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    n = len(diff)
    if n == 0:
        return {"n": 0, "diff": 0.0, "lo": 0.0, "hi": 0.0, "p_le_0": 1.0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    means = diff[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"n": n, "diff": float(diff.mean()), "lo": float(lo), "hi": float(hi), "p_le_0": float((means <= 0).mean())}


def compare_runs(base: Run, other: Run, metrics: Sequence[str] = COMPARE, resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Paired CIs of ``other - base`` on their common question ids, per metric."""
    a_by = {r["id"]: r for r in base.rows}
    b_by = {r["id"]: r for r in other.rows}
    common = [i for i in a_by if i in b_by]
    out = []
    for m in metrics:
        pairs = [(row_value(a_by[i], m), row_value(b_by[i], m)) for i in common]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if not pairs:
            continue
        ci = paired_bootstrap([p[0] for p in pairs], [p[1] for p in pairs], resamples, seed)
        out.append({"metric": m, "base": base.name, "other": other.name, **ci})
    return out


# --------------------------------------------------------------------------- plots


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_metric_bars(runs: Sequence[Run], metrics: Sequence[str]) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(metrics) * max(1, len(runs)) / 2), 3.8))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(metrics))
    for j, run in enumerate(runs):
        ax.bar(x + j * width, [run.metrics.get(m, 0.0) for m in metrics], width, label=run.name)
    ax.set_xticks(x + width * (len(runs) - 1) / 2, metrics, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=8)
    ax.set_title("metrics per run")
    return _png(fig)


def _recall_curve(run: Run, family: str = "retrieval.recall@") -> list[tuple[int, float]]:
    pts = []
    for k, v in run.metrics.items():
        m = re.fullmatch(re.escape(family) + r"(\d+)", k)
        if m:
            pts.append((int(m.group(1)), v))
    return sorted(pts)


def plot_recall_curves(runs: Sequence[Run]) -> bytes | None:
    if not any(_recall_curve(r) for r in runs):
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for fam, ax in zip(("retrieval.recall@", "retrieval.both_gold@"), axes):
        for run in runs:
            pts = _recall_curve(run, fam)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=run.name)
        ax.set_xlabel("k")
        ax.set_ylim(0, 1)
        ax.set_title(fam.rstrip("@") + "@k")
        ax.legend(fontsize=8)
    return _png(fig)


def plot_cost_quality(runs: Sequence[Run], quality: str) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for cost, ax in zip(("cost.seconds_per_q", "cost.llm_calls_per_q"), axes):
        for run in runs:
            ax.scatter(run.metrics.get(cost, 0.0), run.metrics.get(quality, 0.0), s=40)
            ax.annotate(run.name, (run.metrics.get(cost, 0.0), run.metrics.get(quality, 0.0)), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(cost)
        ax.set_ylabel(quality)
        ax.set_title(f"{quality} vs {cost.split('.')[1]}")
    return _png(fig)


# --------------------------------------------------------------------------- tables


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _headline(runs: Sequence[Run]) -> list[str]:
    present = [m for m in HEADLINE if any(m in r.metrics for r in runs)]
    return present + ["cost.llm_calls_per_q", "cost.seconds_per_q", "n.total", "n.failed"]


def judged_rows(runs: Sequence[Run]) -> list[list[Any]]:
    """One row per judged metric present: the mean and how many questions were undetermined
    (a mean over 3 of 50 questions must not read like a mean over 50)."""
    out: list[list[Any]] = []
    for r in runs:
        m = r.metrics
        names = [f"ragas.{x}" for x in _judge.RAGAS_METRICS] + [f"nuggets.{x}" for x in _judge.NUGGET_METRICS]
        for name in names:
            und = m.get(f"{name}.undetermined")
            if name in m or und is not None:
                out.append([r.name, name, m.get(name, "n/a (none determined)"), int(und) if und is not None else ""])
        for name in ("nuggets.fallbacks", "nuggets.fallback_nuggets"):
            if name in m:
                out.append([r.name, name, int(m[name]), ""])
    return out


def build_sections(runs: Sequence[Run], resamples: int = 2000, seed: int = 0) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, header, rows) tables shared by the markdown and the HTML outputs."""
    cols = _headline(runs)
    sections = [("Overall", ["run", *cols], [[r.name, *[r.metrics.get(c, float("nan")) for c in cols]] for r in runs])]
    judged = judged_rows(runs)
    if judged:
        sections.append(("LLM-judged (RAGAS, nuggets; means over determined questions)", ["run", "metric", "score", "undetermined"], judged))
    type_cols = [c for c in ("answer.em", "answer.f1", "answer.word_overlap", "retrieval.both_gold@5", "retrieval.mhr_hits@10") if any(c in r.metrics for r in runs)]
    trows = []
    for r in runs:
        for t, m in sorted(r.summary.get("by_type", {}).items()):
            trows.append([r.name, t, int(m.get("n.total", 0)), *[m.get(c, float("nan")) for c in type_cols]])
    sections.append(("By question type", ["run", "type", "n", *type_cols], trows))
    if len(runs) >= 2:
        crow = []
        for other in runs[1:]:
            for c in compare_runs(runs[0], other, resamples=resamples, seed=seed):
                crow.append([f"{c['other']} - {c['base']}", c["metric"], c["n"], c["diff"], f"[{c['lo']:.3f}, {c['hi']:.3f}]", c["p_le_0"]])
        sections.append((f"Paired bootstrap 95% CI ({resamples} resamples, seed {seed}, common question ids)", ["comparison", "metric", "n", "mean diff", "95% CI", "P(diff<=0)"], crow))
    return sections


def write_report(run_paths: Sequence[str | Path], out: str | Path, resamples: int = 2000, seed: int = 0, title: str = "hoprank evaluation report") -> tuple[Path, Path]:
    if not run_paths:
        raise HoprankError("give at least one run folder")
    runs = [load_run(p) for p in run_paths]
    names = [r.name for r in runs]
    for i, r in enumerate(runs):  # two folders with the same name would be indistinguishable
        if names.count(r.name) > 1:
            r.name = f"{r.name}#{i + 1}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(runs, resamples, seed)
    quality = "answer.f1" if any(r.metrics.get("answer.f1", 0) for r in runs) else "answer.word_overlap"
    bar_metrics = [m for m in HEADLINE if any(m in r.metrics for r in runs)]
    plots: list[tuple[str, str, bytes]] = [("metrics", "Metrics per run", plot_metric_bars(runs, bar_metrics))]
    rc = plot_recall_curves(runs)
    if rc is not None:
        plots.append(("recall_at_k", "Recall@k and all-gold@k", rc))
    plots.append(("cost_quality", f"Cost and latency vs {quality}", plot_cost_quality(runs, quality)))

    md = [f"# {title}", "", "Runs: " + ", ".join(f"`{r.name}` ({r.path})" for r in runs), ""]
    for t, header, rows in sections:
        md += [f"## {t}", "", _md_table(header, rows), ""]
    for slug, caption, png in plots:
        (out / f"{slug}.png").write_bytes(png)
        md += [f"## {caption}", "", f"![{caption}]({slug}.png)", ""]
    md += ["## Metric definitions", ""]
    seen = set()
    for r in runs:
        for k in r.metrics:
            if k in seen:
                continue
            seen.add(k)
            try:
                md.append(f"- `{k}`: {M.describe(k).description}")
            except KeyError:
                pass
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Runs: " + ", ".join(f"<code>{html.escape(r.name)}</code>" for r in runs) + "</p>",
    ]
    for t, header, rows in sections:
        parts += [f"<h2>{html.escape(t)}</h2>", _html_table(header, rows)]
    for slug, caption, png in plots:
        b64 = base64.b64encode(png).decode("ascii")
        parts += [f"<h2>{html.escape(caption)}</h2>", f"<img id='{slug}' alt='{html.escape(caption)}' src='data:image/png;base64,{b64}'>"]
    parts.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(parts), encoding="utf-8")
    return md_path, html_path
