"""Execute the notebooks top to bottom (offline, embedded models), as a reader would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.mark.parametrize("name", ["quickstart.ipynb", "evaluation.ipynb"])
def test_notebook_runs(name, tmp_path):
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient

    try:  # the venv's ipykernel spec ('python' in its argv resolves to this interpreter)
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail("no 'python3' Jupyter kernel: install ipykernel in this environment (pip install -e '.[dev]')")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    if name == "quickstart.ipynb":
        assert "status:" in text and "answer:" in text and "generate" in text
    else:
        assert any("image/png" in o.get("data", {}) for o in outputs if o.get("output_type") == "display_data")
