"""The chat page in a real headless Chromium (Playwright driving Debian's system browser).

Server: the real agent with the embedded models over the bundled sample corpus. The main
test uploads a document, asks a multi-hop question, waits for the streamed answer and its
citation, opens the citation and checks the panel shows that chunk's text, then saves a
screenshot (also copied to benchmarks/results/web_chat.png for the README). The others
upload a PDF through the page (read by the server with the CLI's readers), and check the
page at 420 px: nothing overflows sideways and no button is cut off.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import make_pdf

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SAMPLE = Path(__file__).resolve().parents[1] / "agent" / "sample_corpus"
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
QUESTION = "In which town was the founder of Osric Dynamics born?"

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory):
    from hoprank import Agent
    from hoprank.agent.app.server import create_app, serve_in_thread
    from hoprank.tools.ingest.index import Index

    idx, _ = Index.build(tmp_path_factory.mktemp("web-index"), sources=[SAMPLE], qdrant=False, show_progress=False)
    # timeout_s: on a loaded 2-core machine (CI, parallel jobs) the 135M model's 160 tokens after a
    # long evidence prompt were measured past the default 120 s
    llm = {"max_tokens": 160, "cache": False, "timeout_s": 480}
    agent = Agent.from_config({"llm": llm, "agent": {"max_hops": 1}}, index=idx)
    with serve_in_thread(create_app(agent)) as url:
        yield url, agent


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with "
            "`apt-get update && apt-get install -y chromium` (.ci/run does this in CI)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def test_chat_page_streams_an_answer_with_clickable_citations(chat_server, browser, tmp_path):
    url, agent = chat_server
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("#index-info:has-text('chunks')")
    chunks_before = len(agent.index)

    # upload a document through the page (read in the browser, POSTed as JSON)
    note = tmp_path / "lighthouse-keeper.md"
    note.write_text(
        "# Pell Lighthouse\nThe Pell Lighthouse was kept by Mara Quist from 1901 to 1930.\n", encoding="utf-8"
    )
    page.set_input_files("#upload", str(note))
    page.wait_for_selector(".toast.ok:has-text('Added 1 document')", timeout=120_000)
    assert len(agent.index) == chunks_before + 1
    assert "lighthouse-keeper.md#0" in agent.index.chunk_by_id

    page.fill("#question", QUESTION)
    page.click("#send")
    page.wait_for_selector(".msg.user:has-text('Osric Dynamics')")
    page.wait_for_selector("#steps li.step", timeout=300_000)  # steps stream in before the answer
    page.wait_for_selector(".msg.assistant .foot .status", timeout=600_000)  # the final chunk arrived
    answer = page.inner_text(".msg.assistant .answer")
    assert answer.strip() and not answer.startswith("Error"), answer
    nodes = page.eval_on_selector_all("#steps li.step .node", "els => els.map(e => e.textContent)")
    assert "search" in nodes and "generate" in nodes, nodes

    cite = page.locator(".msg.assistant .answer .cite:not(.pending)").first
    cite.wait_for(timeout=10_000)
    cite.click()
    page.wait_for_selector("#chunk:not([hidden])")
    shown = page.inner_text("#chunk-text")
    chunk_id = page.inner_text("#chunk-meta").split("chunk", 1)[1].split()[0]
    assert chunk_id in agent.index.chunk_by_id, chunk_id
    assert agent.index.chunk_by_id[chunk_id].text.split()[:8] == shown.split()[:8]
    assert page.is_visible("#pane-source") and not page.is_visible("#pane-steps")

    shot = tmp_path / "web_chat.png"
    page.screenshot(path=str(shot), full_page=False)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, RESULTS / "web_chat.png")
    assert shot.stat().st_size > 10_000
    page.click("#tab-steps")
    page.wait_for_selector("#pane-steps:not([hidden])")
    page.screenshot(path=str(tmp_path / "web_chat_steps.png"))
    shutil.copyfile(tmp_path / "web_chat_steps.png", RESULTS / "web_chat_steps.png")
    page.set_viewport_size({"width": 420, "height": 860})  # the answered page on a phone
    _assert_fits(page)
    assert not console_errors, console_errors
    page.close()


def _assert_fits(page) -> None:
    """No horizontal overflow, and every visible button lies inside the viewport."""
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert sizes[0] <= sizes[1], f"the page scrolls sideways: {sizes}"
    width = page.viewport_size["width"]
    boxes = page.eval_on_selector_all(
        "button, label.btn",
        """els => els.filter(e => e.offsetParent !== null && !e.closest('dialog'))
                   .map(e => { const r = e.getBoundingClientRect();
                               return [e.id || e.className || e.textContent.trim(), r.left, r.right]; })""",
    )
    assert boxes
    cut = [b for b in boxes if b[1] < 0 or b[2] > width + 0.5]
    assert not cut, f"buttons outside the {width} px viewport: {cut}"


def test_pdf_upload_through_the_page(chat_server, browser, tmp_path):
    url, agent = chat_server
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    # the accept list is the readers' suffixes, served by the server; the examples fit this index
    page.wait_for_selector("#examples .example")
    accept = page.get_attribute("#upload", "accept") or ""
    assert {".pdf", ".html", ".htm", ".txt", ".md", ".json", ".jsonl"} <= set(accept.split(",")), accept
    examples = page.eval_on_selector_all("#examples .example", "els => els.map(e => e.textContent)")
    assert examples and all(q.startswith("How is ") for q in examples), examples

    pdf = tmp_path / "tern-island.pdf"
    pdf.write_bytes(make_pdf(["Tern Island Light", "The Tern Island Light was first lit in 1888 by Edda Vossberg."]))
    page.set_input_files("#upload", str(pdf))
    page.wait_for_selector(".toast.ok:has-text('Added 1 document')", timeout=120_000)
    chunk = agent.index.chunk_by_id["tern-island.pdf#0"]
    assert "first lit in 1888 by Edda Vossberg" in chunk.text and chunk.title == "Tern Island Light"

    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 not really")
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector(".toast.bad:has-text('cannot read broken.pdf')", timeout=60_000)
    assert not errors, errors
    page.close()


def test_page_fits_a_420_px_screen(chat_server, browser):
    url, _ = chat_server
    page = browser.new_page(viewport={"width": 420, "height": 860})
    page.goto(url + "/")
    page.wait_for_selector("#index-info:has-text('chunks')")
    page.wait_for_selector("#examples .example")
    _assert_fits(page)
    header = page.eval_on_selector(".topbar", "e => [e.scrollWidth, e.clientWidth]")
    assert header[0] <= header[1], f"the header overflows: {header}"
    page.click("#key-btn")  # the key dialog fits too
    box = page.locator("#key-dialog").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 420
    page.close()
