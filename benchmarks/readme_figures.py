"""README tables rendered from benchmark results, and the check that they still match.

Scheme: in README.md a table that cites a results file sits between two marks::

    <!-- figures:benchmarks/results/multihop_closed_book_quick.json -->
    | question type | n | ... |
    ...
    <!-- /figures -->

``render`` replaces the block with the file's ``results.readme_table`` (benchmarks write
it), so a README figure is never typed by hand. ``check`` (used by the test suite) fails
when a number in a marked table does not occur in the file it cites: every number in every
cell except the first column (row labels such as "top-5") must equal some numeric value of
the JSON when that value is formatted with the same number of decimals ("0.421" matches
0.42105; "1,191" matches 1191.4).

    .venv/bin/python benchmarks/readme_figures.py render   # after a benchmark run
    .venv/bin/python benchmarks/readme_figures.py check
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- figures:(?P<path>[^ >]+) -->\n(?P<body>.*?)<!-- /figures -->", re.DOTALL)
NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")


def blocks(text: str) -> Iterator[re.Match[str]]:
    return BLOCK.finditer(text)


def _numbers(data: Any) -> list[float]:
    """Every numeric value anywhere in a JSON document (booleans excluded)."""
    out: list[float] = []
    if isinstance(data, bool):
        return out
    if isinstance(data, int | float):
        out.append(float(data))
    elif isinstance(data, dict):
        for v in data.values():
            out += _numbers(v)
    elif isinstance(data, list):
        for v in data:
            out += _numbers(v)
    return out


def _formats(token: str) -> tuple[float, int]:
    clean = token.replace(",", "")
    decimals = len(clean.split(".", 1)[1]) if "." in clean else 0
    return float(clean), decimals


def _matches(token: str, values: list[float]) -> bool:
    target, decimals = _formats(token)
    if "," in token and "." not in token:  # "1,191": a thousands-separated figure rounded to an integer
        return any(round(v) == target for v in values)
    return any(f"{v:.{decimals}f}" == f"{target:.{decimals}f}" for v in values)


def table_cells(body: str) -> Iterator[str]:
    """The cells of the markdown table rows in a block, without the header row (names, not
    figures) and without the first column (row labels)."""
    seen_header = False
    for line in body.splitlines():
        line = line.strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        if not seen_header:
            seen_header = True
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        yield from cells[1:]


def check(readme: Path = REPO / "README.md") -> list[str]:
    """Problems found: a cited file missing, or a figure not in its file. Empty = all good."""
    text = readme.read_text("utf-8")
    problems: list[str] = []
    found = list(blocks(text))
    for m in found:
        path = REPO / m.group("path")
        if not path.is_file():
            problems.append(f"{m.group('path')}: cited in README but not found")
            continue
        values = _numbers(json.loads(path.read_text("utf-8")))
        for cell in table_cells(m.group("body")):
            for token in NUMBER.findall(cell):
                if not _matches(token, values):
                    problems.append(f"{m.group('path')}: README figure {token!r} (cell {cell!r}) is not in the file")
    return problems


def render(readme: Path = REPO / "README.md") -> int:
    """Rewrite every marked block from its file's ``results.readme_table``; returns how many."""
    text = readme.read_text("utf-8")
    count = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal count
        path = REPO / m.group("path")
        if not path.is_file():
            return m.group(0)  # not generated yet: `check` reports it
        data = json.loads(path.read_text("utf-8"))
        table = data.get("results", {}).get("readme_table")
        if not table:
            return m.group(0)  # a file without a rendered table: leave the hand-made one, the check still applies
        count += 1
        return f"<!-- figures:{m.group('path')} -->\n{table.strip()}\n<!-- /figures -->"

    new = BLOCK.sub(sub, text)
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return count


def main(argv: list[str]) -> int:
    if argv[:1] == ["render"]:
        print(f"rendered {render()} README table(s) from benchmarks/results")
        return 0
    if argv[:1] == ["check"]:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        print(
            f"{len(list(blocks((REPO / 'README.md').read_text('utf-8'))))} cited table(s), {len(problems)} problem(s)"
        )
        return 1 if problems else 0
    if argv[:1] in (["--help"], ["-h"]):
        print(__doc__)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
