"""Helpers shared by every benchmark: where the data is, how results are written, what
machine they were measured on.

Benchmarks are scripts (``.venv/bin/python benchmarks/<name>.py``), so they import this
module as ``common``. Results always go to ``benchmarks/results/<name>.json`` (everything,
machine-readable) and ``<name>.md`` (the tables a person reads), each with the metadata
needed to judge a number: date, CPU, Python, package versions, runs, data files. A figure
without its hardware and number of runs is not a result.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata as _md
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
ENV_DATA = "HOPRANK_SHARED_DATA"
DEFAULT_PACKAGES = (
    "hoprank",
    "numpy",
    "torch",
    "sentence-transformers",
    "bm25s",
    "rank-bm25",
    "qdrant-client",
)


class BenchmarkDataError(FileNotFoundError):
    """The shared benchmark data is not where we looked; the message says where and how to fix."""


# ---- data ----------------------------------------------------------------------------
def argument_parser(
    doc: str | None, default_data: str, data_help: str = "HotpotQA file under the shared data folder"
) -> argparse.ArgumentParser:
    """The parser a data benchmark starts from: its module docstring as the help text (kept as written) and
    ``--data``, a file named relative to the shared data folder (see :func:`data_file`)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=default_data, help=data_help)
    return p


def shared_data_dir() -> Path:
    """``../shared/data`` next to the repository, or ``$HOPRANK_SHARED_DATA``.

    The data is not part of the repository (licences, size), so a fresh clone has none:
    fail with the path we tried and the variable that overrides it."""
    env = os.environ.get(ENV_DATA)
    path = Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        how = f"${ENV_DATA}={env!r}" if env else f"the default location (set ${ENV_DATA} to override)"
        raise BenchmarkDataError(f"benchmark data folder {path} does not exist; looked at {how}")
    return path


def data_file(relative: str) -> Path:
    """A file under the shared data folder, with an error naming it when it is missing."""
    path = shared_data_dir() / relative
    if not path.is_file():
        raise BenchmarkDataError(
            f"benchmark data file {path} not found (expected {relative!r} under {path.parent.parent})"
        )
    return path


# ---- machine and environment -----------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_count() -> int:
    """CPUs this process may use (affinity/cgroup aware where the OS tells us)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str]:
    out = {}
    for p in packages:
        try:
            out[p] = _md.version(p)
        except _md.PackageNotFoundError:
            out[p] = "not installed"
    return out


def environment(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """What a reader needs to judge the figures. The load average matters: the 2 cores
    may be shared with other work, which slows every timing in the run."""
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(packages),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def hardware_line(env: dict[str, Any]) -> str:
    return f"{env['cpu_count']} CPU cores ({env['cpu_model']}), {env.get('memory_gb')} GB RAM, Python {env['python']}"


# ---- measuring -----------------------------------------------------------------------
def peak_rss_mb() -> float:
    """Peak resident memory of this process so far.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process's own memory
    map. ``getrusage().ru_maxrss`` is NOT used there because Linux carries it across
    fork+exec: a subprocess started by a 1 GB parent reports at least 1 GB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024, 1)


def current_rss_mb() -> float:
    try:
        import psutil

        return round(psutil.Process().memory_info().rss / 1024 / 1024, 1)
    except ImportError:  # pragma: no cover
        return float("nan")


def log(msg: str, _t0: list[float] = [time.perf_counter()]) -> None:  # noqa: B006 - run clock
    """A progress line on stderr stamped with the seconds since the benchmark started (stdout stays free for
    results); one clock for every benchmark, so long runs read alike."""
    print(f"[{time.perf_counter() - _t0[0]:8.1f}s] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def repeat(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> list[float]:
    """Wall seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] for _ in range(repeats)]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without needing numpy here."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "mean_ms": round(statistics.fmean(ms), 3) if ms else float("nan"),
    }


def ratio(a: float, b: float, digits: int = 2) -> float | None:
    """a / b, or None when b is zero (a ratio of nothing is not infinity)."""
    return round(a / b, digits) if b else None


# ---- writing -------------------------------------------------------------------------
def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if x != x:  # NaN
            return "n/a"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 100:
            return f"{x:.1f}"
        return f"{x:.{digits}f}"
    return str(x)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


def write_results(
    name: str,
    results: dict[str, Any],
    sections: Sequence[tuple[str, str]],
    *,
    env: dict[str, Any],
    runs: str,
    data: Sequence[str | Path],
    command: str,
    notes: Sequence[str] = (),
    results_dir: Path = RESULTS_DIR,
) -> tuple[Path, Path]:
    """Write ``<name>.json`` (metadata + results) and ``<name>.md`` (metadata + tables).

    ``sections`` are (heading, markdown) pairs; ``runs`` says in words how many runs and
    repeats stand behind the figures."""
    results_dir.mkdir(parents=True, exist_ok=True)
    env = dict(env)
    if hasattr(os, "getloadavg"):
        env.setdefault("load_average_at_end", [round(x, 2) for x in os.getloadavg()])  # kept on a re-render
    data_rel = [_display_path(p) if isinstance(p, Path) else p for p in data]
    meta = {"benchmark": name, "command": command, "runs": runs, "data": data_rel, **env, "notes": list(notes)}
    jpath = results_dir / f"{name}.json"
    jpath.write_text(
        json.dumps({"metadata": meta, "results": results}, indent=1, default=_json_default) + "\n", encoding="utf-8"
    )
    md = [f"# {name}", ""]
    md.append(f"- date: {env['date']}")
    md.append(f"- hardware: {hardware_line(env)}")
    md.append(
        f"- load average (1/5/15 min) at start {env.get('load_average_at_start')}, at end "
        f"{env.get('load_average_at_end')}"
    )
    md.append(f"- packages: {', '.join(f'{k} {v}' for k, v in env['packages'].items())}")
    md.append(f"- data: {', '.join(data_rel)}")
    md.append(f"- runs: {runs}")
    md.append(f"- command: `{command}`")
    md.append("")
    for heading, body in sections:
        md += [f"## {heading}", "", body.strip(), ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    mpath = results_dir / f"{name}.md"
    mpath.write_text("\n".join(md), encoding="utf-8")
    return jpath, mpath


ENV_KEYS = (
    "date",
    "cpu_count",
    "cpu_model",
    "memory_gb",
    "platform",
    "python",
    "packages",
    "load_average_at_start",
    "load_average_at_end",
)


def read_results(name: str, results_dir: Path = RESULTS_DIR) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A results file ``write_results`` wrote, read back for a re-render or a partial re-run: (metadata, the
    environment it recorded, results). Re-rendering with that environment keeps the run's own machine, date and
    load on the page instead of today's."""
    saved = json.loads((results_dir / f"{name}.json").read_text())
    meta = saved["metadata"]
    return meta, {k: meta[k] for k in ENV_KEYS if k in meta}, saved["results"]


def _display_path(p: str | Path) -> str:
    """Data paths relative to the shared folder's parent (``../shared/data/...``) when possible."""
    p = Path(p)
    try:
        return str(Path("..") / p.resolve().relative_to(REPO_ROOT.parent))
    except ValueError:
        return str(p)


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
