"""Which bootstrap interval the eval reports use: coverage of scipy's BCa (what
``hoprank.evals.report.mean_ci`` computes) vs the hand-written percentile bootstrap the reports
used before, on the kind of data they summarise: 0/1 scores of 20-60 questions.

For each true accuracy p and size n, many samples are drawn; a method's coverage is the share
of samples whose 95% interval contains p (nominal 0.95), its width the mean interval width.
No data files, no models: only numpy and scipy.

    .venv/bin/python benchmarks/bootstrap_coverage.py [--mode quick|full]

Writes ``benchmarks/results/bootstrap_coverage_<mode>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import environment, markdown_table, write_results

MODES = {"quick": 400, "full": 2000}  # simulated samples per (p, n)
PS = (0.1, 0.3, 0.5)
NS = (20, 60)
RESAMPLES = 1000


def percentile_interval(x: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """The previous report code: resample questions, take the 2.5% and 97.5% quantiles."""
    idx = rng.integers(0, len(x), size=(RESAMPLES, len(x)))
    lo, hi = np.quantile(x[idx].mean(axis=1), [0.025, 0.975])
    return float(lo), float(hi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    args = ap.parse_args(argv)
    from hoprank.evals.report import mean_ci

    env = environment(("hoprank", "numpy", "scipy"))
    sims = MODES[args.mode]
    rng = np.random.default_rng(2024)
    rows, results = [], {}
    t0 = time.perf_counter()
    for p in PS:
        for n in NS:
            hits = {"bca": 0, "percentile": 0}
            width = {"bca": 0.0, "percentile": 0.0}
            for s in range(sims):
                x = (rng.random(n) < p).astype(float)
                ci = mean_ci(x, resamples=RESAMPLES, seed=s)
                intervals = {
                    "bca": (ci["lo"], ci["hi"]),
                    "percentile": percentile_interval(x, np.random.default_rng(s)),
                }
                for m, (lo, hi) in intervals.items():
                    hits[m] += lo <= p <= hi
                    width[m] += hi - lo
            cov = {m: round(hits[m] / sims, 3) for m in hits}
            wid = {m: round(width[m] / sims, 3) for m in width}
            all_equal = round((1 - p) ** n + p**n, 3)  # samples whose interval is a point
            results[f"p={p},n={n}"] = {"coverage": cov, "width": wid, "share_all_equal": all_equal}
            rows.append([f"p={p}, n={n}", cov["bca"], cov["percentile"], wid["bca"], wid["percentile"], all_equal])
    table = markdown_table(
        [
            "true accuracy, questions",
            "BCa coverage",
            "percentile coverage",
            "BCa width",
            "percentile width",
            "share of samples all 0 or all 1",
        ],
        rows,
    )
    results["readme_table"] = table
    results["samples_per_cell"] = sims
    results["resamples"] = RESAMPLES
    results["seconds"] = round(time.perf_counter() - t0, 1)
    notes = [
        "Nominal coverage 0.95. Standard error of a coverage figure: about sqrt(0.95*0.05/samples) "
        f"= {np.sqrt(0.95 * 0.05 / sims):.3f}.",
        "A sample whose scores are all equal gets the point as its interval under both methods "
        "(a miss unless p is 0 or 1): that caps coverage at 1 - share_all_equal.",
    ]
    cmd = "python benchmarks/bootstrap_coverage.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(
        f"bootstrap_coverage_{args.mode}",
        results,
        [("95% interval coverage on 0/1 scores", table)],
        env=env,
        runs=f"{sims} simulated samples per cell, {RESAMPLES} bootstrap resamples each",
        data=[],
        command=cmd.strip(),
        notes=notes,
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
