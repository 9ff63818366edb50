"""The answer's tokens on the graph's stream, as the LLM writes them.

A caller that wants them (the server, for OpenAI-style token streaming) runs the graph with
``stream_mode`` including ``"custom"`` and sets :data:`STREAM_TOKENS` in the run's
``configurable``; the answer step then calls the LLM with :meth:`ChatLLM.stream` and each
shown piece arrives as ``{"type": "token", "text": ...}``. Any other run calls ``llm.chat``
exactly as before, so benchmarks and plain ``ask`` are untouched.

What is shown must never have to be taken back, because OpenAI clients concatenate the
deltas: the answer step later drops citation markers that point nowhere, turns a short
"NOT_FOUND" into the not-found text, cites an uncited answer (or rejects it) and redacts
what the safety check flags. So a piece is shown only once the raw text has more than six
words and a valid citation, with an unfinished marker and the word being written held back,
cleaned by the same :func:`parse_citations`, and streaming stops for good at the first
safety flag. Whatever is held back arrives with the finished answer (the server sends the
rest of it). Only a revision in ``verify`` mode can still replace shown text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hoprank.tools import safety
from hoprank.tools.llm.base import ChatLLM, LLMResponse, Messages
from hoprank.tools.types import Citation, Hit

STREAM_TOKENS = "hoprank_stream_tokens"  # configurable key: forward the answer's tokens
ANSWER_MAX_TOKENS = "hoprank_answer_max_tokens"  # configurable key: a request's cap on the answer
_MIN_WORDS = 7  # a reply of six words or fewer may still become the not-found text
_OPEN_MARKER = re.compile(r"\[[\d,\s]*$")


def run_options() -> dict[str, Any]:
    """The ``configurable`` of the graph run this code runs in ({} outside a graph run)."""
    from langgraph.config import get_config

    try:
        return dict(get_config().get("configurable") or {})
    except RuntimeError:  # called outside a graph (benchmarks, unit tests of generate)
        return {}


class ShownAnswer:
    """Turns raw deltas into pieces that are safe to show (see the module docstring)."""

    def __init__(
        self,
        write: Callable[[str], None],
        question: str,
        evidence: list[Hit],
        clean: Callable[[str, list[Hit]], tuple[str, list[Citation]]],
    ):
        self.write, self.question, self.evidence, self.clean = write, question, evidence, clean
        self.raw, self.shown, self.stopped = "", "", False

    def add(self, delta: str) -> None:
        self.raw += delta
        if self.stopped:
            return
        ready = self.raw[: max(self.raw.rfind(" "), self.raw.rfind("\n")) + 1]  # the last word may grow
        ready = _OPEN_MARKER.sub("", ready)
        if len(ready.split()) < _MIN_WORDS:
            return
        text, cites = self.clean(ready, self.evidence)
        if not cites or not text.startswith(self.shown) or len(text) == len(self.shown):
            return
        if safety.check_answer(text, self.question, cites, self.evidence).flagged:
            self.stopped = True  # the finished answer will carry the redaction
            return
        self.write(text[len(self.shown) :])
        self.shown = text


def answer_chat(
    llm: ChatLLM,
    messages: Messages,
    max_tokens: int,
    question: str,
    evidence: list[Hit],
    clean: Callable[[str, list[Hit]], tuple[str, list[Citation]]] | None = None,
) -> LLMResponse:
    """The answer step's LLM call: ``llm.chat``, or ``llm.stream`` with its shown pieces on
    the graph's custom stream when the run asked for tokens. ``clean`` (the answer's citation
    parser) is None for answers that are rewritten whole (short answers): those are not
    streamed and arrive with the finished answer. A request's :data:`ANSWER_MAX_TOKENS`
    lowers ``max_tokens``."""
    options = run_options()
    cap = options.get(ANSWER_MAX_TOKENS)
    if cap:
        max_tokens = min(max_tokens, int(cap))
    if clean is None or not options.get(STREAM_TOKENS):
        return llm.chat(messages, max_tokens=max_tokens, temperature=0.0)
    from langgraph.config import get_stream_writer

    writer = get_stream_writer()
    shown = ShownAnswer(lambda text: writer({"type": "token", "text": text}), question, evidence, clean)
    final: LLMResponse | None = None
    for item in llm.stream(messages, max_tokens=max_tokens, temperature=0.0):
        if isinstance(item, LLMResponse):
            final = item
        else:
            shown.add(item)
    assert final is not None  # ChatLLM.stream always ends with the response
    return final
