"""Run lint-imports (import-linter) over hoprank: ``python tests/lint_imports.py``.

Why a wrapper: the contracts live in pyproject.toml ([tool.importlinter]), but hoprank's
package-dir mapping (``hoprank.agent`` is the folder ``agent/``, ``hoprank.tools`` is
``tools/``...) is invisible to import-linter's graph builder, which walks the folder of the
top-level package and so would see ``hoprank/__init__.py`` alone. This script lays the folders
out as the package in a temporary directory (symlinks, nothing copied, nothing written in the
repository), then runs lint-imports from there, so the graph is built from the real files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_folders(root: Path = ROOT) -> dict[str, Path]:
    """``{package name: folder}`` of the top-level sub-packages, from pyproject's package-dir
    (``hoprank.agent.app`` lies inside ``agent/`` already, so only direct children are linked)."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in mapping.items() if name.count(".") == 1}


def lint_imports(root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Build the package view and run lint-imports on it; the result's returncode is 0 when
    every contract is kept."""
    lint = Path(sys.executable).parent / "lint-imports"
    with tempfile.TemporaryDirectory(prefix="hoprank-lint-imports-") as tmp:
        pkg = Path(tmp) / "hoprank"
        pkg.mkdir()
        (pkg / "__init__.py").symlink_to(root / "hoprank" / "__init__.py")
        for name, folder in package_folders(root).items():
            (pkg / name.split(".", 1)[1]).symlink_to(folder, target_is_directory=True)
        # lint-imports puts its working directory first on sys.path: there ``hoprank`` is the view
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return subprocess.run(
            [str(lint), "--config", str(root / "pyproject.toml"), "--no-cache", "--no-logo"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )


if __name__ == "__main__":
    result = lint_imports()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)
