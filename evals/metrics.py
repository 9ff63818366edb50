"""Answer and retrieval metrics, declared apart from how they are computed.

Answer EM/F1 follow the official HotpotQA evaluation script exactly (normalisation order,
the yes/no/noanswer rule), because numbers that differ from the reference script by a
normalisation detail cannot be compared with published results. The MultiHop-RAG
retrieval functions reproduce that repository's ``calculate_metrics`` (including its
average-precision quirk), for the same reason.

Every metric is listed in :data:`REGISTRY` with a description and its direction, so the
runner, the summary and the report name metrics the same way.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MetricSpec",
    "REGISTRY",
    "register_metric",
    "normalize_answer",
    "exact_match",
    "f1_score",
    "f1_precision_recall",
    "recall_at_k",
    "precision_at_k",
    "both_gold_at_k",
    "hits_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "map_at_k",
    "dedup_keep_order",
    "supporting_paragraph_scores",
    "supporting_fact_scores",
    "mhr_normalize",
    "mhr_retrieval_scores",
    "word_overlap_correct",
    "word_overlap_lenient",
    "mhr_extract_answer",
    "mhr_qa_correct",
    "mhr_qa_metrics",
    "decomposition_match",
    "token_f1",
    "metric_k",
    "metric_sort_key",
    "sorted_metrics",
]

# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MetricSpec:
    """What a metric means; the computation lives elsewhere (ir_measures' separation)."""

    name: str
    description: str
    higher_is_better: bool = True
    kind: str = "answer"  # answer | retrieval | cost | count


REGISTRY: dict[str, MetricSpec] = {}


def register_metric(name: str, description: str, higher_is_better: bool = True, kind: str = "answer") -> MetricSpec:
    spec = MetricSpec(name, description, higher_is_better, kind)
    REGISTRY[name] = spec
    return spec


_AT_K = re.compile(r"^(.*)@(\d+)$")


def metric_k(name: str) -> int | None:
    """The k of an ``@k`` metric name (``retrieval.mhr_hits@10`` -> 10), else None."""
    m = _AT_K.match(name)
    return int(m.group(2)) if m else None


def metric_sort_key(name: str) -> tuple[str, int]:
    """Sort metric names by name, then numerically by k: @1, @2, @5, @10 (not @1, @10, @2)."""
    m = _AT_K.match(name)
    return (m.group(1), int(m.group(2))) if m else (name, -1)


def sorted_metrics(values: dict[str, Any]) -> dict[str, Any]:
    """The same mapping with keys in :func:`metric_sort_key` order (for summaries and tables)."""
    return {k: values[k] for k in sorted(values, key=metric_sort_key)}


def describe(name: str) -> MetricSpec:
    """Look a metric up, including ``@k`` variants (``retrieval.recall@7`` -> recall@k spec)."""
    if name in REGISTRY:
        return REGISTRY[name]
    generic = re.sub(r"@\d+$", "@k", name)
    if generic in REGISTRY:
        s = REGISTRY[generic]
        return MetricSpec(
            name, s.description.replace("top k", "top " + name.rsplit("@", 1)[1]), s.higher_is_better, s.kind
        )
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(REGISTRY))}")


register_metric("answer.em", "exact match after HotpotQA normalisation (lower-case, no punctuation, no articles)")
register_metric("answer.f1", "token F1 after HotpotQA normalisation; yes/no/noanswer must match exactly")
register_metric("answer.precision", "token precision of the answer (HotpotQA normalisation)")
register_metric("answer.recall", "token recall of the answer (HotpotQA normalisation)")
register_metric(
    "answer.mhr_precision",
    "MultiHop-RAG qa_evaluate.py precision: its extract_answer, then a lower-cased whitespace word "
    "shared with the gold",
)
register_metric(
    "answer.mhr_recall", "MultiHop-RAG qa_evaluate.py recall (same counts as its precision: equal by construction)"
)
register_metric("answer.mhr_f1", "MultiHop-RAG qa_evaluate.py F1 (harmonic mean of its precision and recall)")
register_metric(
    "answer.mhr_accuracy",
    "MultiHop-RAG qa_evaluate.py printed 'accuracy' = n / (n + 2 * wrong) (its tn = fn = fp); not the share correct",
)
register_metric(
    "answer.word_overlap_lenient",
    "hoprank variant of MultiHop-RAG QA: punctuation stripped at word edges, no extract_answer; share correct",
)
register_metric("answer.answered", "share of questions whose status is answered (not failed / not_found / partial)")
register_metric(
    "retrieval.recall@k", "share of gold documents among the top k distinct evidence documents", kind="retrieval"
)
register_metric(
    "retrieval.both_gold@k",
    "1 if every gold document is in the top k (HotpotQA: both supporting paragraphs)",
    kind="retrieval",
)
register_metric("retrieval.hits@k", "1 if at least one gold document is in the top k", kind="retrieval")
register_metric("retrieval.mrr@k", "reciprocal rank of the first gold document within the top k", kind="retrieval")
register_metric("retrieval.ndcg@k", "nDCG with binary relevance over the top k documents", kind="retrieval")
register_metric("retrieval.map@k", "average precision over the top k, normalised by min(#gold, k)", kind="retrieval")
register_metric(
    "retrieval.sp_recall", "supporting-paragraph recall: share of gold paragraphs among all evidence", kind="retrieval"
)
register_metric(
    "retrieval.sp_em",
    "supporting-paragraph exact match: the cited paragraphs are exactly the gold ones",
    kind="retrieval",
)
register_metric(
    "retrieval.sp_f1", "supporting-paragraph F1 of the cited paragraphs against the gold ones", kind="retrieval"
)
register_metric(
    "retrieval.mhr_hits@4",
    "MultiHop-RAG: a gold evidence fact is a substring of one of the top 4 chunks",
    kind="retrieval",
)
register_metric(
    "retrieval.mhr_hits@10",
    "MultiHop-RAG: a gold evidence fact is a substring of one of the top 10 chunks",
    kind="retrieval",
)
register_metric(
    "retrieval.mhr_map@10",
    "MultiHop-RAG MAP@10 (official computation, normalised by min(#facts, 10))",
    kind="retrieval",
)
register_metric(
    "retrieval.mhr_mrr@10",
    "MultiHop-RAG MRR@10: reciprocal rank of the first chunk holding a gold fact",
    kind="retrieval",
)
register_metric("decomposition.f1", "FanOutQA: best-match token F1 between generated and human sub-questions")
register_metric("cost.llm_calls_per_q", "mean LLM calls per question", higher_is_better=False, kind="cost")
register_metric("cost.prompt_tokens_per_q", "mean prompt tokens per question", higher_is_better=False, kind="cost")
register_metric(
    "cost.completion_tokens_per_q", "mean completion tokens per question", higher_is_better=False, kind="cost"
)
register_metric(
    "cost.tokens_per_q", "mean LLM tokens (prompt + completion) per question", higher_is_better=False, kind="cost"
)
register_metric("cost.seconds_per_q", "mean wall-clock seconds per question", higher_is_better=False, kind="cost")
register_metric(
    "cost.seconds_p95", "95th percentile of wall-clock seconds per question", higher_is_better=False, kind="cost"
)
register_metric("n.total", "questions in the run (every gold question, failed ones included)", kind="count")
register_metric(
    "n.failed", "questions that ended with status failed (exception, timeout)", higher_is_better=False, kind="count"
)
register_metric("n.answered", "questions with status answered", kind="count")
register_metric(
    "n.not_found", "questions where the agent said the documents do not say", higher_is_better=False, kind="count"
)
register_metric("n.partial", "questions stopped by a budget (best-effort answer)", higher_is_better=False, kind="count")
register_metric("n.retrieval_scored", "questions with gold evidence, i.e. counted in retrieval metrics", kind="count")
register_metric(
    "n.retrieval_depth",
    "most evidence chunks any question of the run returned; @k metrics are reported only for k <= this depth",
    kind="count",
)
register_metric(
    "n.mhr_qa_scored",
    "questions with a non-empty gold answer (MultiHop-RAG qa_evaluate.py skips the others)",
    kind="count",
)

# --------------------------------------------------------------------------- answers (HotpotQA official)

_PUNCT = set(string.punctuation)
_SPECIAL = ("yes", "no", "noanswer")


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop articles, squeeze whitespace (official order)."""
    s = str(s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def f1_precision_recall(pred: str, gold: str) -> tuple[float, float, float]:
    """(f1, precision, recall) exactly as the official ``f1_score`` returns them."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    if p in _SPECIAL and p != g:
        return 0.0, 0.0, 0.0
    if g in _SPECIAL and p != g:
        return 0.0, 0.0, 0.0
    pt, gt = p.split(), g.split()
    common = Counter(pt) & Counter(gt)
    same = sum(common.values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision = same / len(pt)
    recall = same / len(gt)
    return 2 * precision * recall / (precision + recall), precision, recall


def f1_score(pred: str, gold: str) -> float:
    return f1_precision_recall(pred, gold)[0]


def token_f1(a: str, b: str) -> float:
    """Plain normalised token F1 (no yes/no rule); used to compare two questions."""
    at, bt = normalize_answer(a).split(), normalize_answer(b).split()
    same = sum((Counter(at) & Counter(bt)).values())
    if same == 0:
        return 0.0
    p, r = same / len(at), same / len(bt)
    return 2 * p * r / (p + r)


# --------------------------------------------------------------------------- ranked-list metrics (binary relevance)


def dedup_keep_order(ids: Iterable[str]) -> list[str]:
    """Chunk hits of one document collapse to the document's best rank."""
    seen: set[str] = set()
    out = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def recall_at_k(ranked_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float:
    _check_k(k)
    gold = set(gold_ids)
    if not gold:
        return 0.0
    return len(gold & set(ranked_ids[:k])) / len(gold)


def precision_at_k(ranked_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float:
    _check_k(k)
    gold = set(gold_ids)
    return sum(1 for r in ranked_ids[:k] if r in gold) / k


def both_gold_at_k(ranked_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float:
    _check_k(k)
    gold = set(gold_ids)
    if not gold:
        return 0.0
    return float(gold <= set(ranked_ids[:k]))


def hits_at_k(ranked_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float:
    _check_k(k)
    gold = set(gold_ids)
    return float(any(r in gold for r in ranked_ids[:k]))


def mrr_at_k(ranked_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float:
    _check_k(k)
    gold = set(gold_ids)
    for rank, r in enumerate(ranked_ids[:k], 1):
        if r in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float:
    _check_k(k)
    gold = set(gold_ids)
    if not gold:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, r in enumerate(ranked_ids[:k], 1) if r in gold)
    idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / idcg


def map_at_k(ranked_ids: Sequence[str], gold_ids: Iterable[str], k: int) -> float:
    """Average precision at k normalised by min(#gold, k) (the MultiHop-RAG convention)."""
    _check_k(k)
    gold = set(gold_ids)
    if not gold:
        return 0.0
    found, total = 0, 0.0
    for rank, r in enumerate(ranked_ids[:k], 1):
        if r in gold:
            found += 1
            total += found / rank
    return total / min(len(gold), k)


# --------------------------------------------------------------------------- supporting facts (HotpotQA)


def _prf_em(pred: set[Any], gold: set[Any]) -> dict[str, float]:
    tp = len(pred & gold)
    fp = len(pred - gold)
    fn = len(gold - pred)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"em": float(fp + fn == 0), "f1": f1, "precision": prec, "recall": rec}


def supporting_paragraph_scores(predicted_titles: Iterable[str], gold_titles: Iterable[str]) -> dict[str, float]:
    """Paragraph-level version of the official supporting-fact metric (em/f1/precision/recall)."""
    return _prf_em(set(predicted_titles), set(gold_titles))


def supporting_fact_scores(predicted: Iterable[Sequence[Any]], gold: Iterable[Sequence[Any]]) -> dict[str, float]:
    """The official ``update_sp``: sets of (title, sent_id)."""
    return _prf_em({(str(t), int(s)) for t, s in predicted}, {(str(t), int(s)) for t, s in gold})


# --------------------------------------------------------------------------- MultiHop-RAG


def mhr_normalize(text: str) -> str:
    """MultiHop-RAG strips spaces and newlines (only those) before substring matching."""
    return text.replace(" ", "").replace("\n", "")


def mhr_retrieval_scores(retrieved_texts: Sequence[str], gold_facts: Sequence[str]) -> dict[str, float]:
    """One query of MultiHop-RAG's ``calculate_metrics``: hits@4, hits@10, map@10, mrr@10.

    A chunk is relevant when any gold fact is a substring of it. Average precision adds,
    at each relevant rank, (facts first found in this chunk) / rank, and divides by
    min(#facts, 10) -- the published computation, kept as is for comparability.
    """
    gold = [mhr_normalize(g) for g in gold_facts]
    retrieved = [mhr_normalize(r) for r in retrieved_texts]
    hits10 = hits4 = False
    ap_sum = 0.0
    first = None
    found: list[str] = []
    for rank, item in enumerate(retrieved[:10], start=1):
        if any(g in item for g in gold):
            hits10 = True
            if first is None:
                first = rank
            if rank <= 4:
                hits4 = True
            count = 0
            for g in gold:
                if g in item and g not in found:
                    count += 1
                    found.append(g)
            ap_sum += count / rank
    return {
        "mhr_hits@4": float(hits4),
        "mhr_hits@10": float(hits10),
        "mhr_map@10": ap_sum / min(len(gold), 10) if gold else 0.0,
        "mhr_mrr@10": 1.0 / first if first else 0.0,
    }


def _words(s: str) -> set[str]:
    out = set()
    for w in str(s).lower().split():
        w = w.strip(string.punctuation)
        if w:
            out.add(w)
    return out


def word_overlap_lenient(pred: str, gold: str) -> float:
    """hoprank's lenient MultiHop-RAG QA variant (NOT the reference number).

    Lower-cased and split on whitespace as in the reference, but punctuation is stripped at
    word edges so that "Yes." matches "yes", and there is no ``extract_answer`` step. Kept
    under its own name because it disagrees with ``qa_evaluate.py`` on such pairs."""
    return float(bool(_words(pred) & _words(gold)))


word_overlap_correct = word_overlap_lenient  # the old name, kept for callers of the function

_MHR_ANSWER = re.compile(r'The answer to the question is "(.*?)"')


def mhr_extract_answer(prediction: str) -> str:
    """MultiHop-RAG ``qa_evaluate.py``'s answer extraction.

    Only when the text contains "The answer" (case-sensitive) is the first quoted span after
    'The answer to the question is "' taken (shortest match, on one line); otherwise, and when
    that phrase is absent, the whole text is kept unchanged."""
    text = str(prediction)
    if "The answer" not in text:
        return text
    found = _MHR_ANSWER.search(text)
    return found.group(1) if found is not None else text


def mhr_qa_correct(pred: str, gold: str) -> float | None:
    """One pair as MultiHop-RAG's ``qa_evaluate.py`` judges it: 1.0 when the extracted,
    lower-cased prediction and the lower-cased gold share a whitespace-separated token
    (punctuation stays attached: "No." does not match "no"); None when the gold answer is
    empty, because the reference skips such questions."""
    gold = str(gold)
    if not gold:
        return None
    return float(bool(set(mhr_extract_answer(pred).lower().split()) & set(gold.lower().split())))


def mhr_qa_metrics(correct: Sequence[float | None]) -> dict[str, float]:
    """The reference's ``calculate_metrics`` over one group of pairs (None = skipped).

    It counts tp (a shared word), fp (none), fn = n - tp and tn = n - tp, so precision,
    recall and F1 all equal tp / n, and its printed "accuracy" (tp + tn) / (tp + tn + fp + fn)
    is n / (n + 2 * wrong). Reproduced literally, including the zero for an empty group."""
    scored = [c for c in correct if c is not None]
    n = len(scored)
    tp = sum(1 for c in scored if c)
    wrong = n - tp
    fp, fn, tn = wrong, wrong, wrong
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * (precision * recall) / (precision + recall) if precision + recall > 0 else 0.0
    total = tp + tn + fp + fn
    accuracy = (tp + tn) / total if total > 0 else 0.0
    return {"mhr_precision": precision, "mhr_recall": recall, "mhr_f1": f1, "mhr_accuracy": accuracy, "n": float(n)}


# --------------------------------------------------------------------------- FanOutQA decompositions


def decomposition_match(
    predicted: Sequence[str], human: Sequence[str], sim: Callable[[str, str], float] = token_f1
) -> dict[str, float]:
    """Compare generated sub-questions with a human decomposition.

    precision = mean over generated sub-questions of their best similarity to a human one;
    recall = the same from the human side; f1 their harmonic mean. Best-match (not a
    one-to-one assignment), so a repeated sub-question is not punished twice on recall.
    """
    pred = [p for p in predicted if p and p.strip()]
    gold = [h for h in human if h and h.strip()]
    if not pred or not gold:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n_pred": float(len(pred)), "n_gold": float(len(gold))}
    precision = sum(max(sim(p, h) for h in gold) for p in pred) / len(pred)
    recall = sum(max(sim(p, h) for p in pred) for h in gold) / len(gold)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_pred": float(len(pred)), "n_gold": float(len(gold))}


def nan_to_none(x: Any) -> Any:
    """NaN -> None, recursively: JSON has no NaN, and an undetermined score must stay visibly
    undetermined (null), never become 0."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [nan_to_none(v) for v in x]
    return x
