"""The run manager: answer every gold question, score it, and write one JSONL row per question.

Reliability rules (DESIGN.md): a question that raises or times out becomes a row with status
``failed`` and zero scores -- counted, never dropped; rows are appended with flush + fsync
so a killed run loses at most the row being written; a restart with the same output folder
keeps the rows already written, skips their ids, tolerates a torn last line, and produces
the same ``summary.json`` as an uninterrupted run (the summary is computed from the rows in
dataset order, never from completion order, and uses each answer's own timing).

Run folder layout::

    results.jsonl   one row per question (see ``score_row``)
    summary.json    every aggregate under a registered metric name, plus ``by_type``
    run.json        dataset path + sha256, config, preset, package versions, setting
    index/          the pooled index (reused on resume)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from hoprank.evals import metrics as M
from hoprank.evals.datasets import QAExample, example_corpus, pooled_corpus
from hoprank.evals.judge import merge_cached
from hoprank.evals.results import RESULTS, RUN_INFO, SUMMARY, RowWriter, read_rows, summarize, write_json
from hoprank.tools.errors import DatasetFormatError, HoprankError
from hoprank.tools.types import Answer, Usage

AnswerFn = Callable[[str], Answer] | Callable[[str], Awaitable[Answer]]

DEFAULT_KS = (1, 2, 5, 10)
PACKAGES = (
    "hoprank",
    "numpy",
    "torch",
    "sentence-transformers",
    "llama-cpp-python",
    "bm25s",
    "rank-bm25",
    "qdrant-client",
    "langgraph",
    "langchain-core",
    "openai",
    "ragas",
    "pydantic",
)


class RunMismatchError(HoprankError, ValueError):
    """Resuming into a run folder made with another dataset, setting or configuration."""


@dataclass
class RunSpec:
    """What identifies a run; a resume must match it exactly (or rows would mix)."""

    dataset: str
    dataset_path: str | None = None
    dataset_sha256: str | None = None
    setting: str = "pooled"
    preset: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None

    def identity(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "dataset_sha256": self.dataset_sha256,
            "setting": self.setting,
            "preset": self.preset,
            "config": self.config,
        }


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def llm_settings(llm_config: dict[str, Any] | None) -> dict[str, Any] | None:
    """What decides the LLM's output, recorded in run.json: for the embedded llama.cpp model
    the effective seed, thread count, batch size, context and greedy decoding (a ``None``
    thread count is resolved to the number actually used); for an endpoint its model, seed
    and temperature (the server's own determinism is out of our hands)."""
    if not llm_config:
        return None
    from pydantic import ValidationError

    from hoprank.agent.config import LLMConfig

    try:
        cfg = LLMConfig.model_validate({k: v for k, v in llm_config.items() if k != "api_key"})
    except ValidationError:  # not a hoprank LLM config (a caller's own dict): record it as given
        return {k: v for k, v in llm_config.items() if k != "api_key"}
    if cfg.backend == "llamacpp":
        from hoprank.tools.llm.llamacpp import effective_settings

        try:
            return effective_settings(cfg)
        except HoprankError as e:  # no bundled model: still record what was asked for
            return {"backend": "llamacpp", "seed": cfg.seed, "n_threads": cfg.n_threads, "error": str(e)}
    return {
        "backend": cfg.backend,
        "model": cfg.model,
        "base_url": cfg.base_url,
        "seed": cfg.seed,
        "temperature": cfg.temperature,
        "greedy": cfg.temperature == 0.0,
    }


# --------------------------------------------------------------------------- scoring one row


def _doc_of(hit_id: str, doc_id: str | None) -> str:
    if doc_id:
        return doc_id
    return hit_id.rsplit("#", 1)[0] if "#" in hit_id else hit_id


def _usage(trace: dict[str, Any]) -> dict[str, float]:
    """The row's LLM accounting, read from an answer trace's ``usage`` (a
    :class:`~hoprank.tools.types.Usage` or its dict in any saved spelling).

    Calls and tokens include cache hits (``usage_of``), so the summary's cost.* is the same
    for a resumed run as for an uninterrupted one; the row also says how much the cache
    replayed (``cached_calls`` / ``cached_tokens``), which the summary leaves out. The row's
    key names (``llm_calls``, ``total_tokens``) are the ones saved results files have."""
    u = trace.get("usage") if isinstance(trace, dict) else None
    u = u if isinstance(u, Usage) else Usage.from_dict(u)
    return {
        "llm_calls": float(u.calls),
        "prompt_tokens": float(u.prompt_tokens),
        "completion_tokens": float(u.completion_tokens),
        "total_tokens": float(u.tokens),
        "cached_calls": float(u.cached_calls),
        "cached_tokens": float(u.cached_tokens),
    }


def _sub_queries(trace: dict[str, Any]) -> list[str]:
    """The agent's decomposition: the trace's ``subqueries``."""
    subs = trace.get("subqueries") if isinstance(trace, dict) else None
    return [str(x) for x in subs] if isinstance(subs, list) else []


def retrieval_scores(
    example: QAExample, answer: Answer | None, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float] | None:
    """Scores of the evidence ranking; None when the example has no gold evidence
    (MultiHop-RAG null_query, or a JSONL record without gold ids): it is then left out of
    retrieval aggregates instead of counted as a zero."""
    has_docs = bool(example.gold_doc_ids)
    facts = [f for f in example.supporting_facts if isinstance(f, str)]
    is_mhr = example.metadata.get("dataset") == "multihop-rag"
    if not has_docs and not (is_mhr and facts):
        return None
    evidence = list(answer.evidence) if answer is not None else []
    ranked_docs = M.dedup_keep_order(_doc_of(h.id, h.doc_id) for h in evidence)
    out: dict[str, float] = {}
    if has_docs:
        gold = example.gold_doc_ids
        for k in ks:
            out[f"recall@{k}"] = M.recall_at_k(ranked_docs, gold, k)
            out[f"both_gold@{k}"] = M.both_gold_at_k(ranked_docs, gold, k)
            out[f"hits@{k}"] = M.hits_at_k(ranked_docs, gold, k)
            out[f"mrr@{k}"] = M.mrr_at_k(ranked_docs, gold, k)
            out[f"ndcg@{k}"] = M.ndcg_at_k(ranked_docs, gold, k)
            out[f"map@{k}"] = M.map_at_k(ranked_docs, gold, k)
        out["sp_recall"] = M.recall_at_k(ranked_docs, gold, max(len(ranked_docs), 1))
        by_id = {h.id: _doc_of(h.id, h.doc_id) for h in evidence}
        cited = {by_id.get(c.chunk_id, _doc_of(c.chunk_id, None)) for c in (answer.citations if answer else [])}
        sp = M.supporting_paragraph_scores(cited, gold)
        out["sp_em"], out["sp_f1"] = sp["em"], sp["f1"]
    if is_mhr and facts:
        out.update(M.mhr_retrieval_scores([h.text for h in evidence], facts))
    return out


def answer_scores(example: QAExample, prediction: str) -> dict[str, float | None]:
    """Per-question answer scores. ``mhr_correct`` is MultiHop-RAG's reference judgement
    (None when the gold answer is empty: the reference skips those questions);
    ``word_overlap_lenient`` is hoprank's variant of it."""
    f1, p, r = M.f1_precision_recall(prediction, example.answer)
    return {
        "em": M.exact_match(prediction, example.answer),
        "f1": f1,
        "precision": p,
        "recall": r,
        "mhr_correct": M.mhr_qa_correct(prediction, example.answer),
        "word_overlap_lenient": M.word_overlap_lenient(prediction, example.answer),
    }


def score_row(
    example: QAExample,
    answer: Answer | None,
    seconds: float,
    error: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    score_retrieval: bool = True,
) -> dict[str, Any]:
    """One results.jsonl row. A failed question has zero answer scores (and zero retrieval
    scores when it has gold evidence), so it pulls the means down instead of vanishing."""
    failed = answer is None or answer.status == "failed"
    status = "failed" if answer is None else answer.status
    prediction = "" if answer is None else (answer.answer or "")
    err = error if answer is None else answer.error
    scores = answer_scores(example, prediction)
    retr = retrieval_scores(example, answer, ks) if score_retrieval else None
    if failed:
        scores = {k: None if v is None else 0.0 for k, v in scores.items()}
        retr = None if retr is None else {k: 0.0 for k in retr}
    trace = answer.trace if answer is not None and isinstance(answer.trace, dict) else {}
    t = trace.get("seconds")
    row = {
        "id": example.id,
        "question": example.question,
        "type": example.type,
        "level": example.level,
        "gold": example.answer,
        "gold_doc_ids": list(example.gold_doc_ids),
        "prediction": prediction,
        "status": status,
        "error": err,
        "citations": [c.chunk_id for c in answer.citations] if answer else [],
        "evidence": [h.id for h in answer.evidence] if answer else [],
        "evidence_docs": M.dedup_keep_order(_doc_of(h.id, h.doc_id) for h in answer.evidence) if answer else [],
        "answer": scores,
        "retrieval": retr,
        "tokens": _usage(trace),
        "seconds": round(float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else seconds, 4),
    }
    human = example.metadata.get("decomposition")
    if human:
        subs = _sub_queries(trace)
        row["decomposition"] = {"predicted": subs, **M.decomposition_match(subs, [s.question for s in human])}
    return row


# --------------------------------------------------------------------------- running


async def _call(answer_fn: AnswerFn, question: str, timeout_s: float | None) -> Answer:
    if inspect.iscoroutinefunction(answer_fn):
        coro = answer_fn(question)
    else:
        coro = asyncio.to_thread(answer_fn, question)
    result = await (asyncio.wait_for(coro, timeout_s) if timeout_s else coro)
    if inspect.isawaitable(result):  # a sync wrapper that returned a coroutine
        result = await (asyncio.wait_for(result, timeout_s) if timeout_s else result)
    if not isinstance(result, Answer):
        raise HoprankError(f"answer_fn returned {type(result).__name__}, expected hoprank.tools.types.Answer")
    return result


async def _answer_one(
    example: QAExample, answer_fn: AnswerFn, timeout_s: float | None, ks: Sequence[int], score_retrieval: bool = True
) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        ans = await _call(answer_fn, example.question, timeout_s)
        return score_row(example, ans, time.perf_counter() - t0, ks=ks, score_retrieval=score_retrieval)
    except asyncio.TimeoutError:
        error = f"timeout after {timeout_s:g}s"
    except Exception as e:  # every question ends answered or explicitly failed
        error = f"{type(e).__name__}: {e}"
    return score_row(example, None, time.perf_counter() - t0, error=error, ks=ks, score_retrieval=score_retrieval)


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="eval", unit="q", dynamic_ncols=True)


def _check_resume(out: Path, spec: RunSpec | None) -> None:
    info = out / RUN_INFO
    if spec is None or not info.exists():
        return
    try:
        old = json.loads(info.read_text("utf-8")).get("identity")
    except json.JSONDecodeError:
        return
    new = json.loads(json.dumps(spec.identity(), default=str))
    if old and old != new:
        diff = [k for k in new if old.get(k) != new.get(k)]
        raise RunMismatchError(
            f"{out} holds a run with a different {', '.join(diff)}; "
            "resume with the same settings or choose another --out"
        )


def run_eval(
    examples: Sequence[QAExample],
    answer_fn: AnswerFn | Callable[[QAExample], AnswerFn],
    out: str | Path,
    *,
    spec: RunSpec | None = None,
    concurrency: int = 1,
    timeout_s: float | None = None,
    per_example: bool = False,
    show_progress: bool = True,
    retry_failed: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
    score_retrieval: bool = True,
) -> dict[str, Any]:
    """Answer and score every example, resuming from ``out/results.jsonl`` if present.

    ``per_example=True`` means ``answer_fn(example)`` returns the answer function for that
    example (the distractor setting builds one small index per question).
    ``score_retrieval=False`` (closed-book runs) leaves retrieval metrics out entirely
    rather than reporting zeros for a retriever that never ran.
    Returns the summary (also written to ``out/summary.json``).
    """
    if not examples:
        raise DatasetFormatError("no questions to evaluate: the dataset (after --limit) is empty")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, spec)
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        raise HoprankError("example ids must be unique (they key the resume)")
    results = out / RESULTS
    rows = read_rows(results, repair=True)
    wanted = set(ids)
    rows = [r for r in rows if r.get("id") in wanted]
    if retry_failed and any(r.get("status") == "failed" for r in rows):
        rows = [r for r in rows if r.get("status") != "failed"]
        _rewrite(results, rows)
    done = {r["id"] for r in rows}
    if spec is not None:
        write_json(
            out / RUN_INFO,
            {
                "identity": json.loads(json.dumps(spec.identity(), default=str)),
                "dataset_path": spec.dataset_path,
                "limit": spec.limit,
                "packages": package_versions(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "llm": llm_settings(spec.config.get("llm") if isinstance(spec.config, dict) else None),
            },
        )
    todo = [e for e in examples if e.id not in done]
    writer = RowWriter(results)
    bar = _progress(len(examples), len(examples) - len(todo), show_progress)
    try:
        asyncio.run(
            _run_all(todo, answer_fn, per_example, writer, bar, max(1, concurrency), timeout_s, ks, score_retrieval)
        )
    finally:
        writer.close()
        bar.close()
    final = read_rows(results)
    seen: dict[str, dict[str, Any]] = {}
    for r in final:
        seen.setdefault(r["id"], r)  # never count a row twice
    summary = summarize([seen[i] for i in ids if i in seen], order=ids)
    summary["run"] = {
        "dataset": spec.dataset if spec else None,
        "setting": spec.setting if spec else None,
        "preset": spec.preset if spec else None,
        "n_expected": len(ids),
    }
    summary = _merge_judged(out, summary, [seen[i] for i in ids if i in seen])
    write_json(out / SUMMARY, summary, sort_keys=False)  # metrics keep their name-then-k order
    return summary


def _merge_judged(out: Path, summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A resumed run rewrites summary.json: keep the LLM-judged scores (``hoprank judge``)
    whose files still match the rows, so they do not silently vanish. No LLM calls."""
    if not ((out / "ragas.json").exists() or (out / "nuggets.json").exists()):
        return summary
    return merge_cached(out, summary, rows)


async def _run_all(todo, answer_fn, per_example, writer, bar, concurrency, timeout_s, ks, score_retrieval=True) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(ex: QAExample) -> None:
        async with sem:
            if per_example:
                try:
                    fn = await asyncio.to_thread(answer_fn, ex)
                except Exception as e:
                    row = score_row(
                        ex, None, 0.0, error=f"setup: {type(e).__name__}: {e}", ks=ks, score_retrieval=score_retrieval
                    )
                    writer.write(row)
                    bar.update(1)
                    return
            else:
                fn = answer_fn
            row = await _answer_one(ex, fn, timeout_s, ks, score_retrieval)
            writer.write(row)  # single event loop thread: writes never interleave
            bar.update(1)

    await asyncio.gather(*(one(ex) for ex in todo))


def _rewrite(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- indexes and agents


def build_pooled_index(
    examples: Sequence[QAExample],
    out: Path,
    *,
    qdrant: bool = False,
    chunking: Any = None,
    documents: Sequence[Any] | None = None,
    sources: Sequence[Any] | None = None,
    show_progress: bool = True,
):
    """One shared index in the run folder; a resumed run reopens it instead of re-embedding."""
    from hoprank.tools.ingest.index import Index

    path = Path(out) / "index"
    if Index.exists(path) and (path / ".complete").exists():
        return Index.open(path), path
    kwargs: dict[str, Any] = {"qdrant": qdrant, "show_progress": show_progress}
    if sources:
        kwargs["sources"] = list(sources)
    else:
        docs = list(documents) if documents is not None else pooled_corpus(examples)
        if not docs:
            raise HoprankError("the dataset has no documents to index (pass a corpus, or use a closed-book run)")
        kwargs["documents"] = docs
    if chunking is not None:
        kwargs["chunking"] = chunking
    idx, _ = Index.build(path, **kwargs)
    (path / ".complete").write_text("ok\n")
    return idx, path


def build_example_index(example: QAExample, root: Path, *, qdrant: bool = False):
    """The distractor setting: a small index over the question's own paragraphs."""
    import hashlib

    from hoprank.tools.ingest.index import Index

    safe = hashlib.sha1(example.id.encode("utf-8")).hexdigest()[:16]
    path = Path(root) / "indexes" / safe
    if Index.exists(path) and (path / ".complete").exists():
        return Index.open(path), path
    idx, _ = Index.build(path, documents=example_corpus(example), qdrant=qdrant, show_progress=False)
    (path / ".complete").write_text("ok\n")
    return idx, path


def agent_answer_fn(config: Any, index: Any, llm: Any = None) -> Callable[[str], Answer]:
    """The default answer function: the real agent (``hoprank.agent.app.api.Agent``).

    Pass ``llm`` to share one loaded model between many agents (distractor setting)."""
    try:
        from hoprank.agent.app.api import Agent
    except ImportError as e:
        raise HoprankError(f"the hoprank agent is not available ({e}); pass an answer_fn") from None
    agent = Agent.from_config(config, index=index, llm=llm)
    return agent.ask


def make_llm(llm_cfg: Any):
    """An LLM client from an ``LLMConfig``: the project factory, imported when first needed
    (a run that scores saved rows never loads the LLM layer)."""
    from hoprank.tools.llm import make_llm as factory

    return factory(llm_cfg)


def closed_book_answer_fn(llm: Any, max_tokens: int = 32) -> Callable[[str], Answer]:
    """Answer from the LLM's own knowledge (no retrieval): MultiHop-RAG without its corpus."""
    from hoprank.prompts import chat
    from hoprank.tools.llm.base import usage_of

    def answer(question: str) -> Answer:
        t0 = time.perf_counter()
        r = llm.chat(chat("closed_book", question=question), max_tokens=max_tokens)
        text = (r.text or "").strip().splitlines()[0].strip() if (r.text or "").strip() else ""
        usage = usage_of(r).to_dict()  # a cache hit counts like a paid call: a resumed run's cost is unchanged
        return Answer(
            question=question,
            answer=text,
            status="answered" if text else "not_found",
            trace={"usage": usage, "seconds": time.perf_counter() - t0, "mode": "closed_book"},
        )

    return answer
