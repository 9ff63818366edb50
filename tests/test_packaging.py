"""The wheel, not the editable checkout: every module imports from it and every prompt
renders from it. Catches sub-packages missing from pyproject and package data left out."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import importlib, json, sys
from pathlib import Path
site = Path(sys.argv[1]); modules = json.loads(sys.argv[2])
import hoprank
assert Path(hoprank.__file__).resolve().is_relative_to(site.resolve()), hoprank.__file__
for m in modules:
    mod = importlib.import_module(m)
    assert Path(mod.__file__).resolve().is_relative_to(site.resolve()), (m, mod.__file__)
from hoprank import prompts
rendered = 0
for name in prompts.names():
    prompts.render(name, **{v: "x" for v in prompts.placeholders(name)})
    rendered += 1
from hoprank import Agent
print(json.dumps({"modules": len(modules), "prompts": rendered, "version": hoprank.__version__}))
"""


@pytest.mark.slow
def test_wheel_imports_every_module_and_renders_every_prompt(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("hoprank-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    # every source folder's modules are in the wheel
    for folder, pkg in [
        ("agent", "hoprank/agent"),
        ("tools", "hoprank/tools"),
        ("evals", "hoprank/evals"),
        ("prompts", "hoprank/prompts"),
    ]:
        for py in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in py.parts:
                continue
            rel = py.relative_to(ROOT / folder).as_posix()
            assert f"{pkg}/{rel}" in names, f"{folder}/{rel} missing from the wheel"
    for data in [
        "hoprank/prompts/answer.system.txt",
        "hoprank/agent/app/web/index.html",
        "hoprank/evals/data/sample_qa.jsonl",
    ]:
        assert data in names, f"{data} missing from the wheel"
    assert any(n.startswith("hoprank/agent/sample_corpus/") for n in names)
    modules = sorted(n[:-3].replace("/", ".").removesuffix(".__init__") for n in names if n.endswith(".py"))
    res = subprocess.run(
        [sys.executable, "-c", CHECK, str(site), json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["modules"] == len(modules) and info["prompts"] >= 10


def test_lint_clean_and_no_bare_imports_of_the_top_level_folders():
    """ruff over the tree; its TID251 rule bans `import tools` & co., which would load a
    folder as a second, unrelated module (or a PyPI package of that name)."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", str(ROOT)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:]


def test_import_contracts_kept():
    """lint-imports over the real import graph (imports inside functions too): the layers
    evals > agent > tools > prompts, the graph never importing agent.app, and no import
    circles (the contracts are in pyproject's [tool.importlinter])."""
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "lint_imports.py")], capture_output=True, text=True)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "0 broken" in out.stdout and "Analyzed" in out.stdout
