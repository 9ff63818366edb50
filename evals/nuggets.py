"""Nugget evaluation in the AutoNuggetizer scheme (castorini/nuggetizer), robust to small LLMs.

Stages, each with its own record type so a run can be inspected stage by stage:

1. **create** (:func:`create_nuggets`): the judge LLM reads the question and the gold
   evidence in windows of 10 documents and iteratively updates a list of atomic nuggets
   (1-12 words each, at most 30). Prompt: ``prompts/nugget_create.{system,user}.txt``.
2. **score** (:func:`score_nuggets`): each nugget is labelled ``vital`` or ``okay``, in
   windows of 10 nuggets. Prompt: ``prompts/nugget_score.*.txt``.
3. **assign** (:func:`assign_nuggets`): each nugget is judged against one response as
   ``support`` / ``partial_support`` / ``not_support``, windows of 10 nuggets. Prompt:
   ``prompts/nugget_assign.*.txt``.
4. **metrics** (:func:`calculate_nugget_scores`): per response
   ``V_strict = supported vital / vital``, ``A_strict = supported / all``,
   ``V = (support + 0.5 partial) / vital``, ``A`` the same over all nuggets; the global
   score is the mean over responses. Exactly nuggetizer's ``metrics.py``: a response with
   no vital nugget scores V = V_strict = 0.0, one with no nuggets at all 0.0 everywhere, and
   the global score is the mean over *all* responses.

Why the fallbacks: a 135M model often returns prose, a truncated list, or the prompt
echoed back. Rather than retrying hundreds of times (the reference retries up to 500), each
stage degrades deterministically and *counts* it in :attr:`NuggetResult.fallbacks`:

* no parseable nuggets after every window -> nuggets from a sentence split of the gold
  answer and evidence (``NuggetSet.fallback`` is True, flagged in the output);
* an unparseable / missing importance label -> ``okay``;
* an unparseable / missing assignment label -> ``not_support``.

The headline scores are the reference's. hoprank's variant, under its own names
(``v_strict_determined_only`` ...), leaves a response out of the mean where the reference's
denominator is empty (no vital nugget for V/V_strict, no nugget for A/A_strict) instead of
counting it 0: "the answer got none of the vital facts" and "there were no vital facts to
get" are different findings. One case the reference does not have: a response whose
assignment *call* failed (endpoint error, not garbage; the reference retries until it
succeeds) is marked failed with NaN scores in every variant and counted, never scored 0.

Nuggets are cached on disk (``<cache_dir>/<qid>-<hash>.json``, the hash covering the
question, gold answer and evidence), so re-scoring another run of the same questions makes
no creation or scoring calls. A nugget set built while the LLM was failing is not cached.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import statistics
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hoprank.evals.metrics import nan_to_none
from hoprank.prompts import chat as render_chat
from hoprank.tools.llm.base import ChatLLM

Importance = Literal["vital", "okay"]
Assignment = Literal["support", "partial_support", "not_support"]

CACHE_VERSION = 1
MAX_NUGGETS = 30
MAX_NUGGET_WORDS = 12
WINDOW = 10


# ---- stage records -------------------------------------------------------------------


@dataclass(frozen=True)
class NuggetItem:
    """One response to judge: the question, the response, and the gold material."""

    qid: str
    question: str
    response: str
    documents: tuple[str, ...] = ()  # gold evidence / documents, in order
    gold_answer: str | None = None


@dataclass(frozen=True)
class ScoredNugget:
    text: str
    importance: Importance


@dataclass(frozen=True)
class NuggetSet:
    """The created + scored nuggets of one question (what the cache stores)."""

    qid: str
    question: str
    key: str
    nuggets: tuple[ScoredNugget, ...]
    fallback: bool = False  # True: nuggets come from the deterministic sentence split
    fallbacks: dict[str, int] = field(default_factory=dict)
    creator_model: str = ""
    cached: bool = False
    trace: tuple[str, ...] = ()  # raw LLM outputs, in call order


@dataclass(frozen=True)
class AssignedNugget:
    text: str
    importance: Importance
    assignment: Assignment


@dataclass(frozen=True)
class NuggetScores:
    """Scores of one response. ``v_strict`` ... ``a`` are the reference's (0.0 over an empty
    group); the ``*_determined_only`` variants are None where that group is empty. NaN in
    every field means the judge call failed."""

    qid: str
    v_strict: float
    a_strict: float
    v: float
    a: float
    n_vital: int
    n_nuggets: int
    assigned: tuple[AssignedNugget, ...] = ()
    nugget_fallback: bool = False
    error: str | None = None
    v_strict_determined_only: float | None = None
    a_strict_determined_only: float | None = None
    v_determined_only: float | None = None
    a_determined_only: float | None = None

    def __post_init__(self) -> None:
        # derived from the reference fields, so every constructor (tests, the judge's
        # failed-question rows) gets consistent variants without repeating the rule
        for m in METRICS:
            ref = getattr(self, m)
            empty = (self.n_vital if m.startswith("v") else self.n_nuggets) == 0
            value = None if empty or math.isnan(ref) else ref
            object.__setattr__(self, f"{m}_determined_only", value)


@dataclass
class NuggetResult:
    per_response: list[NuggetScores]
    # the four reference scores (mean over every response whose judge call succeeded) and
    # their *_determined_only variants (mean over responses with a non-empty group); None if none
    aggregates: dict[str, float | None]
    undetermined: dict[str, int]  # per metric (variants included): responses left out of its mean
    fallbacks: dict[str, int]  # every fallback taken, by kind
    calls: dict[str, int]  # LLM calls per stage, and cache hits
    nugget_sets: dict[str, NuggetSet] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return nan_to_none(
            {
                "per_response": [asdict(s) for s in self.per_response],
                "aggregates": self.aggregates,
                "undetermined": self.undetermined,
                "fallbacks": self.fallbacks,
                "calls": self.calls,
                "nugget_fallback_qids": sorted(q for q, s in self.nugget_sets.items() if s.fallback),
            }
        )


METRICS = ("v_strict", "a_strict", "v", "a")
DETERMINED_ONLY = tuple(f"{m}_determined_only" for m in METRICS)


# ---- parsing (survives garbage) ------------------------------------------------------

_LIST = re.compile(r"\[.*?\]", re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.+?)\s*$")


def parse_string_list(text: str) -> list[str] | None:
    """A list of strings from model text: Python/JSON list, else bullet or numbered lines.

    Returns None when nothing list-like is found (the caller counts a fallback)."""
    if not text or not text.strip():
        return None
    cleaned = re.sub(r"```(?:python|json)?", "", text).strip()
    candidates = [cleaned] + [m.group(0) for m in _LIST.finditer(cleaned)]
    if "[" in cleaned and "]" in cleaned:
        candidates.append(cleaned[cleaned.index("[") : cleaned.rindex("]") + 1])
    for cand in candidates:
        for loader in (json.loads, ast.literal_eval):
            try:
                value = loader(cand)
            except Exception:
                continue
            if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
                return [v for v in value]
    lines = [m.group(1) for line in cleaned.splitlines() if (m := _BULLET.match(line))]
    return lines or None


def clean_nuggets(raw: Sequence[str], fallbacks: Counter) -> list[str]:
    """Strip, dedupe, drop nuggets outside 1-12 words (counted), cap at 30."""
    out: list[str] = []
    seen: set[str] = set()
    for item in raw:
        text = " ".join(str(item).strip().strip("\"'").split())
        words = text.split()
        if not words:
            continue
        if len(words) > MAX_NUGGET_WORDS:
            fallbacks["create_dropped_too_long"] += 1
            continue
        key = text.lower().rstrip(".")
        if key in seen:
            continue
        seen.add(key)
        out.append(text)
    return out[:MAX_NUGGETS]


_IMPORTANCE = re.compile(r"\b(vital|okay|ok)\b", re.IGNORECASE)
_ASSIGN = re.compile(r"(partial_support|not_support|support)")


def parse_labels(text: str, n: int, kind: Literal["importance", "assignment"]) -> tuple[list[str], int]:
    """Exactly ``n`` labels from model text and how many had to be defaulted.

    Labels are read in order wherever they appear (a list, prose, one per line); missing
    ones take the default (``okay`` / ``not_support``); extra ones are ignored."""
    default = "okay" if kind == "importance" else "not_support"
    found: list[str] = []
    if text:
        if kind == "importance":
            found = ["okay" if m.group(1).lower() == "ok" else m.group(1).lower() for m in _IMPORTANCE.finditer(text)]
        else:
            norm = re.sub(r"(partial|not)[\s\-]+support", r"\1_support", text.lower())
            found = [m.group(1) for m in _ASSIGN.finditer(norm)]
    labels = found[:n]
    missing = n - len(labels)
    return labels + [default] * missing, missing


_SENT = re.compile(r"(?<=[.!?])\s+|\n+")


def fallback_nuggets(gold_answer: str | None, documents: Sequence[str]) -> list[str]:
    """Deterministic nuggets when the LLM gave none: the gold answer first, then evidence
    sentences, each cut into pieces of at most 12 words (so the 1-12 word rule holds)."""
    out: list[str] = []
    seen: set[str] = set()
    texts = ([gold_answer] if gold_answer and gold_answer.strip() else []) + list(documents)
    for text in texts:
        for sent in _SENT.split(text):
            words = sent.strip().lstrip("#").split()
            for i in range(0, len(words), MAX_NUGGET_WORDS):
                piece = " ".join(words[i : i + MAX_NUGGET_WORDS]).strip()
                if piece and piece.lower() not in seen:
                    seen.add(piece.lower())
                    out.append(piece)
                if len(out) >= MAX_NUGGETS:
                    return out
    return out


# ---- stages --------------------------------------------------------------------------


def _call(llm: ChatLLM, messages: list[dict[str, str]], max_tokens: int) -> str:
    return llm.chat(messages, max_tokens=max_tokens, temperature=0.0).text or ""


def _truncate_words(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " ..."


def create_nuggets(
    question: str,
    documents: Sequence[str],
    llm: ChatLLM,
    gold_answer: str | None = None,
    *,
    window: int = WINDOW,
    max_nuggets: int = MAX_NUGGETS,
    doc_max_words: int = 300,
    max_tokens: int = 256,
    fallbacks: Counter | None = None,
    trace: list[str] | None = None,
    calls: Counter | None = None,
) -> tuple[list[str], bool, bool]:
    """Iterative nugget creation; returns (nuggets, used_fallback, llm_failed).

    The gold answer, when given, is shown as the first document: for short-answer datasets
    (HotpotQA) it is the single most important fact."""
    fallbacks = fallbacks if fallbacks is not None else Counter()
    calls = calls if calls is not None else Counter()
    docs = ([f"Answer: {gold_answer}"] if gold_answer and gold_answer.strip() else []) + list(documents)
    current: list[str] = []
    llm_failed = False
    for start in range(0, len(docs), window):
        block = docs[start : start + window]
        context = "\n".join(f"[{start + i + 1}] {_truncate_words(d, doc_max_words)}" for i, d in enumerate(block))
        messages = render_chat(
            "nugget_create",
            query=question,
            context=context,
            nuggets=json.dumps(current, ensure_ascii=False),
            nuggets_length=len(current),
            max_nuggets=max_nuggets,
        )
        calls["create"] += 1
        try:
            text = _call(llm, messages, max_tokens)
        except Exception as e:  # endpoint failure: keep what we have, say so
            fallbacks["create_llm_error"] += 1
            llm_failed = True
            if trace is not None:
                trace.append(f"<error: {e}>")
            continue
        if trace is not None:
            trace.append(text)
        parsed = parse_string_list(text)
        if parsed is None:
            fallbacks["create_unparseable"] += 1
            continue
        cleaned = clean_nuggets(parsed, fallbacks)
        if not cleaned:
            fallbacks["create_unparseable"] += 1
            continue
        current = cleaned[:max_nuggets]
    if current:
        return current, False, llm_failed
    fallbacks["create_fallback_sentence_split"] += 1
    return fallback_nuggets(gold_answer, documents)[:max_nuggets], True, llm_failed


def score_nuggets(
    question: str,
    nuggets: Sequence[str],
    llm: ChatLLM,
    *,
    window: int = WINDOW,
    max_tokens: int = 128,
    fallbacks: Counter | None = None,
    trace: list[str] | None = None,
    calls: Counter | None = None,
) -> tuple[list[ScoredNugget], bool]:
    """Label nuggets vital / okay; returns (scored nuggets, llm_failed)."""
    fallbacks = fallbacks if fallbacks is not None else Counter()
    calls = calls if calls is not None else Counter()
    out: list[ScoredNugget] = []
    llm_failed = False
    for start in range(0, len(nuggets), window):
        block = list(nuggets[start : start + window])
        messages = render_chat(
            "nugget_score",
            query=question,
            nuggets=json.dumps(block, ensure_ascii=False),
            num_nuggets=len(block),
        )
        calls["score"] += 1
        try:
            text = _call(llm, messages, max_tokens)
        except Exception as e:
            text, llm_failed = "", True
            fallbacks["score_llm_error"] += 1
            if trace is not None:
                trace.append(f"<error: {e}>")
        else:
            if trace is not None:
                trace.append(text)
        labels, missing = parse_labels(text, len(block), "importance")
        fallbacks["score_default_okay"] += missing
        out.extend(ScoredNugget(t, lab) for t, lab in zip(block, labels))  # type: ignore[arg-type]
    # the reference orders vital before okay; stable within each group
    out.sort(key=lambda n: 0 if n.importance == "vital" else 1)
    return out, llm_failed


def assign_nuggets(
    question: str,
    response: str,
    nuggets: Sequence[ScoredNugget],
    llm: ChatLLM,
    *,
    window: int = WINDOW,
    max_tokens: int = 128,
    response_max_words: int = 600,
    fallbacks: Counter | None = None,
    calls: Counter | None = None,
) -> list[AssignedNugget]:
    """Judge each nugget against the response. An LLM *call* failure raises (the caller
    marks the response failed); garbage output defaults to ``not_support`` (counted)."""
    fallbacks = fallbacks if fallbacks is not None else Counter()
    calls = calls if calls is not None else Counter()
    out: list[AssignedNugget] = []
    passage = _truncate_words(response, response_max_words)
    for start in range(0, len(nuggets), window):
        block = list(nuggets[start : start + window])
        messages = render_chat(
            "nugget_assign",
            query=question,
            passage=passage,
            nuggets=json.dumps([n.text for n in block], ensure_ascii=False),
            num_nuggets=len(block),
        )
        calls["assign"] += 1
        text = _call(llm, messages, max_tokens)
        labels, missing = parse_labels(text, len(block), "assignment")
        fallbacks["assign_default_not_support"] += missing
        out.extend(AssignedNugget(n.text, n.importance, lab) for n, lab in zip(block, labels))  # type: ignore[arg-type]
    return out


def calculate_nugget_scores(
    qid: str, assigned: Sequence[AssignedNugget], nugget_fallback: bool = False
) -> NuggetScores:
    """The four AutoNuggetizer scores of one response, as nuggetizer's ``metrics.py``
    computes them: 0.0 where the group (vital, or all) is empty. The
    ``*_determined_only`` variants (None there) are derived by :class:`NuggetScores`."""
    vital = [n for n in assigned if n.importance == "vital"]

    def score(group: Sequence[AssignedNugget], partial: float) -> float:
        if not group:
            return 0.0
        full = sum(1 for n in group if n.assignment == "support")
        half = sum(partial for n in group if n.assignment == "partial_support")
        return (full + half) / len(group)

    return NuggetScores(
        qid=qid,
        v_strict=score(vital, 0.0),
        a_strict=score(assigned, 0.0),
        v=score(vital, 0.5),
        a=score(assigned, 0.5),
        n_vital=len(vital),
        n_nuggets=len(assigned),
        assigned=tuple(assigned),
        nugget_fallback=nugget_fallback,
    )


# ---- cache ---------------------------------------------------------------------------


def nugget_key(qid: str, question: str, documents: Sequence[str], gold_answer: str | None) -> str:
    h = hashlib.sha256(
        json.dumps([question, gold_answer or "", list(documents)], ensure_ascii=False).encode()
    ).hexdigest()[:16]
    safe_qid = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(qid))[:80] or "q"
    return f"{safe_qid}-{h}"


class NuggetCache:
    """One JSON file per question; writes are atomic so a killed run leaves no torn file."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> NuggetSet | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            if d.get("version") != CACHE_VERSION:
                return None
            nuggets = tuple(
                ScoredNugget(n["text"], "vital" if n["importance"] == "vital" else "okay") for n in d["nuggets"]
            )
            return NuggetSet(
                qid=d["qid"],
                question=d["question"],
                key=key,
                nuggets=nuggets,
                fallback=bool(d.get("fallback")),
                fallbacks=dict(d.get("fallbacks", {})),
                creator_model=d.get("creator_model", ""),
                cached=True,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a corrupt entry is rebuilt, not trusted

    def put(self, ns: NuggetSet) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": CACHE_VERSION,
            "qid": ns.qid,
            "question": ns.question,
            "key": ns.key,
            "fallback": ns.fallback,
            "fallbacks": ns.fallbacks,
            "creator_model": ns.creator_model,
            "nuggets": [{"text": n.text, "importance": n.importance} for n in ns.nuggets],
        }
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, ensure_ascii=False, indent=1)
        os.replace(tmp, self.path(ns.key))


# ---- pipeline ------------------------------------------------------------------------


def build_nugget_set(
    qid: str,
    question: str,
    documents: Sequence[str],
    llm: ChatLLM,
    gold_answer: str | None = None,
    cache: NuggetCache | None = None,
    calls: Counter | None = None,
    score_kwargs: dict[str, Any] | None = None,
    **kw: Any,
) -> NuggetSet:
    """Create + score (or load from cache) the nuggets of one question."""
    calls = calls if calls is not None else Counter()
    key = nugget_key(qid, question, documents, gold_answer)
    if cache is not None and (hit := cache.get(key)) is not None:
        calls["cache_hits"] += 1
        return hit
    fb: Counter = Counter()
    trace: list[str] = []
    texts, used_fallback, failed_c = create_nuggets(
        question, documents, llm, gold_answer, fallbacks=fb, trace=trace, calls=calls, **kw
    )
    scored, failed_s = score_nuggets(
        question, texts, llm, fallbacks=fb, trace=trace, calls=calls, **(score_kwargs or {})
    )
    ns = NuggetSet(
        qid=qid,
        question=question,
        key=key,
        nuggets=tuple(scored),
        fallback=used_fallback,
        fallbacks=dict(fb),
        creator_model=getattr(llm, "model_name", ""),
        trace=tuple(trace),
    )
    if cache is not None and not (failed_c or failed_s):
        cache.put(ns)
    return ns


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the determined values (None / NaN left out). ``statistics.mean`` as in the
    reference, so the global scores agree to the last bit."""
    ok = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.mean(ok) if ok else None


def _undetermined(values: Sequence[float | None]) -> int:
    return sum(1 for v in values if v is None or math.isnan(v))


def global_scores(per: Sequence[NuggetScores]) -> tuple[dict[str, float | None], dict[str, int]]:
    """(means, left-out counts) per metric: the reference's global mean over all responses
    (only failed judge calls left out) and the ``*_determined_only`` means."""
    names = METRICS + DETERMINED_ONLY
    return (
        {m: _mean([getattr(s, m) for s in per]) for m in names},
        {m: _undetermined([getattr(s, m) for s in per]) for m in names},
    )


def nugget_eval(
    items: Sequence[NuggetItem] | NuggetItem,
    llm: ChatLLM,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    show_progress: bool = False,
    create_kwargs: dict[str, Any] | None = None,
    max_tokens: int | None = None,
) -> NuggetResult:
    """Score responses with nuggets. Several items may share a question (several runs):
    the nuggets of a question are built once and reused (and reused across runs through
    ``cache_dir``)."""
    items = [items] if isinstance(items, NuggetItem) else list(items)
    create_kwargs = dict(create_kwargs or {})
    stage_kw: dict[str, Any] = {}
    if max_tokens is not None:  # one cap for every stage (small models ramble)
        create_kwargs.setdefault("max_tokens", max_tokens)
        stage_kw["max_tokens"] = max_tokens
    cache = NuggetCache(cache_dir) if cache_dir is not None else None
    calls: Counter = Counter()
    fallbacks: Counter = Counter()
    sets: dict[str, NuggetSet] = {}
    per: list[NuggetScores] = []
    iterator: Any = items
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc="nugget eval", unit="response")
    for it in iterator:
        key = nugget_key(it.qid, it.question, it.documents, it.gold_answer)
        ns = sets.get(key)
        if ns is None:
            ns = build_nugget_set(
                it.qid,
                it.question,
                it.documents,
                llm,
                it.gold_answer,
                cache=cache,
                calls=calls,
                score_kwargs=stage_kw,
                **create_kwargs,
            )
            sets[key] = ns
            if not ns.cached:  # fallbacks of a cached set were counted in the run that built it
                fallbacks.update(ns.fallbacks)
        if ns.fallback:
            fallbacks["responses_on_fallback_nuggets"] += 1
        try:
            assigned = assign_nuggets(
                it.question,
                it.response or "",
                ns.nuggets,
                llm,
                fallbacks=fallbacks,
                calls=calls,
                **stage_kw,
            )
        except Exception as e:
            nan = float("nan")
            fallbacks["assign_llm_error"] += 1
            per.append(
                NuggetScores(
                    it.qid,
                    nan,
                    nan,
                    nan,
                    nan,
                    sum(n.importance == "vital" for n in ns.nuggets),
                    len(ns.nuggets),
                    nugget_fallback=ns.fallback,
                    error=f"{type(e).__name__}: {e}",
                )
            )
            continue
        per.append(calculate_nugget_scores(it.qid, assigned, nugget_fallback=ns.fallback))
    aggregates, undetermined = global_scores(per)
    for k in ("create_fallback_sentence_split", "score_default_okay", "assign_default_not_support"):
        fallbacks.setdefault(k, 0)
    calls_out = {k: int(calls.get(k, 0)) for k in ("create", "score", "assign", "cache_hits")}
    return NuggetResult(
        per_response=per,
        aggregates=aggregates,
        undetermined=undetermined,
        fallbacks=dict(fallbacks),
        calls=calls_out,
        nugget_sets={s.qid: s for s in sets.values()},
    )
