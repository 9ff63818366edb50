"""Dataset loaders: every benchmark becomes a list of :class:`QAExample`.

One record type for all datasets lets the runner, the metrics and the reports ignore where
a question came from. Loaders are strict: a record without a required field raises
:class:`DatasetFormatError` naming the file, the record and the field, because a silently
skipped question biases every aggregate computed afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hoprank.tools.errors import DatasetFormatError, MissingExtraError, OfflineError
from hoprank.tools.types import Document

__all__ = [
    "QAExample",
    "FanOutSubQuestion",
    "load_hotpotqa",
    "load_hotpotqa_hf",
    "pooled_corpus",
    "load_multihop_rag",
    "load_multihop_rag_corpus",
    "chunk_multihop_rag_corpus",
    "load_fanoutqa_dev",
    "fanoutqa_dev_path",
    "load_jsonl",
    "load_dataset",
    "example_corpus",
    "file_sha256",
]


@dataclass(frozen=True)
class QAExample:
    """One gold question.

    ``gold_doc_ids`` are document ids in the corpus the question is asked over (HotpotQA:
    the supporting paragraph titles; MultiHop-RAG: the evidence article titles).
    ``supporting_facts`` holds ``(title, sent_id)`` pairs (HotpotQA) or evidence strings
    (MultiHop-RAG facts, JSONL supporting facts). ``documents`` are the example's own
    paragraphs (the HotpotQA distractor setting ranks exactly these).
    """

    id: str
    question: str
    answer: str
    type: str = ""
    level: str | None = None
    gold_doc_ids: list[str] = field(default_factory=list)
    supporting_facts: list[Any] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def file_sha256(path: str | Path) -> str:
    """Content hash recorded next to every run, so results name the exact data they used."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"dataset file not found: {path}")
    try:
        return json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({e.reason})") from None


def _where(path: Path, index: int, rec: Any) -> str:
    rid = None
    if isinstance(rec, dict):
        rid = rec.get("_id", rec.get("id"))
    return f"{path}: record {index}" + (f" (id {rid!r})" if rid is not None else "")


def _require(rec: Any, key: str, path: Path, index: int, kinds: type | tuple[type, ...] | None = None) -> Any:
    if not isinstance(rec, dict):
        raise DatasetFormatError(f"{_where(path, index, rec)}: expected a JSON object, got {type(rec).__name__}")
    if key not in rec or rec[key] is None:
        raise DatasetFormatError(f"{_where(path, index, rec)}: missing field '{key}'")
    value = rec[key]
    if kinds is not None and not isinstance(value, kinds):
        names = kinds.__name__ if isinstance(kinds, type) else "/".join(k.__name__ for k in kinds)
        raise DatasetFormatError(
            f"{_where(path, index, rec)}: field '{key}' must be {names}, got {type(value).__name__}"
        )
    return value


def _stable_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]
    return f"{prefix}{digest}"


def _as_list(data: Any, path: Path) -> list[Any]:
    if isinstance(data, dict):
        for key in ("data", "examples", "questions", "queries"):
            if isinstance(data.get(key), list):
                return data[key]
        raise DatasetFormatError(f"{path}: expected a JSON list of records (or {{'data': [...]}})")
    if not isinstance(data, list):
        raise DatasetFormatError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------- HotpotQA


def _hotpot_paragraphs(rec: dict[str, Any], path: Path, i: int) -> list[tuple[str, list[str]]]:
    ctx = _require(rec, "context", path, i, (list, dict))
    if isinstance(ctx, dict):  # Hugging Face: {title: [...], sentences: [[...], ...]}
        titles = ctx.get("title")
        sents = ctx.get("sentences")
        if not isinstance(titles, list) or not isinstance(sents, list) or len(titles) != len(sents):
            raise DatasetFormatError(
                f"{_where(path, i, rec)}: field 'context' must hold equal-length lists 'title' and 'sentences'"
            )
        pairs = list(zip(titles, sents))
    else:  # official: [[title, [sentences]], ...]
        pairs = []
        for p in ctx:
            if not (isinstance(p, (list, tuple)) and len(p) == 2):
                raise DatasetFormatError(
                    f"{_where(path, i, rec)}: field 'context' entries must be [title, [sentences]]"
                )
            pairs.append((p[0], p[1]))
    out = []
    for title, sentences in pairs:
        if not isinstance(title, str) or not isinstance(sentences, list):
            raise DatasetFormatError(
                f"{_where(path, i, rec)}: field 'context' has a paragraph without title or sentences"
            )
        out.append((title, [str(s) for s in sentences]))
    return out


def _hotpot_facts(rec: dict[str, Any], path: Path, i: int) -> list[tuple[str, int]]:
    sf = rec.get("supporting_facts", [])
    if sf is None:
        return []
    if isinstance(sf, dict):  # Hugging Face: {title: [...], sent_id: [...]}
        titles, ids = sf.get("title"), sf.get("sent_id")
        if not isinstance(titles, list) or not isinstance(ids, list) or len(titles) != len(ids):
            raise DatasetFormatError(
                f"{_where(path, i, rec)}: field 'supporting_facts' must hold equal-length lists 'title' and 'sent_id'"
            )
        return [(str(t), int(s)) for t, s in zip(titles, ids)]
    if isinstance(sf, list):
        out = []
        for f in sf:
            if not (isinstance(f, (list, tuple)) and len(f) == 2):
                raise DatasetFormatError(
                    f"{_where(path, i, rec)}: field 'supporting_facts' entries must be [title, sent_id]"
                )
            out.append((str(f[0]), int(f[1])))
        return out
    raise DatasetFormatError(f"{_where(path, i, rec)}: field 'supporting_facts' must be a list or a mapping")


def hotpot_record_to_example(rec: dict[str, Any], path: Path, i: int) -> QAExample:
    """Both layouts (official and Hugging Face) into one :class:`QAExample`."""
    question = _require(rec, "question", path, i, str)
    answer = _require(rec, "answer", path, i, str)
    paragraphs = _hotpot_paragraphs(rec, path, i)
    facts = _hotpot_facts(rec, path, i)
    rid = rec.get("_id", rec.get("id"))
    ex_id = str(rid) if rid not in (None, "") else _stable_id("hp-", question, answer)
    docs = [
        Document(
            id=title,
            text="".join(sentences).strip(),
            title=title,
            source="hotpotqa",
            metadata={"n_sentences": len(sentences)},
        )
        for title, sentences in paragraphs
    ]
    gold: list[str] = []
    for title, _ in facts:
        if title not in gold:
            gold.append(title)
    return QAExample(
        id=ex_id,
        question=question,
        answer=answer,
        type=str(rec.get("type") or ""),
        level=rec.get("level"),
        gold_doc_ids=gold,
        supporting_facts=facts,
        documents=docs,
        metadata={"dataset": "hotpotqa", "layout": "hf" if isinstance(rec.get("context"), dict) else "official"},
    )


def load_hotpotqa(path: str | Path, limit: int | None = None) -> list[QAExample]:
    """Read a HotpotQA file in the official or the Hugging Face layout (auto-detected per record).

    Hugging Face records carry no ``_id``: a stable id is derived from question and answer,
    so resumed runs and paired comparisons match questions across runs.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        records = _read_jsonl_records(path)
    else:
        records = _as_list(_read_json(path), path)
    out = [hotpot_record_to_example(r, path, i) for i, r in enumerate(records[:limit] if limit else records)]
    _check_unique(out, path)
    return out


def _check_unique(examples: list[QAExample], path: Path) -> None:
    """Ids must be unique (they key resume and paired comparisons), and a dataset must hold
    at least one question: an empty one would "score" 0 on every metric without an error."""
    if not examples:
        raise DatasetFormatError(f"{path}: the dataset holds no questions; check the file (and --limit)")
    seen: set[str] = set()
    for n, ex in enumerate(examples):
        if ex.id in seen:
            raise DatasetFormatError(f"{path}: record {n} repeats id {ex.id!r}; ids must be unique")
        seen.add(ex.id)


def load_hotpotqa_hf(
    split: str = "validation", config: str = "distractor", limit: int | None = None
) -> list[QAExample]:
    """Load HotpotQA from the Hugging Face hub (needs the ``hf`` extra and a network)."""
    if _offline():
        raise OfflineError(
            "HotpotQA from the Hugging Face hub needs a network, but HF_HUB_OFFLINE / HF_DATASETS_OFFLINE "
            "is set. Download the JSON once (official hotpot_dev_distractor_v1.json) and pass --path FILE."
        )
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise MissingExtraError(
            "loading HotpotQA from the hub needs `pip install 'hoprank[hf]'`; or pass --path FILE"
        ) from None
    try:
        ds = datasets.load_dataset("hotpot_qa", config, split=split)
    except (ConnectionError, OSError) as e:
        raise OfflineError(
            f"cannot reach the Hugging Face hub for hotpot_qa/{config} ({e}); pass --path FILE"
        ) from None
    records = [dict(r) for r in (ds.select(range(min(limit, len(ds)))) if limit else ds)]
    src = Path(f"hf://hotpot_qa/{config}/{split}")
    out = [hotpot_record_to_example(r, src, i) for i, r in enumerate(records)]
    _check_unique(out, src)
    return out


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HOPRANK_OFFLINE")
    )


def pooled_corpus(examples: Iterable[QAExample]) -> list[Document]:
    """Union of every example's documents, first occurrence wins (HotpotQA: dedup by title)."""
    seen: dict[str, Document] = {}
    for ex in examples:
        for d in ex.documents:
            seen.setdefault(d.id, d)
    return list(seen.values())


def example_corpus(example: QAExample) -> list[Document]:
    """The distractor setting: the question's own paragraphs only."""
    return list(example.documents)


# --------------------------------------------------------------------------- MultiHop-RAG


def load_multihop_rag(path: str | Path, limit: int | None = None) -> list[QAExample]:
    """Read ``MultiHopRAG.json`` (list of {query, answer, question_type, evidence_list}).

    ``null_query`` records stay (their answer is scored) but carry no gold evidence, so the
    retrieval metrics skip them, as the MultiHop-RAG protocol does.
    """
    path = Path(path)
    records = _as_list(_read_json(path), path)
    out: list[QAExample] = []
    for i, rec in enumerate(records[:limit] if limit else records):
        query = rec.get("query", rec.get("question")) if isinstance(rec, dict) else None
        if query is None:
            _require(rec, "query", path, i)
        if not isinstance(query, str):
            raise DatasetFormatError(f"{_where(path, i, rec)}: field 'query' must be a string")
        answer = _require(rec, "answer", path, i)
        qtype = str(_require(rec, "question_type", path, i, str))
        evidence = rec.get("evidence_list") or []
        if not isinstance(evidence, list):
            raise DatasetFormatError(f"{_where(path, i, rec)}: field 'evidence_list' must be a list")
        facts: list[str] = []
        titles: list[str] = []
        for j, ev in enumerate(evidence):
            if not isinstance(ev, dict) or not isinstance(ev.get("fact"), str):
                raise DatasetFormatError(f"{_where(path, i, rec)}: evidence_list[{j}] is missing field 'fact'")
            facts.append(ev["fact"])
            t = ev.get("title")
            if isinstance(t, str) and t not in titles:
                titles.append(t)
        rid = rec.get("id")
        ex_id = str(rid) if rid not in (None, "") else _stable_id("mhr-", query)
        out.append(
            QAExample(
                id=ex_id,
                question=query,
                answer=str(answer),
                type=qtype,
                gold_doc_ids=[] if qtype == "null_query" else titles,
                supporting_facts=[] if qtype == "null_query" else facts,
                metadata={"dataset": "multihop-rag", "evidence_list": evidence},
            )
        )
    _check_unique(out, path)
    return out


def load_multihop_rag_corpus(path: str | Path) -> list[Document]:
    """Read ``corpus.json`` (list of {title, author, source, published_at, category, url, body}).

    Document ids are the article titles, because MultiHop-RAG evidence points at titles.
    """
    path = Path(path)
    records = _as_list(_read_json(path), path)
    docs: dict[str, Document] = {}
    for i, rec in enumerate(records):
        title = _require(rec, "title", path, i, str)
        body = _require(rec, "body", path, i, str)
        meta = {
            k: rec.get(k) for k in ("author", "source", "published_at", "category", "url") if rec.get(k) is not None
        }
        docs.setdefault(
            title, Document(id=title, text=body, title=title, source=str(rec.get("source") or ""), metadata=meta)
        )
    return list(docs.values())


def chunk_multihop_rag_corpus(documents: list[Document], size: int = 256, overlap: int = 0) -> list[Any]:
    """Chunks of 256 tokens, the MultiHop-RAG protocol (words stand in for tokens here)."""
    from hoprank.tools.ingest.chunking import ChunkingConfig, chunk_document

    cfg = ChunkingConfig(size=size, overlap=overlap, unit="tokens")
    return [c for d in documents for c in chunk_document(d, cfg)]


# --------------------------------------------------------------------------- FanOutQA


@dataclass(frozen=True)
class FanOutSubQuestion:
    """A human-written sub-question of a FanOutQA decomposition (flattened, depth-first)."""

    id: str
    question: str
    answer: Any
    depends_on: list[str] = field(default_factory=list)
    evidence_title: str | None = None
    depth: int = 0


def fanoutqa_dev_path() -> Path:
    """The dev JSON bundled inside the installed ``fanoutqa`` package, found WITHOUT importing
    it (importing pulls markdownify and creates a cache folder)."""
    spec = importlib.util.find_spec("fanoutqa")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "FanOutQA needs `pip install 'hoprank[fanoutqa]'` (the dev set ships in that package); or pass --path FILE"
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "fanout-final-dev.json"
        if p.is_file():
            return p
    raise MissingExtraError(
        "the installed fanoutqa package has no data/fanout-final-dev.json; reinstall `hoprank[fanoutqa]`"
    )


def _answer_text(answer: Any) -> str:
    if isinstance(answer, dict):
        return "; ".join(f"{k}: {_answer_text(v)}" for k, v in answer.items())
    if isinstance(answer, list):
        return "; ".join(_answer_text(v) for v in answer)
    return str(answer)


def _flatten_decomposition(subs: list[Any], path: Path, i: int, depth: int = 0) -> list[FanOutSubQuestion]:
    out: list[FanOutSubQuestion] = []
    for j, s in enumerate(subs):
        if not isinstance(s, dict) or not isinstance(s.get("question"), str):
            raise DatasetFormatError(f"{path}: record {i}: decomposition entry {j} is missing field 'question'")
        ev = s.get("evidence")
        out.append(
            FanOutSubQuestion(
                id=str(s.get("id", f"{i}-{depth}-{j}")),
                question=s["question"],
                answer=s.get("answer"),
                depends_on=list(s.get("depends_on") or []),
                evidence_title=ev.get("title") if isinstance(ev, dict) else None,
                depth=depth,
            )
        )
        out.extend(_flatten_decomposition(s.get("decomposition") or [], path, i, depth + 1))
    return out


def load_fanoutqa_dev(path: str | Path | None = None, limit: int | None = None) -> list[QAExample]:
    """FanOutQA dev questions ({id, question, decomposition, answer, categories}).

    ``path=None`` reads the file bundled in the optional ``fanoutqa`` package. The human
    decomposition is kept in ``metadata["decomposition"]`` (flattened sub-questions) for
    :func:`hoprank.evals.metrics.decomposition_match`; gold documents are the Wikipedia
    titles of the sub-questions' evidence.
    """
    path = Path(path) if path is not None else fanoutqa_dev_path()
    records = _as_list(_read_json(path), path)
    out: list[QAExample] = []
    for i, rec in enumerate(records[:limit] if limit else records):
        rid = _require(rec, "id", path, i)
        question = _require(rec, "question", path, i, str)
        if "answer" not in rec:
            raise DatasetFormatError(f"{_where(path, i, rec)}: missing field 'answer'")
        subs = _flatten_decomposition(_require(rec, "decomposition", path, i, list), path, i)
        gold = []
        for s in subs:
            if s.evidence_title and s.evidence_title not in gold:
                gold.append(s.evidence_title)
        out.append(
            QAExample(
                id=str(rid),
                question=question,
                answer=_answer_text(rec["answer"]),
                type=",".join(rec.get("categories") or []),
                gold_doc_ids=gold,
                metadata={
                    "dataset": "fanoutqa",
                    "raw_answer": rec["answer"],
                    "decomposition": subs,
                    "categories": rec.get("categories") or [],
                },
            )
        )
    _check_unique(out, path)
    return out


# --------------------------------------------------------------------------- generic JSONL


def _read_jsonl_records(path: Path) -> list[Any]:
    if not path.is_file():
        raise DatasetFormatError(f"dataset file not found: {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DatasetFormatError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
    return records


def load_jsonl(path: str | Path, limit: int | None = None) -> list[QAExample]:
    """Generic JSONL: {question, answer, optional id, type, gold_doc_ids (or gold_docs),
    supporting_facts, level}. Ids default to the line position."""
    path = Path(path)
    records = _read_jsonl_records(path)
    out = []
    for i, rec in enumerate(records[:limit] if limit else records):
        question = _require(rec, "question", path, i, str)
        answer = _require(rec, "answer", path, i)
        gold = rec.get("gold_doc_ids", rec.get("gold_docs")) or []
        if not isinstance(gold, list):
            raise DatasetFormatError(f"{_where(path, i, rec)}: field 'gold_doc_ids' must be a list")
        out.append(
            QAExample(
                id=str(rec.get("id", i)),
                question=question,
                answer=_answer_text(answer),
                type=str(rec.get("type") or ""),
                level=rec.get("level"),
                gold_doc_ids=[str(g) for g in gold],
                supporting_facts=list(rec.get("supporting_facts") or []),
                metadata={"dataset": "jsonl", **(rec.get("metadata") or {})},
            )
        )
    _check_unique(out, path)
    return out


def load_dataset(name: str, path: str | Path | None, limit: int | None = None) -> list[QAExample]:
    """Dispatch on the dataset name used by the CLI."""
    name = name.lower()
    if name == "hotpotqa":
        return load_hotpotqa(path, limit) if path else load_hotpotqa_hf(limit=limit)
    if name in ("multihop-rag", "multihoprag"):
        if path is None:
            raise DatasetFormatError("multihop-rag needs --path MultiHopRAG.json")
        return load_multihop_rag(path, limit)
    if name == "fanoutqa":
        return load_fanoutqa_dev(path, limit)
    if name == "jsonl":
        if path is None:
            raise DatasetFormatError("jsonl needs --path FILE.jsonl")
        return load_jsonl(path, limit)
    raise DatasetFormatError(f"unknown dataset {name!r}; choose hotpotqa, multihop-rag, fanoutqa or jsonl")
