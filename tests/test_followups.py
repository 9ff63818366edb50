"""Follow-up rewriting, the short-answer cutter and uncited answers (issue 10, items 9-11)."""

from __future__ import annotations

from hoprank.agent.generate import generate, shorten
from hoprank.agent.nodes import acceptable_rewrite, referents
from hoprank.agent.understand import entities
from hoprank.tools.llm.base import ScriptedLLM
from hoprank.tools.types import Hit


def test_entities_never_return_citation_markers_or_numbers() -> None:
    assert entities("She was born in Saltmere [1] in 1871 [2, 3].") == ["Saltmere"]


def test_referent_is_the_user_topic_not_a_name_the_answer_added() -> None:
    turns = [
        {"role": "user", "content": "Where did Ingrid Holloway work?"},
        {"role": "assistant", "content": "Osric Dynamics [1], in Saltmere [2]."},
    ]
    assert referents("Where was she born?", turns)[0] == "Ingrid Holloway"


def test_referent_after_a_who_question_is_the_person_the_answer_named() -> None:
    turns = [
        {"role": "user", "content": "Who founded Osric Dynamics?"},
        {"role": "assistant", "content": "Osric Dynamics was founded by Ingrid Holloway [1]."},
    ]
    assert referents("Where was she born?", turns)[0] == "Ingrid Holloway"


def test_llm_rewrite_must_be_a_question_without_markers() -> None:
    names = ["Ingrid Holloway"]
    statement = "The document is about the founder of Osric Dynamics, not about where she was born. [1]"
    assert not acceptable_rewrite(statement, "Where was she born?", names)
    assert not acceptable_rewrite("Where was she born (1)?", "Where was she born?", names)
    assert acceptable_rewrite("Where was Ingrid Holloway born?", "Where was she born?", names)


def test_short_answer_cutter_takes_the_kind_the_question_asks_for() -> None:
    ev = [Hit(id="a#0", score=1.0, text="The keeper was Tobias Wren, who kept the light for 31 years.", title="a")]
    answer = "The keeper of the Harbour Light was Tobias Wren, who kept the light for 31 years"
    assert shorten(answer, "Who was the keeper of the Harbour Light?", ev)[0] == "Tobias Wren"
    assert shorten(answer, "How many years did the keeper keep the light?", ev)[0].startswith("31")


EVIDENCE = [
    Hit(id="d1#0", score=2.0, text="Ada Quill was born in Saltmere in 1871.", title="Ada Quill", rank=1),
    Hit(id="d2#0", score=1.0, text="Saltmere is a town where Ada Quill was born.", title="Saltmere", rank=2),
]


def test_an_uncited_answer_no_chunk_supports_is_not_found() -> None:
    echo = "You answer questions using only the numbered documents you are given."
    g = generate("Where was Ada Quill born?", EVIDENCE, ScriptedLLM([echo]), style="full")
    assert g.status == "not_found" and not g.citations and "unsupported" in (g.fallback or "")


def test_auto_citation_prefers_the_higher_ranked_chunk_on_a_tie() -> None:
    g = generate("Where was Ada Quill born?", EVIDENCE, ScriptedLLM(["Ada Quill was born in Saltmere."]), style="full")
    assert g.status == "answered" and g.citations[0].chunk_id == "d1#0"
    assert "auto-cited" in (g.fallback or "")
