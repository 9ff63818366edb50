"""LLM-judged scores of a finished eval run: RAGAS and nuggets, merged into ``summary.json``.

Why a separate step: judging costs many LLM calls per question and needs a *capable* judge
(the embedded 135M model yields undetermined RAGAS scores and fallback nuggets), so it is
off by default, can point at another endpoint than the run's answering model, and can be
re-run later on an existing run folder (``hoprank judge runs/NAME``).

Files written into the run folder::

    ragas.json     per-question RAGAS scores (None = undetermined, with the reason)
    nuggets.json   per-question V_strict / A_strict / V / A, fallbacks, LLM calls

Each file records ``rows_hash`` (ids, predictions, statuses and evidence of the rows) and
the judge (model, metrics): a second call on unchanged rows with the same judge reuses the
file and makes no LLM call; anything else recomputes it.

Failed questions are never dropped: their RAGAS scores are undetermined with the reason
``failed_question`` (counted in ``ragas.<metric>.undetermined``), their nugget scores are
0 (so they pull the means down, like the answer metrics do).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hoprank.evals import metrics as M
from hoprank.evals.datasets import QAExample
from hoprank.evals.results import RESULTS, SUMMARY, read_rows, summarize, write_json
from hoprank.tools.errors import HoprankError

RAGAS_FILE = "ragas.json"
NUGGETS_FILE = "nuggets.json"
JUDGES = ("ragas", "nuggets")
RAGAS_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall", "factual_correctness")
# the reference scores (nuggetizer: 0 for an empty group), then hoprank's variants that leave those out
NUGGET_METRICS = (
    "v_strict",
    "a_strict",
    "v",
    "a",
    "v_strict_determined_only",
    "a_strict_determined_only",
    "v_determined_only",
    "a_determined_only",
)
FAILED_REASON = "failed_question"
FILE_VERSION = 1

_RAGAS_DESC = {
    "faithfulness": "RAGAS faithfulness: share of the answer's statements supported by the retrieved evidence",
    "answer_relevancy": "RAGAS answer relevancy: cosine of questions generated back from the answer to the question",
    "context_precision": "RAGAS context precision (with reference): rank-weighted share of useful evidence chunks",
    "context_recall": "RAGAS context recall: share of the gold answer's statements attributable to the evidence",
    "factual_correctness": "RAGAS factual correctness (F1 of answer claims vs gold-answer claims)",
}
_NUGGET_DESC = {
    "v_strict": "nuggets V_strict: share of vital gold nuggets fully supported by the answer "
    "(no vital nugget = 0 as in nuggetizer; failed question = 0)",
    "a_strict": "nuggets A_strict: share of all gold nuggets fully supported by the answer (failed question = 0)",
    "v": "nuggets V: vital nuggets supported, partial support counting 0.5 (no vital nugget = 0; failed question = 0)",
    "a": "nuggets A: all nuggets supported, partial support counting 0.5 (failed question = 0)",
    **{
        f"{_m}_determined_only": f"hoprank variant of nuggets.{_m}: responses without a vital nugget (V) "
        "or without nuggets (A) left out instead of scoring 0"
        for _m in ("v_strict", "a_strict", "v", "a")
    },
}
for _family, _descs, _why in (
    ("ragas", _RAGAS_DESC, "judge output unparseable, missing input, failed question"),
    ("nuggets", _NUGGET_DESC, "no vital nugget, judge call failed"),
):
    for _m, _d in _descs.items():
        M.register_metric(f"{_family}.{_m}", _d + "; mean over determined questions", kind="judge")
        M.register_metric(
            f"{_family}.{_m}.undetermined",
            f"questions whose {_family}.{_m} is undetermined ({_why})",
            higher_is_better=False,
            kind="count",
        )
M.register_metric(
    "nuggets.fallbacks",
    "nugget fallbacks taken (sentence-split nuggets, defaulted vital/okay or support labels, failed calls); "
    "details in nuggets.json",
    higher_is_better=False,
    kind="count",
)
M.register_metric(
    "nuggets.fallback_nuggets",
    "questions scored against sentence-split fallback nuggets because the judge produced none",
    higher_is_better=False,
    kind="count",
)


# --------------------------------------------------------------------------- inputs


def rows_hash(rows: Sequence[dict[str, Any]]) -> str:
    """What the judged scores depend on in the rows (order-free: resumed runs append)."""
    key = sorted(
        [str(r.get("id")), r.get("prediction") or "", r.get("status") or "", list(r.get("evidence") or [])]
        for r in rows
    )
    return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode("utf-8")).hexdigest()


def _dedup(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(str(r["id"]), r)
    return list(seen.values())


def gold_documents(example: QAExample | None) -> tuple[str, ...]:
    """Gold evidence for nugget creation: the supporting paragraphs when the gold ids match
    the example's documents, else string supporting facts (MultiHop-RAG), else every
    document of the example; empty when there is no example (nuggets then come from the
    gold answer alone)."""
    if example is None:
        return ()

    def text(d: Any) -> str:
        return f"{d.title}. {d.text}" if d.title and not d.text.startswith(d.title) else d.text

    gold = set(example.gold_doc_ids)
    if gold:
        docs = [text(d) for d in example.documents if d.id in gold or d.title in gold]
        if docs:
            return tuple(docs)
        facts = [f for f in example.supporting_facts if isinstance(f, str) and f.strip()]
        if facts:
            return tuple(facts)
    return tuple(text(d) for d in example.documents)


ContextLookup = Callable[[dict[str, Any]], list[str]]


def _open_index(path: Path):
    from hoprank.tools.ingest.index import Index

    return Index.open(path)


def context_lookup(run_dir: Path, index: Any, examples: dict[str, QAExample]) -> tuple[ContextLookup, Counter]:
    """Map a row to the texts of its evidence chunk ids.

    Where the chunks live: ``index`` (an Index or its path), else the run's pooled index
    (``run/index``), else the distractor setting's per-question index. A chunk id found
    nowhere falls back to its document's text in the example (counted as ``missing``)."""
    stats: Counter = Counter()
    cache: dict[str, Any] = {}

    def get_index(row_id: str):
        if index is not None:
            if "shared" not in cache:
                cache["shared"] = _open_index(Path(index)) if isinstance(index, str | os.PathLike) else index
            return cache["shared"]
        if (run_dir / "index").exists():
            if "shared" not in cache:
                cache["shared"] = _open_index(run_dir / "index")
            return cache["shared"]
        safe = hashlib.sha1(row_id.encode("utf-8")).hexdigest()[:16]
        p = run_dir / "indexes" / safe
        if p.exists():
            return _open_index(p)
        return None

    def lookup(row: dict[str, Any]) -> list[str]:
        ids = list(row.get("evidence") or [])
        if not ids:
            return []
        idx = get_index(str(row["id"]))
        by_id = idx.chunk_by_id if idx is not None else {}
        ex = examples.get(str(row["id"]))
        docs = {d.id: d.text for d in ex.documents} if ex else {}
        docs.update({d.title: d.text for d in ex.documents if d.title} if ex else {})
        out = []
        for cid in ids:
            if cid in by_id:
                out.append(by_id[cid].text)
                stats["found"] += 1
                continue
            doc = cid.rsplit("#", 1)[0] if "#" in cid else cid
            if doc in docs:
                out.append(docs[doc])
                stats["from_example_document"] += 1
            else:
                stats["missing"] += 1
        return out

    return lookup, stats


# --------------------------------------------------------------------------- cached files


def _judge_id(llm: Any) -> dict[str, str]:
    return {
        "model": str(getattr(llm, "model_name", "") or type(llm).__name__),
        "backend": str(getattr(llm, "backend_name", "") or ""),
    }


def _load_reusable(path: Path, expect: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if all(doc.get(k) == v for k, v in expect.items()):
        return doc
    return None


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


# --------------------------------------------------------------------------- the two judges


def run_ragas(rows, lookup, llm, embedder, metrics, **kwargs) -> dict[str, Any]:
    """RAGAS over the answered rows; failed rows get undetermined ``failed_question``."""
    from hoprank.evals.ragas_eval import (
        RagasResult,
        RagasSample,
        RagasSampleResult,
        _normalise_metrics,
        ragas_scores,
    )

    names = _normalise_metrics(metrics)
    live = [r for r in rows if r.get("status") != "failed"]
    samples = [
        RagasSample(
            r.get("question") or "",
            r.get("prediction") or "",
            lookup(r),
            reference=r.get("gold") or None,
            id=str(r["id"]),
        )
        for r in live
    ]
    res = ragas_scores(samples, llm, embedder, names, **kwargs) if samples else None
    by_id = {s.id: s for s in res.samples} if res else {}
    merged: list[RagasSampleResult] = []
    for r in rows:
        rid = str(r["id"])
        if rid in by_id:
            merged.append(by_id[rid])
        else:
            merged.append(
                RagasSampleResult(rid, dict.fromkeys(names, float("nan")), dict.fromkeys(names, FAILED_REASON))
            )
    aggregates: dict[str, float | None] = {}
    undetermined: dict[str, int] = {}
    reasons: dict[str, dict[str, int]] = {}
    for n in names:
        ok = [s.scores[n] for s in merged if not math.isnan(s.scores[n])]
        aggregates[n] = sum(ok) / len(ok) if ok else None
        undetermined[n] = len(merged) - len(ok)
        reasons[n] = dict(Counter(s.reasons[n].split(":")[0] for s in merged if n in s.reasons))
    full = RagasResult(names, merged, aggregates, undetermined, reasons, llm_calls=res.llm_calls if res else 0)
    return full.to_dict()


def run_nuggets(rows, examples: dict[str, QAExample], llm, cache_dir: Path | None, **kwargs) -> dict[str, Any]:
    """Nugget scores of the answered rows; failed rows score 0 without any judge call."""
    from hoprank.evals.nuggets import NuggetItem, NuggetScores, nugget_eval

    live = [r for r in rows if r.get("status") != "failed"]
    items = [
        NuggetItem(
            str(r["id"]),
            r.get("question") or "",
            r.get("prediction") or "",
            gold_documents(examples.get(str(r["id"]))),
            gold_answer=r.get("gold") or None,
        )
        for r in live
    ]
    res = nugget_eval(items, llm, cache_dir=cache_dir, **kwargs) if items else None
    by_id = {s.qid: s for s in res.per_response} if res else {}
    per = [
        by_id.get(str(r["id"])) or NuggetScores(str(r["id"]), 0.0, 0.0, 0.0, 0.0, 0, 0, error=FAILED_REASON)
        for r in rows
    ]
    doc = res.to_dict() if res else {"fallbacks": {}, "calls": {}, "nugget_fallback_qids": []}
    from dataclasses import asdict

    doc["per_response"] = [asdict(s) for s in per]
    for s in doc["per_response"]:
        for m in NUGGET_METRICS:
            if isinstance(s[m], float) and math.isnan(s[m]):
                s[m] = None
    vals = {m: [s[m] for s in doc["per_response"] if s[m] is not None] for m in NUGGET_METRICS}
    doc["aggregates"] = {m: (sum(v) / len(v) if v else None) for m, v in vals.items()}
    doc["undetermined"] = {m: len(per) - len(vals[m]) for m in NUGGET_METRICS}
    doc["failed_questions"] = len(rows) - len(live)
    return doc


# --------------------------------------------------------------------------- flat metrics


def _ragas_flat(doc: dict[str, Any], ids: set[str] | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    samples = [s for s in doc.get("samples", []) if ids is None or s.get("id") in ids]
    for m in doc.get("metrics", []):
        vals = [s["scores"].get(m) for s in samples]
        ok = [float(v) for v in vals if v is not None]
        if ok:
            out[f"ragas.{m}"] = sum(ok) / len(ok)
        out[f"ragas.{m}.undetermined"] = float(len(vals) - len(ok))
    return out


def _nugget_flat(doc: dict[str, Any], ids: set[str] | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    per = [s for s in doc.get("per_response", []) if ids is None or s.get("qid") in ids]
    for m in NUGGET_METRICS:
        vals = [s.get(m) for s in per]
        ok = [float(v) for v in vals if v is not None]
        if ok:
            out[f"nuggets.{m}"] = sum(ok) / len(ok)
        out[f"nuggets.{m}.undetermined"] = float(len(vals) - len(ok))
    if ids is None:  # fallbacks are counted per run, not per question
        out["nuggets.fallbacks"] = float(
            sum(v for v in doc.get("fallbacks", {}).values() if isinstance(v, int | float))
        )
    out["nuggets.fallback_nuggets"] = float(sum(1 for s in per if s.get("nugget_fallback")))
    return out


def merge_into_summary(
    summary: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    ragas_doc: dict[str, Any] | None,
    nugget_doc: dict[str, Any] | None,
) -> dict[str, Any]:
    """Add the judged metrics (overall and per question type) under registered names."""
    families = [
        (p, d, f)
        for p, d, f in (("ragas.", ragas_doc, _ragas_flat), ("nuggets.", nugget_doc, _nugget_flat))
        if d is not None
    ]

    def put(target: dict[str, Any], flat: dict[str, float], prefix: str) -> None:
        for k in [k for k in target if k.startswith(prefix)]:
            del target[k]
        target.update({k: round(v, 6) for k, v in flat.items()})

    by_type: dict[str, set[str]] = {}
    for r in rows:
        by_type.setdefault(r.get("type") or "all", set()).add(str(r["id"]))
    metrics = summary.setdefault("metrics", {})
    descs = summary.setdefault("metric_descriptions", {})
    for prefix, doc, flat_fn in families:
        flat = flat_fn(doc)
        put(metrics, flat, prefix)
        for k in flat:
            descs[k] = M.describe(k).description
        for t, ids in by_type.items():
            if t in summary.setdefault("by_type", {}):
                put(summary["by_type"][t], flat_fn(doc, ids), prefix)
    return summary


def merge_cached(run_dir: str | Path, summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Re-add judged metrics from files that still match the rows (a resumed ``hoprank eval``
    rewrites summary.json; this keeps judged numbers that are still valid). No LLM calls."""
    run_dir = Path(run_dir)
    rows = _dedup(rows)
    h = rows_hash(rows)
    docs = []
    for name in (RAGAS_FILE, NUGGETS_FILE):
        doc = _load_reusable(run_dir / name, {"rows_hash": h, "version": FILE_VERSION})
        docs.append(doc["result"] if doc else None)
    return merge_into_summary(summary, rows, *docs)


# --------------------------------------------------------------------------- entry point


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-80:] or "judge"


def judge_run(
    run_dir: str | Path,
    examples: Sequence[QAExample] | None,
    index: Any,
    llm: Any,
    embedder: Any = None,
    ragas: bool = True,
    nuggets: bool = True,
    ragas_metrics: Sequence[str] = RAGAS_METRICS,
    nugget_cache: str | Path | None = None,
    *,
    force: bool = False,
    show_progress: bool = False,
    ragas_kwargs: dict[str, Any] | None = None,
    nugget_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Judge a finished run, write ragas.json / nuggets.json, merge into summary.json.

    ``index``: an Index or its path holding the evidence chunks; None looks in the run
    folder (pooled ``index/`` or the distractor per-question indexes). ``embedder``: a
    hoprank Embedder for answer relevancy (None: that metric is undetermined,
    ``no_embedder``). ``nugget_cache``: where nuggets are cached (default
    ``<run>/nugget_cache``; share one folder across runs of the same questions to pay
    creation once); a sub-folder per judge model keeps nuggets of different judges apart.
    Returns the updated summary."""
    run_dir = Path(run_dir)
    results = run_dir / RESULTS
    if not results.exists():
        raise HoprankError(
            f"{run_dir} is not an eval run folder (no {RESULTS}); run `hoprank eval --out {run_dir}` first"
        )
    if not (ragas or nuggets):
        raise HoprankError("nothing to judge: enable ragas and/or nuggets")
    rows = _dedup(read_rows(results))
    if not rows:
        raise HoprankError(f"{results} has no rows to judge")
    by_ex = {str(e.id): e for e in (examples or [])}
    if by_ex:  # dataset order, like the summary
        pos = {i: n for n, i in enumerate(by_ex)}
        rows.sort(key=lambda r: pos.get(str(r["id"]), len(pos)))
    h = rows_hash(rows)
    judge = _judge_id(llm)
    ragas_doc = nugget_doc = None

    if ragas:
        from hoprank.evals.ragas_eval import _normalise_metrics

        names = list(_normalise_metrics(ragas_metrics))
        expect = {"version": FILE_VERSION, "rows_hash": h, "judge": judge, "metrics": names}
        cached = None if force else _load_reusable(run_dir / RAGAS_FILE, expect)
        if cached is not None:
            ragas_doc = cached["result"]
        else:
            lookup, ctx_stats = context_lookup(run_dir, index, by_ex)
            kw = {"show_progress": show_progress, **(ragas_kwargs or {})}
            ragas_doc = run_ragas(rows, lookup, llm, embedder, names, **kw)
            write_json(run_dir / RAGAS_FILE, {**expect, "contexts": dict(ctx_stats), "result": ragas_doc})

    if nuggets:
        expect = {"version": FILE_VERSION, "rows_hash": h, "judge": judge}
        cached = None if force else _load_reusable(run_dir / NUGGETS_FILE, expect)
        if cached is not None:
            nugget_doc = cached["result"]
        else:
            base = Path(nugget_cache) if nugget_cache is not None else run_dir / "nugget_cache"
            kw = {"show_progress": show_progress, **(nugget_kwargs or {})}
            nugget_doc = run_nuggets(rows, by_ex, llm, base / _slug(judge["model"]), **kw)
            write_json(run_dir / NUGGETS_FILE, {**expect, "result": nugget_doc})

    summary_path = run_dir / SUMMARY
    if summary_path.exists():
        summary = json.loads(summary_path.read_text("utf-8"))
    else:
        summary = summarize(rows)
    summary = merge_into_summary(summary, rows, ragas_doc, nugget_doc)
    write_json(summary_path, summary)
    return summary


def parse_judges(spec: str | None) -> tuple[bool, bool]:
    """``--judge ragas,nuggets`` -> (ragas, nuggets); an unknown name is an error naming it."""
    if not spec:
        return False, False
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in JUDGES]
    if bad:
        raise HoprankError(
            f"--judge: unknown judge {', '.join(map(repr, bad))}; choose from {', '.join(JUDGES)} (comma-separated)"
        )
    return "ragas" in names, "nuggets" in names


def make_judge_llm(llm_cfg: Any, base_url: str | None = None, model: str | None = None, api_key: str | None = None):
    """The judge LLM: the run's LLM config, or an OpenAI-compatible endpoint when
    ``base_url`` is given (a 135M model is not a useful judge)."""
    from hoprank.tools.llm import make_llm

    data = llm_cfg.model_dump()
    if base_url:
        data.update(backend="openai", base_url=base_url)
        if data.get("model") and str(data["model"]).endswith(".gguf"):
            data["model"] = None
    if model:
        data["model"] = model
    if api_key:
        data["api_key"] = api_key
    if data.get("api_key") == "***":  # a redacted key from a run's config.json
        data["api_key"] = None
    # judges answer with JSON: give them room, whatever the run's short-answer budget was
    data["max_tokens"] = max(int(data.get("max_tokens") or 0), 512)
    return make_llm(type(llm_cfg).model_validate(data))
