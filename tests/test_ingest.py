from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FIXTURE_DOCS, write_corpus

from hoprank.tools.errors import IndexNotFoundError
from hoprank.tools.ingest.chunking import ChunkingConfig, chunk_document
from hoprank.tools.ingest.index import Index
from hoprank.tools.ingest.readers import UnreadableFileError, read_file
from hoprank.tools.types import Document


def test_chunking_tokens_overlap_offsets_and_stable_ids():
    text = " ".join(f"w{i}" for i in range(25))
    doc = Document(id="d", text=text, title="T")
    chunks = chunk_document(doc, ChunkingConfig(size=10, overlap=3))
    assert [c.id for c in chunks] == ["d#0", "d#1", "d#2", "d#3"]
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
    # overlap: the last 3 words of chunk 0 open chunk 1
    assert chunks[0].text.split()[-3:] == chunks[1].text.split()[:3]
    assert chunks[-1].text.split()[-1] == "w24"
    assert [c.id for c in chunk_document(doc, ChunkingConfig(size=10, overlap=3))] == [c.id for c in chunks]


def test_chunking_sentences():
    doc = Document(id="s", text="One. Two is here! Three? Four.\nFive")
    chunks = chunk_document(doc, ChunkingConfig(size=2, overlap=0, unit="sentences"))
    assert [c.text for c in chunks] == ["One. Two is here!", "Three? Four.", "Five"]


@pytest.mark.parametrize("size,overlap,unit", [(0, 0, "tokens"), (5, 5, "tokens"), (5, -1, "tokens"), (5, 1, "pages")])
def test_chunking_rejects_bad_config(size, overlap, unit):
    with pytest.raises(ValueError):
        ChunkingConfig(size=size, overlap=overlap, unit=unit)


def test_readers_html_json_jsonl(tmp_path):
    (tmp_path / "p.html").write_text("<html><head><title>Page T</title><script>var x=1</script></head><body><p>Hello &amp; bye</p></body></html>")
    (tmp_path / "r.jsonl").write_text('{"id": "a", "title": "A", "text": "alpha", "metadata": {"k": 1}}\n\n{"text": "beta"}\n')
    (tmp_path / "r.json").write_text(json.dumps({"documents": [{"id": "x", "text": "xx"}]}))
    html = read_file(tmp_path / "p.html", "p.html")[0]
    assert html.title == "Page T" and html.text == "Hello & bye"
    recs = read_file(tmp_path / "r.jsonl", "r.jsonl")
    assert [(d.id, d.title, d.text, d.metadata) for d in recs] == [("a", "A", "alpha", {"k": 1}), ("r.jsonl:3", "", "beta", {})]
    assert read_file(tmp_path / "r.json", "r.json")[0].id == "x"


def test_readers_reject_bad_files_with_reasons(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02garbage")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{broken\n')
    (tmp_path / "notext.json").write_text('[{"title": "no text"}]')
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    for name, reason in [("bin.txt", "binary"), ("latin.txt", "UTF-8"), ("bad.jsonl", "line 2"), ("notext.json", "text"), ("broken.pdf", "PDF")]:
        with pytest.raises(UnreadableFileError, match=reason):
            read_file(tmp_path / name, name)


def test_pdf_reader(tmp_path):
    from pypdf import PdfWriter
    from pypdf.generic import NameObject

    # a minimal one-page PDF with a text stream, built with pypdf
    w = PdfWriter()
    page = w.add_blank_page(width=200, height=200)
    from pypdf.generic import DecodedStreamObject, DictionaryObject

    stream = DecodedStreamObject()
    stream.set_data(b"BT /F1 12 Tf 20 100 Td (Tidal lantern facts) Tj ET")
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"), NameObject("/BaseFont"): NameObject("/Helvetica")})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    page[NameObject("/Contents")] = w._add_object(stream)
    with open(tmp_path / "t.pdf", "wb") as f:
        w.write(f)
    doc = read_file(tmp_path / "t.pdf", "t.pdf")[0]
    assert "Tidal lantern facts" in doc.text and doc.metadata["pages"] == 1


def test_build_skips_bad_files_and_keeps_good_ones(tmp_path):
    corpus = write_corpus(tmp_path / "docs")
    (corpus / "bad.txt").write_bytes(b"\x00\xff\x00")
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n")
    idx, stats = Index.build(tmp_path / "idx", sources=[corpus])
    skipped = {Path(f).name for f, _ in stats.skipped}
    assert skipped == {"bad.txt", "image.png"}
    assert {c.doc_id for c in idx.chunks} == set(FIXTURE_DOCS)
    assert idx.embeddings.shape == (len(idx.chunks), 384)


def test_persistence_reload_and_incremental_update(tmp_path):
    corpus = write_corpus(tmp_path / "docs")
    idx1, s1 = Index.build(tmp_path / "idx", sources=[corpus])
    assert s1.files_read == len(FIXTURE_DOCS) and s1.chunks_embedded == len(idx1)
    reopened = Index.open(tmp_path / "idx")
    assert [c.id for c in reopened.chunks] == [c.id for c in idx1.chunks]
    assert (reopened.embeddings == idx1.embeddings).all()
    # nothing changed: nothing re-read, nothing re-embedded
    _, s2 = Index.build(tmp_path / "idx", sources=[corpus])
    assert (s2.files_read, s2.files_reused, s2.chunks_embedded) == (0, len(FIXTURE_DOCS), 0)
    # one file changed, one removed, one added
    (corpus / "seren.md").write_text("# Seren River\nThe Seren River is 215 kilometres long.")
    (corpus / "hollin.md").unlink()
    (corpus / "new.md").write_text("# New\nA brand new document about kettles.")
    idx3, s3 = Index.build(tmp_path / "idx", sources=[corpus])
    assert (s3.files_read, s3.files_removed, s3.chunks_embedded) == (2, 1, 2)
    texts = {c.doc_id: c.text for c in idx3.chunks}
    assert "215 kilometres" in texts["seren.md"] and "hollin.md" not in texts and "new.md" in texts
    assert idx3.retriever("bm25").search("kettles", 1)[0].doc_id == "new.md"
    # only the current generation's files remain
    assert sorted(p.name for p in (tmp_path / "idx").glob("chunks.*")) == [f"chunks.{idx3.generation}.jsonl"]


def test_open_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFoundError, match="hoprank index"):
        Index.open(tmp_path / "nope")


def test_interrupted_build_leaves_previous_index_readable(tmp_path):
    """Kill a rebuild mid-way (SIGKILL between writing its files): the old generation still opens."""
    corpus = write_corpus(tmp_path / "docs")
    Index.build(tmp_path / "idx", sources=[corpus])
    for i in range(60):
        (corpus / f"extra{i}.md").write_text(f"# Extra {i}\n" + "lantern river clock " * 200)
    script = textwrap.dedent(f"""
        import os, signal
        from hoprank.tools.ingest import index as index_mod
        real = index_mod.atomic_write_bytes
        calls = []
        def write(path, data):
            calls.append(path)
            if len(calls) == 2:  # chunks of the new generation written, embeddings not yet
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, data)
        index_mod.atomic_write_bytes = write
        index_mod.Index.build({str(tmp_path / 'idx')!r}, sources=[{str(corpus)!r}])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    idx = Index.open(tmp_path / "idx")
    assert {c.doc_id for c in idx.chunks} == set(FIXTURE_DOCS)
    # and the next build completes and cleans the leftovers
    idx2, _ = Index.build(tmp_path / "idx", sources=[corpus])
    assert len({c.doc_id for c in idx2.chunks}) == len(FIXTURE_DOCS) + 60
    assert not [p for p in os.listdir(tmp_path / "idx") if p.endswith(".tmp")]
