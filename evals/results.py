"""The results file and its summary: reading and appending ``results.jsonl`` rows, and the
aggregates ``summary.json`` holds.

Why a module of its own: the run manager (:mod:`hoprank.evals.runner`, which writes rows)
and the LLM judges (:mod:`hoprank.evals.judge`, which read them and merge their scores into
the summary) both need it; kept in either, the other would import it back (an import
circle runner <-> judge).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hoprank.evals import metrics as M
from hoprank.tools.errors import HoprankError

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
RUN_INFO = "run.json"


# --------------------------------------------------------------------------- the results file


def read_rows(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """Rows of a results file. A torn last line (the process died mid-write) is ignored,
    and with ``repair`` cut off the file so later appends start on a clean line. A complete
    last row that only lacks its newline is kept (and the newline added)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    lines = data.split(b"\n")  # the last element is what follows the final newline
    pos = 0
    good_end = 0
    tail_ok = False
    for n, line in enumerate(lines):
        last = n == len(lines) - 1
        if line.strip():
            try:
                rows.append(json.loads(line))
                tail_ok = last
            except (json.JSONDecodeError, UnicodeDecodeError):
                if not last:
                    raise HoprankError(
                        f"{path}: corrupt row on line {n + 1} (not the last line); fix or remove it"
                    ) from None
        pos += len(line) + (0 if last else 1)
        if not last:
            good_end = pos
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            if tail_ok:
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
                f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return rows


class RowWriter:
    """Append-only, one fsync per row: a SIGKILL loses at most the row being written."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


# --------------------------------------------------------------------------- aggregation


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0


def _p95(xs: Sequence[float]) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, math.ceil(0.95 * len(s)) - 1))])


def retrieval_depth(rows: Sequence[dict[str, Any]]) -> int:
    """How deep the run's ranked lists go: the most evidence chunks any question returned.

    ``@k`` metrics are reported only for k <= this depth, so a run that retrieves 5 chunks
    never shows a recall@10 computed over 5 (a question that returned fewer than the run's
    depth, e.g. on a tiny corpus, is scored over what it returned, as trec_eval does)."""
    return max((len(r.get("evidence") or []) for r in rows), default=0)


def _mhr_correct(row: dict[str, Any]) -> float | None:
    a = row["answer"]
    if "mhr_correct" in a:
        return a["mhr_correct"]
    # a row written before this field existed: judge it from its own prediction and gold
    return M.mhr_qa_correct(row.get("prediction") or "", row.get("gold") or "")


def aggregate(rows: Sequence[dict[str, Any]], depth: int | None = None) -> dict[str, float]:
    """Flat ``{registered name: value}`` over rows; retrieval means only over rows with gold.

    ``depth`` is the run's retrieval depth (see :func:`retrieval_depth`; computed from
    ``rows`` when None): per-type summaries pass the run's, so every table shows the same ks.
    Keys come sorted by name, then numerically by k."""
    out: dict[str, float] = {}
    n = len(rows)
    depth = retrieval_depth(rows) if depth is None else depth
    out["n.total"] = float(n)
    for st in ("failed", "answered", "not_found", "partial"):
        out[f"n.{st}"] = float(sum(1 for r in rows if r.get("status") == st))
    for key in ("em", "f1", "precision", "recall"):
        out[f"answer.{key}"] = _mean([r["answer"][key] for r in rows])
    # rows written before the rename carry "word_overlap" (the same lenient computation)
    lenient = [r["answer"].get("word_overlap_lenient", r["answer"].get("word_overlap", 0.0)) for r in rows]
    out["answer.word_overlap_lenient"] = _mean(lenient)
    mhr = M.mhr_qa_metrics([_mhr_correct(r) for r in rows])
    for key in ("mhr_precision", "mhr_recall", "mhr_f1", "mhr_accuracy"):
        out[f"answer.{key}"] = mhr[key]
    out["n.mhr_qa_scored"] = mhr["n"]
    out["answer.answered"] = out["n.answered"] / n if n else 0.0
    scored = [r["retrieval"] for r in rows if r.get("retrieval")]
    out["n.retrieval_scored"] = float(len(scored))
    if scored:
        out["n.retrieval_depth"] = float(depth)
    keys = sorted({k for s in scored for k in s})
    for k in keys:
        kk = M.metric_k(k)
        if kk is not None and kk > depth:
            continue  # an @k over fewer than k retrieved items is not an @k
        out[f"retrieval.{k}"] = _mean([s.get(k, 0.0) for s in scored])
    dec = [r["decomposition"]["f1"] for r in rows if r.get("decomposition")]
    if dec:
        out["decomposition.f1"] = _mean(dec)
    out["cost.llm_calls_per_q"] = _mean([r["tokens"]["llm_calls"] for r in rows])
    out["cost.prompt_tokens_per_q"] = _mean([r["tokens"]["prompt_tokens"] for r in rows])
    out["cost.completion_tokens_per_q"] = _mean([r["tokens"]["completion_tokens"] for r in rows])
    out["cost.tokens_per_q"] = _mean([r["tokens"].get("total_tokens", 0.0) for r in rows])
    secs = [float(r["seconds"]) for r in rows]
    out["cost.seconds_per_q"] = _mean(secs)
    out["cost.seconds_p95"] = _p95(secs)
    return M.sorted_metrics({k: round(v, 6) for k, v in out.items()})


def summarize(rows: Sequence[dict[str, Any]], order: Sequence[str] | None = None) -> dict[str, Any]:
    """``summary.json``: overall metrics, then the same per question type."""
    if order is not None:
        pos = {i: n for n, i in enumerate(order)}
        rows = sorted(rows, key=lambda r: pos.get(r["id"], len(pos)))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_type.setdefault(r.get("type") or "all", []).append(r)
    depth = retrieval_depth(rows)
    overall = aggregate(rows, depth)
    return {
        "metrics": overall,
        "by_type": {t: aggregate(rs, depth) for t, rs in sorted(by_type.items())},
        "metric_descriptions": {k: M.describe(k).description for k in overall if _known(k)},
    }


def _known(name: str) -> bool:
    try:
        M.describe(name)
        return True
    except KeyError:
        return False


def write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    """Write a run folder's JSON file (summary, run info, judge results) atomically: a reader
    never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=sort_keys, default=str)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
