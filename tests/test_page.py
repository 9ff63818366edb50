"""What the web page asks of the server (issue 11 item 5), over the real agent and index:
the upload route reads files with the CLI's readers (PDF and HTML included), the formats
endpoint lists exactly what ``hoprank index`` reads, and the example questions come from the
served index, not from the sample corpus."""

from __future__ import annotations

import httpx
import pytest
from conftest import make_pdf, write_corpus

from hoprank import Agent
from hoprank.agent.app.page import UploadError, example_questions, read_upload, upload_extensions
from hoprank.agent.app.server import create_app, serve_in_thread
from hoprank.tools.ingest.index import Index
from hoprank.tools.ingest.readers import SUPPORTED_SUFFIXES
from hoprank.tools.llm.base import ScriptedLLM


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    """A private index (uploads change it) behind the real server."""
    corpus = write_corpus(tmp_path_factory.mktemp("page-corpus"))
    idx, _ = Index.build(tmp_path_factory.mktemp("page-index"), sources=[corpus], qdrant=False, show_progress=False)
    agent = Agent.from_config({"rerank": {"method": "none"}}, index=idx, llm=ScriptedLLM(["unused"]))
    with serve_in_thread(create_app(agent)) as url:
        yield url, agent


def _upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/v1/documents/upload", params={"filename": name}, content=data, timeout=120)


def test_formats_are_the_readers_suffixes_and_examples_fit_the_index(page_server):
    url, _ = page_server
    body = httpx.get(f"{url}/v1/documents/formats", timeout=60).json()
    assert body["extensions"] == sorted(SUPPORTED_SUFFIXES) == upload_extensions()
    assert {".pdf", ".html", ".htm", ".txt", ".md", ".json", ".jsonl"} <= set(body["extensions"])
    # the fixture corpus: Ada Quill's page names Marrow Bay and the Quill Lamp Works
    assert body["examples"] and all(q.endswith("?") for q in body["examples"])
    assert body["examples"][0] in {
        "How is Ada Quill connected to Marrow Bay?",
        "How is Ada Quill connected to Quill Lamp Works?",
    }
    assert not any("Osric" in q for q in body["examples"])  # nothing from the sample corpus


def test_pdf_upload_is_read_and_indexed(page_server):
    url, agent = page_server
    pdf = make_pdf(["Tern Island Light", "The Tern Island Light was first lit in 1888 by Edda Vossberg."])
    r = _upload(url, "tern-island.pdf", pdf)
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == ["tern-island.pdf"]
    chunk = agent.index.chunk_by_id["tern-island.pdf#0"]
    assert "first lit in 1888 by Edda Vossberg" in chunk.text
    assert chunk.title == "Tern Island Light" and chunk.source == "tern-island.pdf"  # no temporary path leaks
    hits = agent.index.retriever("bm25").search("Edda Vossberg lighthouse", 3)
    assert hits[0].doc_id == "tern-island.pdf"


def test_html_and_jsonl_uploads_use_the_cli_readers(page_server):
    url, agent = page_server
    html = b"<html><head><title>Gull Rock</title><script>x()</script></head><body><p>Gull Rock has 40 seals.</p>"
    r = _upload(url, "gull.html", html)
    assert r.status_code == 200, r.text
    chunk = agent.index.chunk_by_id["gull.html#0"]
    assert chunk.title == "Gull Rock" and "40 seals" in chunk.text and "x()" not in chunk.text
    jsonl = b'{"id": "a", "text": "Alder Fen is a marsh."}\nnot json\n{"id": "b", "text": "Birch Holm is an islet."}\n'
    r = _upload(url, "notes.jsonl", jsonl)
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == ["a", "b"]
    assert r.json()["skipped"] == [{"where": "notes.jsonl:2", "why": "invalid JSON (Expecting value)"}]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("virus.exe", b"MZ", "cannot index .exe: upload one of"),
        ("empty.txt", b"", "empty.txt is empty"),
        ("broken.pdf", b"%PDF-1.4 not really", "cannot read broken.pdf"),
        ("", b"text", "an upload needs a file name"),
    ],
)
def test_bad_uploads_are_one_line_400s(page_server, name, data, message):
    url, _ = page_server
    r = _upload(url, name, data)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]


def test_a_browser_path_is_reduced_to_the_file_name(tmp_path):
    docs, skipped = read_upload("C:\\Users\\me\\Desktop\\notes.md", b"# Fern Hill\nFern Hill is a farm.")
    assert [d.id for d in docs] == ["notes.md"] and docs[0].title == "Fern Hill" and not skipped
    with pytest.raises(UploadError, match="needs a file name"):
        read_upload("../../.hidden", b"x")


def test_example_questions_without_named_documents_are_none_or_single(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"minutes-2019-07.md": "minutes of the meeting, nothing named here."})
    idx, _ = Index.build(tmp_path / "i", sources=[corpus], qdrant=False, show_progress=False)
    assert example_questions(idx) == []  # a file-name title makes no question
    corpus = write_corpus(tmp_path / "d", {"wren.md": "# Tobias Wren\nTobias Wren ran ferries."})
    idx, _ = Index.build(tmp_path / "j", sources=[corpus], qdrant=False, show_progress=False)
    assert example_questions(idx) == ["What do the documents say about Tobias Wren?"]
