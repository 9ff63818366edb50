"""Every figure in a README table that cites a results file occurs in that file.

The README marks a table with ``<!-- figures:benchmarks/results/x.json -->`` ...
``<!-- /figures -->``; ``benchmarks/readme_figures.py`` renders those tables from the files
and checks them (scheme in its docstring)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import readme_figures as RF  # noqa: E402

TABLE = """| preset | n | F1 [95% CI] | tokens/q |
|---|---|---|---|
| naive (top-5) | 20 | 0.162 [0.080, 0.250] | 1,191 |
"""


def _setup(tmp_path: Path, body: str, results: dict) -> Path:
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.json").write_text(json.dumps({"metadata": {}, "results": results}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n<!-- figures:benchmarks/results/x.json -->\n{body}<!-- /figures -->\n")
    return readme


def test_the_readme_cites_results_files_and_every_cited_figure_is_in_its_file():
    readme = RF.REPO / "README.md"
    cited = [m.group("path") for m in RF.blocks(readme.read_text("utf-8"))]
    assert "benchmarks/results/multihop_closed_book_quick.json" in cited
    assert RF.check(readme) == []


def test_check_accepts_rounded_figures_and_flags_a_figure_not_in_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(RF, "REPO", tmp_path)
    good = {"f1": 0.16204, "ci": [0.0801, 0.25], "n": 20, "tokens": 1191.4}
    readme = _setup(tmp_path, TABLE, good)
    assert RF.check(readme) == []  # "top-5" is a row label: not checked
    bad = {**good, "f1": 0.17}
    (tmp_path / "benchmarks" / "results" / "x.json").write_text(json.dumps({"results": bad}))
    problems = RF.check(readme)
    assert len(problems) == 1 and "'0.162'" in problems[0]
    readme.write_text(readme.read_text().replace("x.json", "gone.json"))
    assert "not found" in RF.check(readme)[0]


def test_render_replaces_the_block_with_the_files_table(tmp_path, monkeypatch):
    monkeypatch.setattr(RF, "REPO", tmp_path)
    readme = _setup(
        tmp_path,
        "| old | table |\n|---|---|\n| a | 9.999 |\n",
        {"readme_table": TABLE, "f1": 0.162, "ci": [0.08, 0.25], "n": 20, "tokens": 1191},
    )
    assert RF.render(readme) == 1
    text = readme.read_text()
    assert "9.999" not in text and "| naive (top-5) | 20 | 0.162 [0.080, 0.250] | 1,191 |" in text
    assert text.count("<!-- /figures -->") == 1 and RF.check(readme) == []
