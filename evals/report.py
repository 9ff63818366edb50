"""Compare eval runs: markdown + a self-contained HTML page (plots embedded as base64 PNG).

Every mean a report shows from per-question scores carries a 95% bootstrap confidence
interval (scipy's BCa, resampling questions), every run and every question type its own
n, and a warning when n < 30: on a few dozen questions a gap of several F1 points is often
noise, and the interval says so. Differences between two runs use a paired BCa bootstrap
over the questions both runs answered.

Why BCa from scipy rather than a hand-written percentile bootstrap: on 0/1 scores at the
sizes we run (20-60 questions, accuracies 0.1-0.5) BCa intervals reached the nominal
coverage wherever percentile intervals did and covered more often in most cells, at about
the same width (``benchmarks/bootstrap_coverage.py``, numbers in the README), and it is a
maintained implementation. A degenerate sample (every value equal, or n < 2) gets the point
itself as its interval and is marked, rather than a NaN.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hoprank.evals import judge as _judge  # noqa: F401  (registers ragas.* / nuggets.* metric names)
from hoprank.evals import metrics as M
from hoprank.evals.results import RESULTS, RUN_INFO, SUMMARY, read_rows, summarize
from hoprank.tools.errors import HoprankError

HEADLINE = (
    "answer.em",
    "answer.f1",
    "answer.mhr_f1",
    "answer.mhr_accuracy",
    "answer.word_overlap_lenient",
    "retrieval.both_gold@2",
    "retrieval.both_gold@5",
    "retrieval.recall@5",
    "retrieval.recall@10",
    "retrieval.mrr@10",
    "retrieval.mhr_hits@4",
    "retrieval.mhr_hits@10",
    "retrieval.mhr_map@10",
    "retrieval.mhr_mrr@10",
)
COMPARE = (
    "answer.f1",
    "answer.em",
    "answer.mhr_f1",
    "retrieval.both_gold@5",
    "retrieval.recall@5",
    "retrieval.mhr_hits@10",
)
TYPE_COLS = ("answer.em", "answer.f1", "answer.mhr_f1", "retrieval.both_gold@5", "retrieval.mhr_hits@10")
SMALL_N = 30  # below this many questions a report warns that its intervals are rough
RESAMPLES = 2000


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


# per-question value behind a summary metric, when it is not row[group][key]
_ROW_ALIASES = {
    "answer.mhr_precision": "answer.mhr_correct",
    "answer.mhr_recall": "answer.mhr_correct",
    "answer.mhr_f1": "answer.mhr_correct",
    "answer.mhr_accuracy": "answer.mhr_correct",
}


def _mhr_accuracy(mean: float) -> float:
    """MultiHop-RAG's printed accuracy n / (n + 2 * wrong) as a function of the share correct
    m: 1 / (3 - 2m). Monotone, so its interval is the mapped interval of the mean."""
    return 1.0 / (3.0 - 2.0 * mean)


# summary metrics that are a monotone function of the mean of their per-question values
_TRANSFORMS: dict[str, Callable[[float], float]] = {"answer.mhr_accuracy": _mhr_accuracy}


def row_value(row: dict[str, Any], metric: str) -> float | None:
    """A per-question value of a summary metric (``answer.f1`` -> row["answer"]["f1"];
    ``answer.mhr_f1`` -> the question's ``mhr_correct``); None when the question has none."""
    group, _, key = _ROW_ALIASES.get(metric, metric).partition(".")
    block = row.get(group)
    if isinstance(block, dict) and block.get(key) is not None:
        return float(block[key])
    return None


def _bootstrap(
    data: tuple[np.ndarray, ...], statistic: Callable[..., Any], paired: bool, resamples: int, seed: int, alpha: float
) -> tuple[float, float, np.ndarray]:
    from scipy import stats

    res = stats.bootstrap(
        data,
        statistic,
        n_resamples=resamples,
        paired=paired,
        vectorized=True,
        batch=200,
        confidence_level=1 - alpha,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    dist = np.asarray(res.bootstrap_distribution)
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # BCa undefined (e.g. one distinct resample mean)
        lo, hi = (float(q) for q in np.quantile(dist, [alpha / 2, 1 - alpha / 2]))
    return lo, hi, dist


def _check_resamples(resamples: int) -> None:
    if not 100 <= resamples <= 100_000:
        raise ValueError(f"resamples must be in [100, 100000], got {resamples}")


def mean_ci(values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """Mean of per-question scores with a BCa bootstrap (1 - alpha) interval.

    ``method`` says how the interval was made: ``bca``, or ``degenerate`` (n < 2 or every
    value equal: the interval is the point), or ``none`` for an empty sample."""
    _check_resamples(resamples)
    x = np.asarray([float(v) for v in values], dtype=float)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "method": "none"}
    mean = float(x.mean())
    if n < 2 or bool(np.all(x == x[0])):
        return {"n": n, "mean": mean, "lo": mean, "hi": mean, "method": "degenerate"}
    lo, hi, _ = _bootstrap((x,), lambda a, axis: np.mean(a, axis=axis), False, resamples, seed, alpha)
    return {"n": n, "mean": mean, "lo": lo, "hi": hi, "method": "bca"}


def metric_ci(
    rows: Sequence[dict[str, Any]], metric: str, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any] | None:
    """The interval of one summary metric over rows (None when the metric has no
    per-question values, e.g. costs and counts)."""
    vals = [v for v in (row_value(r, metric) for r in rows) if v is not None]
    if not vals:
        return None
    ci = mean_ci(vals, resamples, seed)
    f = _TRANSFORMS.get(metric)
    if f is not None:
        ci = {**ci, "mean": f(ci["mean"]), "lo": f(ci["lo"]), "hi": f(ci["hi"])}
    return ci


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = 0, alpha: float = 0.05
) -> dict[str, float]:
    """Mean of b - a with a paired BCa bootstrap CI (questions resampled in pairs) and the
    share of resampled differences <= 0."""
    if len(a) != len(b):
        raise ValueError("paired bootstrap needs equal-length score lists")
    _check_resamples(resamples)
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "diff": 0.0, "lo": 0.0, "hi": 0.0, "p_le_0": 1.0}
    d = y - x
    diff = float(d.mean())
    if n < 2 or bool(np.all(d == d[0])):
        return {"n": n, "diff": diff, "lo": diff, "hi": diff, "p_le_0": float(diff <= 0)}
    lo, hi, dist = _bootstrap(
        (x, y), lambda p, q, axis: np.mean(q, axis=axis) - np.mean(p, axis=axis), True, resamples, seed, alpha
    )
    return {"n": n, "diff": diff, "lo": lo, "hi": hi, "p_le_0": float((dist <= 0).mean())}


def compare_runs(
    base: Run, other: Run, metrics: Sequence[str] = COMPARE, resamples: int = RESAMPLES, seed: int = 0
) -> list[dict[str, Any]]:
    """Paired CIs of ``other - base`` on their common question ids, per metric."""
    a_by = {r["id"]: r for r in base.rows}
    b_by = {r["id"]: r for r in other.rows}
    common = [i for i in a_by if i in b_by]
    out = []
    for m in metrics:
        if (base.metrics and m not in base.metrics) or (other.metrics and m not in other.metrics):
            continue  # not reported by a run (e.g. an @k deeper than it retrieved): not compared either
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


def _score_ylim(values: Sequence[float]) -> tuple[float, float]:
    """Scores are drawn on [0, 1] (widened to include a negative value or one above 1, with
    padding), never zoomed to the data: identical runs must look identical, not different."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    lo = min([0.0, *finite])
    hi = max([1.0, *finite])
    pad = 0.05 * (hi - lo)
    return (lo - pad if lo < 0 else 0.0), hi + pad


def plot_metric_bars(
    runs: Sequence[Run], metrics: Sequence[str], cis: dict[tuple[str, str], dict[str, Any]] | None = None
) -> bytes:
    """Grouped bars per metric; with ``cis`` ({(run, metric): ci}) each bar has its 95% CI."""
    plt = _plt()
    fig, ax = plt.subplots(
        figsize=(max(6.5, 0.9 * len(metrics) * max(1, len(runs)) / 1.5 + 2), 4.2), layout="constrained"
    )
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(metrics))
    values = []
    for j, run in enumerate(runs):
        ys = [run.metrics.get(m, float("nan")) for m in metrics]
        values += ys
        err = None
        if cis:
            lo_hi = [cis.get((run.name, m)) for m in metrics]
            err = np.array(
                [
                    [max(0.0, y - c["lo"]) if c else 0.0 for y, c in zip(ys, lo_hi)],
                    [max(0.0, c["hi"] - y) if c else 0.0 for y, c in zip(ys, lo_hi)],
                ]
            )
            values += [c["hi"] for c in lo_hi if c] + [c["lo"] for c in lo_hi if c]
        ax.bar(x + j * width, ys, width, label=run.name, yerr=err, capsize=3 if err is not None else 0)
    ax.set_xticks(x + width * (len(runs) - 1) / 2, metrics, rotation=25, ha="right")
    ax.set_ylim(*_score_ylim(values))
    ax.set_ylabel("score" + (" (bars: 95% CI)" if cis else ""))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
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
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for fam, ax in zip(("retrieval.recall@", "retrieval.both_gold@"), axes):
        ks: set[int] = set()
        for run in runs:
            pts = _recall_curve(run, fam)
            if pts:
                ks |= {p[0] for p in pts}
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=run.name)
        ax.set_xlabel("k")
        ax.set_xticks(sorted(ks))
        ax.set_ylim(0, 1.02)
        ax.set_title(fam.rstrip("@") + "@k")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper")
    return _png(fig)


_MARKERS = "osD^vP*Xhp<>"


def plot_cost_quality(
    runs: Sequence[Run], quality: str, cis: dict[tuple[str, str], dict[str, Any]] | None = None
) -> bytes:
    """Quality vs cost per run. Runs are told apart by marker and a legend outside the
    panels (labels next to points overlapped each other and the next panel); both axes start
    at 0, so equal runs do not look different."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    ys = [runs[i].metrics.get(quality, float("nan")) for i in range(len(runs))]
    for cost, ax in zip(("cost.seconds_per_q", "cost.llm_calls_per_q"), axes):
        xs = [r.metrics.get(cost, 0.0) for r in runs]
        for i, run in enumerate(runs):
            ci = (cis or {}).get((run.name, quality))
            yerr = [[max(0.0, ys[i] - ci["lo"])], [max(0.0, ci["hi"] - ys[i])]] if ci else None
            ax.errorbar(xs[i], ys[i], yerr=yerr, fmt=_MARKERS[i % len(_MARKERS)], ms=7, capsize=3, label=run.name)
        ax.set_xlim(0, max([1e-9, *xs]) * 1.15 or 1)
        ax.set_ylim(*_score_ylim([*ys, *[c["hi"] for c in (cis or {}).values() if c]]))
        ax.set_xlabel(cost)
        ax.set_ylabel(quality)
        ax.set_title(f"{quality} vs {cost.split('.')[1]}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper")
    return _png(fig)


# --------------------------------------------------------------------------- tables


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _with_ci(value: float, ci: dict[str, Any] | None) -> str:
    if ci is None or ci.get("method") == "none":
        return _fmt(value)
    return f"{value:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<div class='wrap'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _headline(runs: Sequence[Run]) -> list[str]:
    """The metrics shown per run, sorted by name and then numerically by k."""
    present = [m for m in HEADLINE if any(m in r.metrics for r in runs)]
    extra = ["cost.llm_calls_per_q", "cost.seconds_per_q", "n.failed", "n.total"]
    return sorted(present, key=M.metric_sort_key) + extra


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


def run_cis(run: Run, metrics: Sequence[str], resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """Each metric's interval over the run's own questions (metrics without per-question
    values, such as costs and counts, have none)."""
    out = {}
    for m in metrics:
        ci = metric_ci(run.rows, m, resamples, seed)
        if ci is not None:
            out[m] = ci
    return out


def small_n_warnings(runs: Sequence[Run]) -> list[str]:
    """One line per run and per question type with fewer than :data:`SMALL_N` questions."""
    out = []
    for r in runs:
        n = len(r.rows)
        if n < SMALL_N:
            out.append(f"run `{r.name}` has n = {n} < {SMALL_N} questions: its intervals are wide and only approximate")
        small = [
            f"{t} (n = {int(m.get('n.total', 0))})"
            for t, m in sorted(r.summary.get("by_type", {}).items())
            if m.get("n.total", 0) < SMALL_N
        ]
        if small and len(r.summary.get("by_type", {})) > 1:
            out.append(f"run `{r.name}`: question types with n < {SMALL_N}: {', '.join(small)}")
    return out


def build_sections(
    runs: Sequence[Run], resamples: int = RESAMPLES, seed: int = 0
) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, header, rows) tables shared by the markdown and the HTML outputs.

    The overall table has one row per metric and one column per run (it stays narrow with
    many metrics); values are "mean [95% CI]" wherever the metric has per-question values."""
    cols = _headline(runs)
    cis = {r.name: run_cis(r, cols, resamples, seed) for r in runs}

    def cell(r: Run, c: str) -> str:
        if c not in r.metrics:
            return "–"
        return str(int(r.metrics[c])) if c.startswith("n.") else _with_ci(r.metrics[c], cis[r.name].get(c))

    overall = [[c, *[cell(r, c) for r in runs]] for c in cols]
    sections = [
        (
            f"Overall: mean [95% BCa CI] over each run's questions ({resamples} resamples, seed {seed})",
            ["metric", *[f"{r.name} (n={len(r.rows)})" for r in runs]],
            overall,
        )
    ]
    judged = judged_rows(runs)
    if judged:
        sections.append(
            (
                "LLM-judged (RAGAS, nuggets; means over determined questions)",
                ["run", "metric", "score", "undetermined"],
                judged,
            )
        )
    type_cols = sorted([c for c in TYPE_COLS if any(c in r.metrics for r in runs)], key=M.metric_sort_key)
    trows = []
    for r in runs:
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in r.rows:
            groups.setdefault(row.get("type") or "all", []).append(row)
        for t, m in sorted(r.summary.get("by_type", {}).items()):
            n = int(m.get("n.total", 0))
            rows_t = groups.get(t, [])
            cells = [_with_ci(m[c], metric_ci(rows_t, c, resamples, seed)) if c in m else "–" for c in type_cols]
            trows.append([r.name, t, f"{n}" + (" (n<30)" if n < SMALL_N else ""), *cells])
    sections.append(("By question type: mean [95% BCa CI]", ["run", "type", "n", *type_cols], trows))
    if len(runs) >= 2:
        crow = []
        for other in runs[1:]:
            for c in compare_runs(runs[0], other, resamples=resamples, seed=seed):
                crow.append(
                    [
                        f"{c['other']} - {c['base']}",
                        c["metric"],
                        c["n"],
                        c["diff"],
                        f"[{c['lo']:.3f}, {c['hi']:.3f}]",
                        c["p_le_0"],
                    ]
                )
        sections.append(
            (
                f"Paired bootstrap 95% CI ({resamples} resamples, seed {seed}, common question ids)",
                ["comparison", "metric", "n", "mean diff", "95% CI", "P(diff<=0)"],
                crow,
            )
        )
    return sections


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 16px;box-sizing:border-box}"
    ".wrap{max-width:100%;overflow-x:auto}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px;max-width:100%}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}"
    "th{white-space:normal;overflow-wrap:anywhere;max-width:14em}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}"
    ".warn{background:#fff4ce;border:1px solid #e0c060;padding:6px 10px}"
)


def write_report(
    run_paths: Sequence[str | Path],
    out: str | Path,
    resamples: int = RESAMPLES,
    seed: int = 0,
    title: str = "hoprank evaluation report",
) -> tuple[Path, Path]:
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
    warnings = small_n_warnings(runs)
    quality = "answer.f1" if any(r.metrics.get("answer.f1", 0) for r in runs) else "answer.mhr_f1"
    bar_metrics = sorted([m for m in HEADLINE if any(m in r.metrics for r in runs)], key=M.metric_sort_key)
    cis = {(r.name, m): ci for r in runs for m, ci in run_cis(r, [*bar_metrics, quality], resamples, seed).items()}
    plots: list[tuple[str, str, bytes]] = [
        ("metrics", "Metrics per run (95% CI)", plot_metric_bars(runs, bar_metrics, cis))
    ]
    rc = plot_recall_curves(runs)
    if rc is not None:
        plots.append(("recall_at_k", "Recall@k and all-gold@k", rc))
    plots.append(("cost_quality", f"Cost and latency vs {quality}", plot_cost_quality(runs, quality, cis)))

    md = [f"# {title}", "", "Runs: " + ", ".join(f"`{r.name}` ({r.path}, n={len(r.rows)})" for r in runs), ""]
    md += [f"> **Warning:** {w}" for w in warnings] + ([""] if warnings else [])
    for t, header, rows in sections:
        md += [f"## {t}", "", _md_table(header, rows), ""]
    for slug, caption, png in plots:
        (out / f"{slug}.png").write_bytes(png)
        md += [f"## {caption}", "", f"![{caption}]({slug}.png)", ""]
    md += ["## Metric definitions", ""]
    for k in sorted({k for r in runs for k in r.metrics}, key=M.metric_sort_key):
        try:
            md.append(f"- `{k}`: {M.describe(k).description}")
        except KeyError:
            pass
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Runs: " + ", ".join(f"<code>{html.escape(r.name)}</code> (n={len(r.rows)})" for r in runs) + "</p>",
    ]
    parts += [f"<p class='warn'>Warning: {html.escape(w)}</p>" for w in warnings]
    for t, header, rows in sections:
        parts += [f"<h2>{html.escape(t)}</h2>", _html_table(header, rows)]
    for slug, caption, png in plots:
        b64 = base64.b64encode(png).decode("ascii")
        parts += [
            f"<h2>{html.escape(caption)}</h2>",
            f"<img id='{slug}' alt='{html.escape(caption)}' src='data:image/png;base64,{b64}'>",
        ]
    parts.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(parts), encoding="utf-8")
    return md_path, html_path
