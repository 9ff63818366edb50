"""Likelihood scoring: what a small model can contribute when it cannot follow a format.

SmolLM2-135M almost never writes a valid Rank-R1 answer, RankGPT permutation or JSON, but
its next-token distribution still carries signal. Two primitives serve every
likelihood mode in hoprank:

* :func:`label_logprobs` — the log-probability of each candidate label ("A", "B", ...) as
  the *first* token of the assistant's reply (setwise by label likelihood, FIRST listwise,
  calibrated pointwise yes/no). One forward pass, no generation, nothing to parse.
* :func:`continuation_logprobs` — the summed log-probability of each candidate
  continuation of a plain-text prompt (cloze scoring, as lm-eval-harness scores multiple
  choice): used to choose a short answer among candidate spans of the evidence.

Backends: the embedded llama.cpp model (logits read directly, the shared prompt evaluated
once and its KV cache reused for every candidate) and OpenAI-compatible servers
(``logprobs``/``top_logprobs`` on chat completions; ``echo`` + ``logprobs`` on the
completions endpoint, which vLLM and llama.cpp's server implement). A backend that cannot
score raises :class:`ScoringUnsupported`, and every caller falls back to its text mode and
says so in its trace.

Results are cached in the LLM's response cache (keyed by backend, model, kind, prompt and
candidates) and counted in its usage like chat calls, so budgets and eval costs do not
depend on the cache state.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hoprank.tools.errors import LLMError
from hoprank.tools.llm.base import ChatLLM, LLMResponse, Messages

FLOOR_LOGPROB = -30.0  # a label absent from a server's top_logprobs: "very unlikely", not -inf


class ScoringUnsupported(LLMError):
    """This backend cannot return log-probabilities (the caller falls back to text parsing)."""


@dataclass(frozen=True)
class ContinuationScore:
    """Summed log-probability of a continuation and its length in tokens."""

    logprob: float
    n_tokens: int

    @property
    def mean(self) -> float:
        return self.logprob / max(1, self.n_tokens)


def _key(llm: ChatLLM, kind: str, payload: Any) -> str:
    blob = json.dumps([llm.backend_name, llm.model_name, kind, payload], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _cached(llm: ChatLLM, key: str) -> Any | None:
    if llm.cache is None:
        return None
    rec = llm.cache.get(key)
    return None if rec is None else rec.get("scores")


def _record(llm: ChatLLM, key: str, scores: Any, prompt_tokens: int, t0: float, cached: bool) -> LLMResponse:
    """Count the scoring call like a chat call (one call, prompt tokens, no completion) and
    return that record, so callers can charge it to their step's usage and budget."""
    r = LLMResponse(
        text="",
        prompt_tokens=prompt_tokens,
        cached=cached,
        model=llm.model_name,
        latency_s=0.0 if cached else time.perf_counter() - t0,
        finish_reason="scored",
    )
    llm.usage.add(r)  # counts the seconds of a paid call too
    if not cached:
        if llm.cache is not None:
            llm.cache.put(key, {"text": "", "scores": scores, "prompt_tokens": prompt_tokens})
    return r


def _prompt_tokens_cached(llm: ChatLLM, key: str) -> int:
    rec = llm.cache.get(key) if llm.cache is not None else None
    return int((rec or {}).get("prompt_tokens", 0))


def _llama_of(llm: ChatLLM) -> tuple[Any, Any]:
    llama, lock = getattr(llm, "_llama", None), getattr(llm, "_lock", None)
    if llama is None or lock is None:
        raise ScoringUnsupported(f"backend {llm.backend_name!r} exposes no llama.cpp model")
    return llama, lock


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _chat_prompt(llama: Any, messages: Messages) -> str:
    """The model's own chat template with the assistant turn opened (no generated text)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = (llama.metadata or {}).get("tokenizer.chat_template")
    if not template:
        raise ScoringUnsupported("the GGUF file has no chat template")
    eos = llama.detokenize([llama.token_eos()]).decode("utf-8", errors="ignore")
    bos = llama.detokenize([llama.token_bos()]).decode("utf-8", errors="ignore")
    fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
    return fmt(messages=[{"role": m["role"], "content": m.get("content") or ""} for m in messages]).prompt


def _eval_prefix(llama: Any, tokens: list[int]) -> np.ndarray:
    """Evaluate ``tokens`` from an empty context -> last-position logits.

    Always from scratch (no KV reuse across calls): logits then do not depend on what the
    model evaluated before, so the same question scores the same in a fresh process."""
    n_vocab = llama.n_vocab()
    llama.reset()
    llama.eval(tokens)
    return np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(n_vocab,)).copy()


def _token_ids_for_labels(llama: Any, labels: Sequence[str]) -> list[list[int]]:
    """First-token candidates per label: 'A' and ' A' tokenise differently."""
    out = []
    for lab in labels:
        ids = []
        for variant in (lab, " " + lab):
            toks = llama.tokenize(variant.encode("utf-8"), add_bos=False, special=False)
            if toks:
                ids.append(int(toks[0]))
        out.append(sorted(set(ids)))
    return out


def _scored(
    llm: ChatLLM, kind: str, payload: Any, on_llama: Any, on_server: Any, *args: Any
) -> tuple[Any, LLMResponse]:
    """Cache lookup, backend dispatch and usage record shared by both primitives."""
    key = _key(llm, kind, payload)
    t0 = time.perf_counter()
    hit = _cached(llm, key)
    if hit is not None:
        return hit, _record(llm, key, hit, _prompt_tokens_cached(llm, key), t0, cached=True)
    if llm.backend_name == "llamacpp":
        scores, n_prompt = on_llama(llm, *args)
    elif hasattr(llm, "_client"):
        scores, n_prompt = on_server(llm, *args)
    else:
        raise ScoringUnsupported(f"backend {llm.backend_name!r} cannot return log-probabilities")
    return scores, _record(llm, key, scores, n_prompt, t0, cached=False)


def label_logprobs(
    llm: ChatLLM, messages: Messages, labels: Sequence[str]
) -> tuple[dict[str, float], LLMResponse | None]:
    """Log-probability that the assistant's reply starts with each label.

    llama.cpp: exact, from the logits after the chat-templated prompt (a label's variants
    with and without a leading space are summed). OpenAI-compatible servers: from the
    ``top_logprobs`` of a one-token completion; labels outside the top 20 get
    :data:`FLOOR_LOGPROB`."""
    labels = list(labels)
    if not labels:
        return {}, None
    raw, r = _scored(llm, "labels", [messages, labels], _llama_labels, _openai_labels, messages, labels)
    return {k: float(v) for k, v in raw.items()}, r


def _llama_labels(llm: ChatLLM, messages: Messages, labels: list[str]) -> tuple[dict[str, float], int]:
    llama, lock = _llama_of(llm)
    with lock:
        prompt = _chat_prompt(llama, messages)
        tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) >= llama.n_ctx() - 4:
            raise LLMError(f"scoring prompt of {len(tokens)} tokens does not fit n_ctx={llama.n_ctx()}")
        logp = _log_softmax(_eval_prefix(llama, tokens))
        ids = _token_ids_for_labels(llama, labels)
    out = {}
    for lab, tok_ids in zip(labels, ids):
        out[lab] = float(np.logaddexp.reduce(logp[tok_ids])) if tok_ids else FLOOR_LOGPROB
    return out, len(tokens)


def _openai_labels(llm: Any, messages: Messages, labels: list[str]) -> tuple[dict[str, float], int]:
    try:
        resp = llm._client.chat.completions.create(
            model=llm._resolve_model(),
            messages=messages,
            max_tokens=1,
            temperature=0.0,
            logprobs=True,
            top_logprobs=20,
        )
        content = resp.choices[0].logprobs.content or []
        top = content[0].top_logprobs if content else []
    except Exception as e:  # noqa: BLE001 - any failure means "no scores": the caller falls back
        raise ScoringUnsupported(f"the endpoint returned no log-probabilities: {type(e).__name__}: {e}") from e
    best: dict[str, float] = {}
    for t in top or []:
        tok = (t.token or "").strip()
        if tok in labels:
            best[tok] = float(np.logaddexp(best[tok], t.logprob)) if tok in best else float(t.logprob)
    if not best:
        raise ScoringUnsupported("none of the labels is among the endpoint's top log-probabilities")
    usage = getattr(resp, "usage", None)
    return {lab: best.get(lab, FLOOR_LOGPROB) for lab in labels}, int(getattr(usage, "prompt_tokens", 0) or 0)


def continuation_logprobs(
    llm: ChatLLM, prompt: str, continuations: Sequence[str]
) -> tuple[list[ContinuationScore], LLMResponse | None]:
    """Summed log-probability of each continuation after a plain-text ``prompt``.

    No chat template: cloze scoring reads the model as a language model, which is what
    small models are good at. The prompt is evaluated once per call; each continuation
    re-uses its KV cache (llama.cpp). Servers: one ``echo`` completion per continuation.
    Returns the scores and the call's usage record."""
    conts = list(continuations)
    if not conts:
        return [], None
    raw, r = _scored(llm, "continuations", [prompt, conts], _llama_continuations, _openai_continuations, prompt, conts)
    return [ContinuationScore(float(a), int(b)) for a, b in raw], r


def _llama_continuations(llm: ChatLLM, prompt: str, conts: list[str]) -> tuple[list[list[float]], int]:
    llama, lock = _llama_of(llm)
    out: list[list[float]] = []
    with lock:
        p_tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        room = llama.n_ctx() - 64
        if len(p_tokens) >= room:
            raise LLMError(f"scoring prompt of {len(p_tokens)} tokens does not fit n_ctx={llama.n_ctx()}")
        first = _log_softmax(_eval_prefix(llama, p_tokens))
        n_vocab = llama.n_vocab()
        base = len(p_tokens)
        for c in conts:
            # tokenise prompt + continuation together (a leading space merges into the
            # first word's token), then take the tokens after the prompt's
            full = llama.tokenize((prompt + c).encode("utf-8"), add_bos=True, special=False)
            c_tokens = (
                full[base:]
                if full[:base] == p_tokens
                else llama.tokenize(c.encode("utf-8"), add_bos=False, special=False)
            )
            c_tokens = c_tokens[: max(1, room - base)]
            if not c_tokens:
                out.append([FLOOR_LOGPROB, 1])
                continue
            total = float(first[c_tokens[0]])
            if len(c_tokens) > 1:
                llama.n_tokens = base
                for i, tok in enumerate(c_tokens[:-1]):
                    llama.eval([tok])
                    logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(n_vocab,))
                    total += float(_log_softmax(logits)[c_tokens[i + 1]])
            out.append([total, len(c_tokens)])
    return out, base


def _openai_continuations(llm: Any, prompt: str, conts: list[str]) -> tuple[list[list[float]], int]:
    out: list[list[float]] = []
    n_prompt = 0
    for c in conts:
        try:
            resp = llm._client.completions.create(
                model=llm._resolve_model(),
                prompt=prompt + c,
                max_tokens=1,
                temperature=0.0,
                echo=True,
                logprobs=1,
            )
            lp = resp.choices[0].logprobs
            offsets, values = list(lp.text_offset or []), list(lp.token_logprobs or [])
        except Exception as e:  # noqa: BLE001
            why = f"{type(e).__name__}: {e}"
            raise ScoringUnsupported(f"the endpoint cannot echo prompt log-probabilities: {why}") from e
        # the echoed tokens that start inside the continuation (the generated one excluded)
        n_echo = len(values) - 1 if len(values) > 1 else len(values)
        picked = [v for o, v in zip(offsets[:n_echo], values[:n_echo]) if o >= len(prompt) and v is not None]
        if not picked or any(not math.isfinite(v) for v in picked):
            raise ScoringUnsupported("the endpoint returned no log-probabilities for the continuation")
        out.append([float(sum(picked)), len(picked)])
        n_prompt += int(getattr(getattr(resp, "usage", None), "prompt_tokens", 0) or 0)
    return out, n_prompt
