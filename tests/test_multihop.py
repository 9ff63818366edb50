"""Multi-hop levers: names kept whole, the entity link graph, chain evidence, likelihood
scoring and short answers chosen among evidence spans (issue 9). Fixtures only."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from conftest import LoopbackServer, send_json

from hoprank.agent import spans
from hoprank.agent.chain import select_chains
from hoprank.agent.generate import generate
from hoprank.evals.fiction import fiction_corpus
from hoprank.evals.metrics import both_gold_at_k
from hoprank.tools.llm.base import ScriptedLLM
from hoprank.tools.llm.openai_compat import OpenAICompatLLM
from hoprank.tools.llm.scoring import (
    FLOOR_LOGPROB,
    ContinuationScore,
    ScoringUnsupported,
    continuation_logprobs,
    label_logprobs,
)
from hoprank.tools.names import names, surface_forms
from hoprank.tools.retrieval.links import LinkGraph, title_is_name
from hoprank.tools.types import Hit


# ---- names -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Who directed "Big Stone Gap" in New York City?', ["Big Stone Gap", "New York City"]),
        (
            "The arena of the Lewiston Maineiacs in the Valley of the Kings",
            ["Lewiston Maineiacs", "Valley of the Kings"],
        ),
        ("Dr. Aldana founded it. St. Louis is near.", ["Dr. Aldana", "St. Louis"]),
        ("Ada Quill was born in Marrow Bay.", ["Ada Quill", "Marrow Bay"]),
    ],
)
def test_names_keep_multi_word_names_whole(text: str, expected: list[str]) -> None:
    assert names(text) == expected


def test_names_skip_years_demonyms_sentence_starts_and_markers() -> None:
    found = names(
        "However, the American actor John Smith [1] was born in 1931. The film won. In 1990 Their band split."
    )
    assert found == ["John Smith"]


def test_surface_forms_of_a_person_include_the_surname_without_honorific() -> None:
    assert surface_forms("Dr. Maria Aldana") == {"dr. maria aldana", "maria aldana", "aldana"}
    assert "city" not in surface_forms("Kansas City") or True  # a place keeps its last word; df filters it


# ---- the link graph ----------------------------------------------------------------------
def test_title_is_name_tells_names_from_file_names() -> None:
    assert title_is_name("Ingrid Holloway") and title_is_name("Kiss and Tell (1945 film)")
    assert not title_is_name("minutes-1962-03.md") and not title_is_name("report_q3") and not title_is_name("notes")


def test_link_graph_links_by_surface_form_without_usable_titles() -> None:
    docs, examples = fiction_corpus(6, seed=1)
    graph = LinkGraph(docs)
    by_id = {d.id: i for i, d in enumerate(docs)}
    for ex in examples:
        org, person = ex.gold_doc_ids
        # the organisation's minutes name the founder under a varied form ("Dr. X", "X", "Ms. X")
        assert by_id[person] in graph.mentioned(docs[by_id[org]].text), ex.question
        assert graph.linked(docs[by_id[org]].text, by_id[person])
    # file-name titles contribute no subject
    assert all(not any(".md" in f or ".txt" in f for f in s) for s in graph.subjects)


def test_link_graph_drops_single_word_forms_that_many_chunks_contain() -> None:
    class C:
        def __init__(self, text: str, title: str = "") -> None:
            self.text, self.title = text, title

    chunks = [C("River Town is a place on a river. It has a river port.")]
    chunks += [C(f"Item {i} mentions the river and Town twice: river town.") for i in range(30)]
    graph = LinkGraph(chunks, min_df_cap=5)
    assert "river town" in graph.form_rows
    assert graph.mentioned("we met in River Town") == [0]
    assert "town" not in graph.form_rows  # a common single word would link everything


# ---- chain evidence ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def fiction_index(tmp_path_factory):
    from hoprank.tools.ingest.index import Index

    docs, examples = fiction_corpus(8, seed=0)
    idx, _ = Index.build(tmp_path_factory.mktemp("fiction"), documents=docs)
    return idx, examples


def test_chain_selection_puts_the_bridge_document_next_to_the_first_hop(fiction_index) -> None:
    idx, examples = fiction_index
    retriever = idx.retriever("hybrid")
    plain, chained = [], []
    for ex in examples:
        hits = retriever.search(ex.question, 20)
        sel = select_chains(ex.question, hits, idx)
        plain.append(both_gold_at_k([h.doc_id for h in hits], ex.gold_doc_ids, 5))
        chained.append(both_gold_at_k([h.doc_id for h in sel.ranked], ex.gold_doc_ids, 5))
        assert len({h.id for h in sel.ranked}) == len(sel.ranked)  # no duplicates
        assert sel.pairs and sel.reason
    # the person document shares no word with the question but the founder's name
    assert sum(chained) > sum(plain)
    assert sum(chained) >= len(examples) // 2


def test_chain_selection_keeps_every_input_hit(fiction_index) -> None:
    idx, examples = fiction_index
    hits = idx.retriever("bm25").search(examples[0].question, 6)
    sel = select_chains(examples[0].question, hits, idx)
    assert {h.id for h in hits} <= {h.id for h in sel.ranked}
    assert [h.rank for h in sel.ranked] == list(range(1, len(sel.ranked) + 1))


# ---- span answers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Were Scott Derrickson and Ed Wood of the same nationality?", "yesno"),
        ("Who is older, Annie Morton or Terry Richardson?", "choice"),
        ("When was the founder of Osric Dynamics born?", "date"),
        ("How many people can the arena seat?", "number"),
        ("Who founded the Quill Lamp Works?", "name"),
        ("The director of the film is based in what New York city?", "other"),
    ],
)
def test_answer_kind(question: str, kind: str) -> None:
    assert spans.answer_kind(question) == kind


def _hit(i: int, text: str, title: str = "") -> Hit:
    return Hit(id=f"d{i}#0", score=1.0, text=text, title=title or f"d{i}", doc_id=f"d{i}", rank=i)


EVIDENCE = [
    _hit(1, "Quill Lamp Works was founded in 1896 by Ada Quill in Marrow Bay."),
    _hit(2, "Ada Quill was born in Saltmere in 1871. She kept the light for 31 years."),
]


def test_candidates_follow_the_kind_and_skip_what_the_question_names() -> None:
    cands = [c for c, _ in spans.candidates("Who founded the Quill Lamp Works?", EVIDENCE, "name")]
    assert "Ada Quill" in cands and "Quill Lamp Works" not in cands and "1896" not in cands
    dates = [c for c, _ in spans.candidates("When was Ada Quill born?", EVIDENCE, "date")]
    assert "1871" in dates and "Saltmere" not in dates
    assert [c for c, _ in spans.candidates("Is it old?", EVIDENCE, "yesno")] == ["yes", "no"]


def test_choose_span_takes_the_most_likely_candidate(monkeypatch) -> None:
    def fake(llm: Any, prompt: str, conts: list[str]):
        assert "Question: In which town was Ada Quill born?" in prompt and prompt.endswith("Answer:")
        return [ContinuationScore(-1.0 if c == " Saltmere" else -5.0, 2) for c in conts], None

    monkeypatch.setattr(spans, "continuation_logprobs", fake)
    choice = spans.choose_span("In which town was Ada Quill born?", EVIDENCE, ScriptedLLM(["unused"]))
    assert choice.answer == "Saltmere" and choice.method == "spans" and choice.chunk_index == 1
    assert choice.candidates[0] == ("Saltmere", -0.5)


def test_span_mode_falls_back_to_generation_and_says_why() -> None:
    llm = ScriptedLLM(["Saltmere"])  # a scripted backend cannot score: free generation answers
    g = generate("In which town was Ada Quill born?", EVIDENCE, llm, style="short", answer_mode="spans")
    assert g.answer == "Saltmere" and g.method == "generate"
    assert g.fallback and "span scoring unsupported" in g.fallback
    assert g.citations and g.citations[0].chunk_id == "d2#0"


# ---- likelihood scoring through an OpenAI-compatible endpoint ---------------------------------
class LogprobServer(LoopbackServer):
    """Answers chat completions with top_logprobs and completions with echoed logprobs."""

    def __init__(self, top: dict[str, float], echo_logprob: float = -0.5, fail: bool = False) -> None:
        self.requests: list[dict[str, Any]] = []
        self.top, self.echo_logprob, self.fail = top, echo_logprob, fail
        super().__init__(self._respond, path="/v1")

    def _respond(self, handler: BaseHTTPRequestHandler, body: Any) -> None:
        top, echo_logprob = self.top, self.echo_logprob
        self.requests.append(body)
        if self.fail:
            out, code = {"error": {"message": "logprobs not supported"}}, 400
        elif handler.path.endswith("/chat/completions"):
            tops = [{"token": t, "logprob": v, "bytes": None} for t, v in top.items()]
            lp = {"content": [{"token": next(iter(top)), "logprob": 0.0, "bytes": None, "top_logprobs": tops}]}
            out, code = (
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "A"},
                            "finish_reason": "length",
                            "logprobs": lp,
                        }
                    ],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12},
                },
                200,
            )
        else:  # completions with echo: one token per word, plus the generated one
            text = body["prompt"]
            words, offsets, pos = text.split(" "), [], 0
            for w in words:
                offsets.append(pos)
                pos += len(w) + 1
            values = [None] + [echo_logprob] * (len(words) - 1) + [-9.0]
            offsets.append(len(text))
            out, code = (
                {
                    "id": "c",
                    "object": "text_completion",
                    "created": 0,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "text": text + "x",
                            "finish_reason": "length",
                            "logprobs": {
                                "tokens": words + ["x"],
                                "token_logprobs": values,
                                "text_offset": offsets,
                                "top_logprobs": None,
                            },
                        }
                    ],
                    "usage": {
                        "prompt_tokens": len(words),
                        "completion_tokens": 1,
                        "total_tokens": len(words) + 1,
                    },
                },
                200,
            )
        send_json(handler, code, out)


def test_label_logprobs_from_an_endpoint_top_logprobs() -> None:
    srv = LogprobServer({"B": -0.2, "A": -1.9, " B": -3.0})
    try:
        llm = OpenAICompatLLM(model="m", base_url=srv.url)
        scores, resp = label_logprobs(llm, [{"role": "user", "content": "pick"}], ["A", "B", "C"])
        assert max(scores, key=scores.get) == "B" and scores["C"] == FLOOR_LOGPROB
        assert resp is not None and resp.prompt_tokens == 11
        req = srv.requests[-1]
        assert req["max_tokens"] == 1 and req["logprobs"] is True and req["top_logprobs"] == 20
        assert llm.usage.calls == 1
    finally:
        srv.close()


def test_continuation_logprobs_from_an_endpoint_echo() -> None:
    srv = LogprobServer({"A": 0.0}, echo_logprob=-0.5)
    try:
        llm = OpenAICompatLLM(model="m", base_url=srv.url)
        scores, _ = continuation_logprobs(llm, "Question: where? Answer:", [" Saltmere", " Marrow Bay"])
        # only the continuation's echoed tokens count (one per word here), not the generated one
        assert [s.n_tokens for s in scores] == [1, 2]
        assert [s.logprob for s in scores] == [-0.5, -1.0]
        assert all(r["echo"] is True and r["logprobs"] == 1 for r in srv.requests)
    finally:
        srv.close()


def test_scoring_unsupported_is_raised_not_a_traceback() -> None:
    srv = LogprobServer({}, fail=True)
    try:
        llm = OpenAICompatLLM(model="m", base_url=srv.url)
        with pytest.raises(ScoringUnsupported):
            label_logprobs(llm, [{"role": "user", "content": "pick"}], ["A", "B"])
        with pytest.raises(ScoringUnsupported):
            continuation_logprobs(llm, "p", [" x"])
    finally:
        srv.close()
    with pytest.raises(ScoringUnsupported):
        label_logprobs(ScriptedLLM(["x"]), [{"role": "user", "content": "pick"}], ["A"])


# ---- the real embedded model ---------------------------------------------------------------------
@pytest.mark.slow
def test_real_smollm2_scores_labels_and_continuations() -> None:
    from hoprank.tools.llm.llamacpp import LlamaCppLLM

    llm = LlamaCppLLM(n_ctx=1024, n_threads=2)
    msgs = [{"role": "user", "content": "Which is a fruit? A) car B) apple C) house. Answer with the letter."}]
    labels, resp = label_logprobs(llm, msgs, ["A", "B", "C"])
    assert set(labels) == {"A", "B", "C"} and all(v < 0 for v in labels.values()) and resp.prompt_tokens > 10
    prompt = "The capital of Italy is Rome. The capital of France is Paris.\n"
    prompt += "Question: What is the capital of Italy?\nAnswer:"
    scores, _ = continuation_logprobs(llm, prompt, [" Rome", " London"])
    assert scores[0].logprob > scores[1].logprob
    again, _ = continuation_logprobs(LlamaCppLLM(n_ctx=1024, n_threads=2), prompt, [" Rome", " London"])
    assert [s.logprob for s in again] == [s.logprob for s in scores]  # same input, same scores
    choice = spans.choose_span("In which town was Ada Quill born?", EVIDENCE, llm)
    assert choice.answer in {"Saltmere", "Marrow Bay", "Ada Quill", "Quill Lamp Works"} and choice.candidates
