"""The benchmark helpers: data location, result files with their metadata, percentiles.

Benchmarks are scripts, so their helper module is imported from the benchmarks folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import common  # noqa: E402


def test_shared_data_dir_env_override_and_clear_errors(tmp_path, monkeypatch):
    (tmp_path / "hotpotqa").mkdir()
    (tmp_path / "hotpotqa" / "x.json").write_text("[]")
    monkeypatch.setenv(common.ENV_DATA, str(tmp_path))
    assert common.shared_data_dir() == tmp_path
    assert common.data_file("hotpotqa/x.json") == tmp_path / "hotpotqa" / "x.json"
    with pytest.raises(common.BenchmarkDataError, match="missing.json"):
        common.data_file("hotpotqa/missing.json")
    monkeypatch.setenv(common.ENV_DATA, str(tmp_path / "nowhere"))
    with pytest.raises(common.BenchmarkDataError, match=r"nowhere.*HOPRANK_SHARED_DATA"):
        common.shared_data_dir()


def test_write_results_carries_metadata_and_tables(tmp_path):
    env = common.environment(["numpy", "no-such-package-xyz"])
    assert env["cpu_count"] >= 1 and env["cpu_model"]
    assert env["packages"]["no-such-package-xyz"] == "not installed"
    table = common.markdown_table(["name", "value"], [["a", 0.5], ["b", None], ["c", 12345.0]])
    assert table.splitlines()[2] == "| a | 0.500 |" and "| b | – |" in table and "12,345" in table
    jpath, mpath = common.write_results(
        "demo",
        {"x": 1},
        [("Table", table)],
        env=env,
        runs="3 repeats",
        data=["synthetic"],
        command="python demo.py",
        notes=["a note"],
        results_dir=tmp_path,
    )
    meta = json.loads(jpath.read_text())["metadata"]
    assert meta["runs"] == "3 repeats" and meta["data"] == ["synthetic"] and meta["cpu_count"] == env["cpu_count"]
    md = mpath.read_text()
    for needle in ("hardware:", "CPU cores", "runs: 3 repeats", "## Table", "| a | 0.500 |", "- a note"):
        assert needle in md


def test_percentile_ratio_and_peak_rss():
    assert common.percentile([1, 2, 3, 4, 5], 50) == 3
    assert common.percentile([0, 10], 95) == pytest.approx(9.5)
    assert common.ratio(3, 2) == 1.5 and common.ratio(1, 0) is None
    assert common.latency_summary([0.001, 0.002, 0.003])["p50_ms"] == pytest.approx(2.0)
    assert common.peak_rss_mb() >= common.current_rss_mb() * 0.5 > 0
