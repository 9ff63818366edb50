"""Shared fixtures. Tests never read ../shared: they build their own small corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hoprank.evals.loopback import LoopbackServer, send_json  # noqa: F401 - the tests' scripted endpoints

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FIXTURE_DOCS = {
    "ada.md": (
        "# Ada Quill\nAda Quill was born in Marrow Bay in 1871. "
        "She founded the Quill Lamp Works, which built the first tidal lantern."
    ),
    "marrow-bay.md": (
        "# Marrow Bay\nMarrow Bay is a port town on the Seren River. Its lighthouse was lit by a tidal lantern in 1902."
    ),
    "seren.md": "# Seren River\nThe Seren River is 212 kilometres long and flows into the Grey Sound.",
    "lamp-works.md": (
        "# Quill Lamp Works\nQuill Lamp Works was founded in 1896 in Marrow Bay. "
        "It made lanterns for ships and lighthouses."
    ),
    "otto.md": (
        "# Otto Brenn\nOtto Brenn was a clockmaker born in Hollin in 1860. He repaired the town clock of Hollin."
    ),
    "hollin.md": "# Hollin\nHollin is a mountain village on the Ashe River, known for its clock tower built in 1790.",
    "cafe.md": (
        "# Café Ñandú\nThe Café Ñandú in São Brenno serves crème brûlée; its owner Zoë Małecka opened it in 1999."
    ),
}


def write_corpus(root: Path, docs: dict[str, str] = FIXTURE_DOCS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def make_pdf(lines: list[str]) -> bytes:
    """A small one-page PDF whose text layer holds ``lines`` (Helvetica), built with pypdf,
    so upload and ingest tests read a real PDF without shipping a binary fixture."""
    import io

    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    w = PdfWriter()
    page = w.add_blank_page(width=612, height=792)
    ops = ["BT /F1 12 Tf 50 740 Td 16 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    stream = DecodedStreamObject()
    stream.set_data(("\n".join(ops) + " ET").encode("latin-1"))
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
    )
    page[NameObject("/Contents")] = w._add_object(stream)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, corpus_dir):
    """One index shared by read-only tests (building costs an embedding pass)."""
    from hoprank.tools.ingest.index import Index

    path = tmp_path_factory.mktemp("index")
    idx, _ = Index.build(path, sources=[corpus_dir], qdrant=False)
    return idx
