"""Rerankers: parsers on real garbage, sorting against a scripted judge, REBEL arithmetic and
cross-batch normalisation, factory errors, tool specs, cross-encoder and embedding paths."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from hoprank.tools.llm.base import LLMResponse, ScriptedLLM
from hoprank.tools.rerank import RerankError, make_reranker, reranker_names
from hoprank.tools.rerank.listwise import sliding_windows
from hoprank.tools.rerank.parsing import (
    parse_permutation,
    parse_rating,
    parse_rebel,
    parse_setwise,
    parse_yes_no,
    yes_probability,
)
from hoprank.tools.rerank.rebel import UNMENTIONED_SCORE, normalize_batches
from hoprank.tools.types import Hit

CRITERIA = ["depth of content", "diversity of perspectives", "clarity and specificity", "authoritativeness", "recency"]


def make_hits(n: int) -> list[Hit]:
    return [
        Hit(
            id=f"d{i}",
            score=1.0 - i / 100,
            text=f"passage about topic DOC{i:02d} with some words",
            title=f"T{i}",
            rank=i + 1,
            retriever="bm25",
        )
        for i in range(n)
    ]


def doc_ids_in(messages) -> list[int]:
    """The DOCnn tokens of the ``[i] text`` lines, in prompt order."""
    user = messages[-1]["content"]
    return [int(m) for m in re.findall(r"^\[\d+\][^\n]*?DOC(\d\d)", user, flags=re.M)]


def judge(hidden: list[int], style: str = "r1"):
    """A perfect judge: reads the documents of the prompt and answers from a hidden order."""
    rank = {d: r for r, d in enumerate(hidden)}

    def fn(messages) -> str:
        ids = doc_ids_in(messages)
        best = min(range(len(ids)), key=lambda j: rank[ids[j]])
        if style == "r1":
            return f"<think>document {best + 1} mentions DOC{ids[best]:02d}</think>\n<answer>[{best + 1}]</answer>"
        order = sorted(range(len(ids)), key=lambda j: rank[ids[j]])
        return " > ".join(f"[{j + 1}]" for j in order)

    return fn


# ---- parsers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,label,status",
    [
        ("<think>doc 2 names the city</think> <answer>[2]</answer>", 2, "ok"),
        ("<THINK>upper case</THINK>\n<ANSWER>[3]</ANSWER>", 3, "ok"),
        ("<think>x</think><answer>document 4</answer>", 4, "ok"),
        ("<think>cut off before closing</think> <answer>[2", 2, "lenient"),
        ("<think>never finished thinking about [1] and [2]", None, "failed"),
        ("The most relevant document is [3] because it names the founder.", 3, "lenient"),
        ("[1] Edward Davis Wood Jr. was an American filmmaker, actor, writer, producer, and director.", None, "failed"),
        ("I think [1] or maybe [2] is relevant", None, "failed"),
        ("", None, "failed"),
        ("<think>x</think><answer>[9]</answer>", None, "failed"),  # out of range
        ("Sure! Here is a poem about lighthouses.", None, "failed"),
    ],
)
def test_parse_setwise_survives_garbage(text, label, status):
    a = parse_setwise(text, 4)
    assert (a.label, a.status) == (label, status)


def test_parse_setwise_keeps_reasoning():
    a = parse_setwise("<think>Doc 2 names Marrow Bay.</think> <answer>[2]</answer>", 3)
    assert a.reasoning == "Doc 2 names Marrow Bay."


@pytest.mark.parametrize(
    "text,order,status",
    [
        ("[3] > [1] > [2]", [2, 0, 1], "ok"),
        ("[2] > [2] > [3] > [1]", [1, 2, 0], "ok"),  # duplicate dropped
        ("[7] > [2] > [0] > [1]", [1, 0, 2], "partial"),  # unknown ids dropped, 3 appended
        ("Sure, here is the ranking: [3] > [1] > [2]. Hope it helps!", [2, 0, 1], "ok"),
        ("[3] > [", [2, 0, 1], "partial"),  # truncated: missing appended in original order
        ("3 > 1 > 2", [2, 0, 1], "ok"),
        ("", [0, 1, 2], "failed"),
        ("I cannot rank these passages.", [0, 1, 2], "failed"),
    ],
)
def test_parse_permutation_survives_garbage(text, order, status):
    p = parse_permutation(text, 3)
    assert (p.order, p.status) == (order, status)
    assert sorted(p.order) == [0, 1, 2]


def test_parse_rebel_final_and_criteria_lines():
    text = (
        "Here are the scores:\n"
        "Doc: 2, Relevance: 14.5\n"
        "Doc: 1, Relevance: 8, Depth of content: 4, Diversity: 2, Clarity: 5, Authoritativeness: 3, Recency: 1\n"
        "Doc: 9, Relevance: 10\n"  # unknown doc
        "Doc: 2, Relevance: 1\n"  # duplicate: first mention wins
        "Doc: 3, Relevance: banana\n"
    )
    lines = {ln.doc: ln for ln in parse_rebel(text, 3, CRITERIA)}
    assert set(lines) == {1, 2}
    assert lines[2].final == 14.5 and lines[2].relevance is None
    # hand computed: 8 + 0.5 * (4 + 2 + 5 + 3 + 1) = 15.5
    assert lines[1].final == 15.5 and lines[1].relevance == 8
    assert lines[1].criteria["authoritativeness"] == 3


@pytest.mark.parametrize("text", ["", "no documents are relevant", "Doc: , Relevance: ", "<answer>[1]</answer>"])
def test_parse_rebel_garbage_is_empty(text):
    assert parse_rebel(text, 5, CRITERIA) == []


@pytest.mark.parametrize(
    "text,value",
    [
        ("7", 7.0),
        ("Rating: 8", 8.0),
        ("9/10", 9.0),
        ("I would say 6.5 out of 10", 6.5),
        ("42", None),
        ("", None),
        ("very relevant", None),
    ],
)
def test_parse_rating(text, value):
    assert parse_rating(text) == value


def test_yes_no_and_logprobs():
    assert parse_yes_no("Yes, it does.") == 1.0
    assert parse_yes_no(" no") == 0.0
    assert parse_yes_no("maybe") is None and parse_yes_no("") is None
    lp = [
        {"token": " ", "logprob": -0.1, "top": {}},
        {
            "token": "Yes",
            "logprob": math.log(0.6),
            "top": {"Yes": math.log(0.6), " no": math.log(0.2), "The": math.log(0.2)},
        },
    ]
    assert yes_probability(lp) == pytest.approx(0.75)
    assert yes_probability(None) is None
    assert yes_probability([{"token": "The", "logprob": -0.1, "top": {"The": -0.1}}]) is None


# ---- setwise against a scripted judge -------------------------------------------------------

HIDDEN = [13, 4, 17, 0, 9, 2, 19, 7, 11, 5, 1, 3, 6, 8, 10, 12, 14, 15, 16, 18]


@pytest.mark.parametrize("method", ["heapsort", "bubblesort"])
@pytest.mark.parametrize("num_child,n", [(19, 20), (3, 20), (2, 11), (4, 7)])
def test_setwise_exact_top_k(method, num_child, n):
    hidden = [d for d in HIDDEN if d < n]
    llm = ScriptedLLM(judge(hidden), max_concurrency=4)
    rr = make_reranker("setwise", llm=llm, method=method, num_child=num_child)
    out = rr.rerank("which doc?", make_hits(n), top_k=5)
    assert [h.id for h in out] == [f"d{d}" for d in hidden[:5]]
    assert [h.rank for h in out] == [1, 2, 3, 4, 5]
    assert all(h.retriever == "setwise" and h.rationale and "DOC" in h.rationale for h in out)
    assert rr.last_trace["llm_calls"] == len(llm.calls) > 0
    assert rr.last_trace["parse"] == {"ok": len(llm.calls)}


def test_setwise_all_kept_unranked_keep_original_order():
    hidden = HIDDEN
    rr = make_reranker("setwise", llm=ScriptedLLM(judge(hidden)), num_child=3, k=3)
    out = rr.rerank("q", make_hits(20))
    top = [f"d{d}" for d in hidden[:3]]
    assert [h.id for h in out[:3]] == top
    assert [h.id for h in out[3:]] == [f"d{i}" for i in range(20) if f"d{i}" not in top]
    assert [h.rank for h in out] == list(range(1, 21))
    assert all(out[i].score > out[i + 1].score for i in range(19))


def test_setwise_bubblesort_costs_more_calls_than_heapsort():
    calls = {}
    for method in ("heapsort", "bubblesort"):
        llm = ScriptedLLM(judge(HIDDEN))
        make_reranker("setwise", llm=llm, method=method, num_child=3).rerank("q", make_hits(20), top_k=5)
        calls[method] = len(llm.calls)
    assert calls["heapsort"] < calls["bubblesort"]


@pytest.mark.parametrize("method", ["heapsort", "bubblesort"])
def test_setwise_garbage_keeps_original_order(method):
    llm = ScriptedLLM(["I am a small model and I like lighthouses."])
    rr = make_reranker("setwise", llm=llm, method=method, num_child=3)
    out = rr.rerank("q", make_hits(9), top_k=4)
    assert [h.id for h in out] == ["d0", "d1", "d2", "d3"]
    assert rr.last_trace["parse"]["failed"] == len(llm.calls)


def test_setwise_permutation_voting_is_exact_and_deterministic():
    hidden = [d for d in HIDDEN if d < 10]
    runs = []
    for _ in range(2):
        llm = ScriptedLLM(judge(hidden), max_concurrency=3)
        rr = make_reranker("setwise", llm=llm, num_child=4, num_permutation=3)
        runs.append(([h.id for h in rr.rerank("q", make_hits(10), top_k=3)], [m[-1]["content"] for m in llm.calls]))
    assert runs[0][0] == [f"d{d}" for d in hidden[:3]]
    assert runs[0] == runs[1]  # same shuffles, same prompts


def test_setwise_voting_ties_break_to_original_order():
    # each of the 2 permutations votes for whatever is shown first: a 1-1 tie between two docs
    llm = ScriptedLLM(lambda m: "<think>first</think><answer>[1]</answer>")
    rr = make_reranker("setwise", llm=llm, num_child=2, num_permutation=2, seed=1)
    out = rr.rerank("q", make_hits(3), top_k=1)
    assert out[0].id == "d0" or len({c[-1]["content"] for c in llm.calls}) > 1


def test_setwise_truncates_documents():
    long_hit = Hit(id="x", score=1, text="word " * 500 + "DOC00", title="")
    llm = ScriptedLLM(["<think>a</think><answer>[1]</answer>"])
    make_reranker("setwise", llm=llm, max_doc_words=20).rerank("q", [long_hit, *make_hits(3)[1:]], top_k=1)
    assert "DOC00" not in llm.calls[0][-1]["content"] and len(llm.calls[0][-1]["content"].split()) < 200


# ---- listwise -------------------------------------------------------------------------------


def test_sliding_windows_back_to_front():
    assert sliding_windows(30, 20, 10) == [(10, 30), (0, 20)]
    assert sliding_windows(5, 20, 10) == [(0, 5)]
    assert sliding_windows(45, 20, 10) == [(25, 45), (15, 35), (5, 25), (0, 15)]  # rank_llm's windows


def test_listwise_perfect_judge_gets_the_top_window_minus_stride():
    hidden = [
        29,
        3,
        25,
        14,
        0,
        21,
        8,
        17,
        11,
        27,
        1,
        2,
        4,
        5,
        6,
        7,
        9,
        10,
        12,
        13,
        15,
        16,
        18,
        19,
        20,
        22,
        23,
        24,
        26,
        28,
    ]
    hits = [replace(h, text=f"passage DOC{i:02d}") for i, h in enumerate(make_hits(30))]
    rr = make_reranker("listwise", llm=ScriptedLLM(judge(hidden, style="list")))
    out = rr.rerank("q", hits, top_k=10)
    assert [h.id for h in out] == [f"d{d}" for d in hidden[:10]]
    assert rr.last_trace["llm_calls"] == 2


def test_listwise_garbage_keeps_order_and_is_a_permutation():
    rr = make_reranker("listwise", llm=ScriptedLLM(["[2] > [2] > [99] > bla"]))
    out = rr.rerank("q", make_hits(5))
    assert [h.id for h in out] == ["d1", "d0", "d2", "d3", "d4"]
    assert rr.last_trace["parse"] == {"partial": 1}


# ---- REBEL ----------------------------------------------------------------------------------

REBEL_OUT = (
    # 9 + 7.5 = 16.5
    "Doc: 3, Relevance: 9, Depth: 4, Diversity: 2, Clarity: 4, Authoritativeness: 2, Recency: 3\n"
    # 8 + 8.5 = 16.5, more authoritative
    "Doc: 1, Relevance: 8, Depth: 5, Diversity: 3, Clarity: 4, Authoritativeness: 4, Recency: 1\n"
    # 14.5 but relevance < 3
    "Doc: 4, Relevance: 2, Depth: 5, Diversity: 5, Clarity: 5, Authoritativeness: 5, Recency: 5\n"
    # final given directly
    "Doc: 5, Relevance: 6\n"
)


def test_rebel_arithmetic_tiebreak_and_defaults():
    rr = make_reranker("rebel", llm=ScriptedLLM([REBEL_OUT]))
    out = rr.rerank("q", make_hits(6))
    assert [h.id for h in out] == ["d0", "d2", "d4", "d3", "d1", "d5"]
    assert [h.score for h in out[:4]] == [16.5, 16.5, 6.0, 14.5]
    assert out[4].score == out[5].score == UNMENTIONED_SCORE  # never mentioned: below, original order
    assert "authoritativeness 4" in out[0].rationale
    assert rr.last_trace["llm_calls"] == 1


def test_rebel_garbage_keeps_original_order():
    rr = make_reranker("rebel", llm=ScriptedLLM(["I don't know."]))
    out = rr.rerank("q", make_hits(4), top_k=3)
    assert [h.id for h in out] == ["d0", "d1", "d2"]
    assert rr.last_trace["parse"] == {"failed": 1}


def test_normalize_batches_hand_computed():
    # anchor 0 scored 8 in batch A and 4 in batch B (B's rater is harsher by 4)
    a = {0: 8.0, 1: 9.0, 2: 5.0}
    b = {0: 4.0, 3: 7.0, 4: 1.0}
    (na, nb), how = normalize_batches([a, b], anchor=0, method="anchor")
    assert na == {0: 6.0, 1: 7.0, 2: 3.0} and nb == {0: 6.0, 3: 9.0, 4: 3.0}
    assert how == ["anchor-2.00", "anchor+2.00"]
    # no anchor score in batch B -> that batch is z-scored to the pooled mean / sd
    (_, nb2), how2 = normalize_batches([a, {3: 7.0, 4: 1.0}], anchor=0, method="anchor")
    assert how2[1] == "zscore" and nb2[3] > nb2[4]
    (n1,), how1 = normalize_batches([a], anchor=None, method="anchor")
    assert n1 == a and how1 == ["none"]


def test_rebel_two_turn_anchor_fixes_batch_drift():
    """A rater that is 5 points harsher on the second batch: raw scores would put every doc of
    batch 2 below batch 1; the shared anchor restores the true order."""
    true = {i: 20 - i for i in range(12)}  # true quality: d0 best ... d11 worst, interleaved below
    quality = {0: 20, 1: 12, 2: 10, 3: 8, 4: 6, 5: 4, 6: 19, 7: 17, 8: 15, 9: 13, 10: 11, 11: 9}
    true.update(quality)

    def fn(messages):
        user = messages[-1]["content"]
        if "Documents:" not in user:
            return "Prefer documents that name the person and the place precisely."
        ids = doc_ids_in(messages)
        harsh = 5 if any(i >= 7 for i in ids) else 0
        return "\n".join(f"Doc: {j + 1}, Relevance: {(true[d] - harsh) / 2:g}" for j, d in enumerate(ids))

    hits = make_hits(12)
    expected = sorted(range(12), key=lambda i: -true[i])
    rr = make_reranker("rebel", llm=ScriptedLLM(fn, max_concurrency=2), variant="two-turn", batch_size=7)
    out = rr.rerank("q", hits)
    assert [h.id for h in out] == [f"d{i}" for i in expected]
    assert rr.last_trace["llm_calls"] == 3  # meta prompt + 2 batches
    assert rr.last_trace["rebel_instructions"].startswith("Prefer")
    raw = make_reranker("rebel", llm=ScriptedLLM(fn), variant="two-turn", batch_size=7, normalize="none").rerank(
        "q", hits
    )
    assert [h.id for h in raw] != [f"d{i}" for i in expected]


def test_rebel_meta_garbage_falls_back_to_static_criteria():
    rr = make_reranker("rebel", llm=ScriptedLLM(["ok", "Doc: 1, Relevance: 3"]), variant="two-turn")
    rr.rerank("q", make_hits(2))
    assert "authoritativeness" in rr.last_trace["rebel_instructions"]
    assert rr.last_trace["parse"]["meta_fallback"] == 1


def test_rebel_custom_criteria_and_weight():
    rr = make_reranker(
        "rebel",
        llm=ScriptedLLM(["Doc: 1, Relevance: 4, Recency: 5\nDoc: 2, Relevance: 6, Recency: 0"]),
        criteria=["recency"],
        weight=1.0,
    )
    out = rr.rerank("q", make_hits(2))
    assert [(h.id, h.score) for h in out] == [("d0", 9.0), ("d1", 6.0)]


# ---- pointwise ------------------------------------------------------------------------------


class LogprobLLM(ScriptedLLM):
    """Scripted replies plus logprobs: P(yes) taken from the DOCnn number of the document."""

    def _complete(self, messages, **params):
        r = super()._complete(messages, **params)
        d = doc_ids_in([{"content": "[1] " + messages[-1]["content"].split("Document:", 1)[1]}])[0]
        p = 0.9 - d / 100
        return LLMResponse(
            text="Yes",
            prompt_tokens=r.prompt_tokens,
            completion_tokens=1,
            logprobs=[{"token": "Yes", "logprob": math.log(p), "top": {"Yes": math.log(p), "No": math.log(1 - p)}}],
        )


def test_pointwise_logprobs_one_concurrent_batch():
    llm = LogprobLLM(["Yes"], max_concurrency=4)
    rr = make_reranker("pointwise", llm=llm)
    hits = list(reversed(make_hits(6)))
    out = rr.rerank("q", hits, top_k=3)
    assert [h.id for h in out] == ["d0", "d1", "d2"]
    assert out[0].score == pytest.approx(0.9)
    assert rr.last_trace["llm_calls"] == 6 and rr.last_trace["pointwise_mode"] == "yesno-logprob"


def test_pointwise_without_logprobs_falls_back_to_ratings():
    def fn(messages):
        if "Yes or No" in messages[-1]["content"]:
            return "Yes"
        return {0: "3", 1: "Rating: 9", 2: "garbage", 3: "7/10"}[
            doc_ids_in([{"content": "[1] " + messages[-1]["content"].split("Document:", 1)[1]}])[0]
        ]

    rr = make_reranker("pointwise", llm=ScriptedLLM(fn))
    out = rr.rerank("q", make_hits(4))
    assert [h.id for h in out] == ["d1", "d3", "d2", "d0"]  # garbage -> neutral 5
    assert rr.last_trace["pointwise_mode"] == "rating"
    out2 = rr.rerank("q", make_hits(4))  # backend known to lack logprobs: ratings only
    assert [h.id for h in out2] == [h.id for h in out] and rr.last_trace["llm_calls"] == 4


# ---- interface, factory, tool specs ---------------------------------------------------------


def test_factory_errors_name_the_problem():
    with pytest.raises(RerankError, match="unknown reranker 'colbert'.*setwise.*embedding"):
        make_reranker("colbert")
    with pytest.raises(RerankError, match="unknown option 'num_childs'.*num_child"):
        make_reranker("setwise", llm=ScriptedLLM([""]), num_childs=3)
    with pytest.raises(RerankError, match="method"):
        make_reranker("setwise", llm=ScriptedLLM([""]), method="quicksort")
    with pytest.raises(RerankError, match="variant"):
        make_reranker("rebel", llm=ScriptedLLM([""]), variant="three-turn")
    with pytest.raises(ValueError):
        make_reranker("embedding", agg="median")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("setwise", {"method": "quicksort"}, "setwise method must be 'heapsort' or 'bubblesort', got 'quicksort'"),
        ("pointwise", {"mode": "vote"}, "pointwise mode must be 'auto', 'yesno' or 'rating', got 'vote'"),
        ("rebel", {"normalize": "rank"}, "rebel normalize must be 'anchor', 'zscore' or 'none', got 'rank'"),
        ("listwise", {"scoring": "last"}, "listwise scoring must be 'text' or 'first', got 'last'"),
        ("setwise", {"num_permutation": 0}, "setwise num_permutation must be an integer >= 1, got 0"),
        ("listwise", {"window": 2.5}, "listwise window must be an integer >= 2, got 2.5"),
    ],
)
def test_option_errors_list_the_choices_their_signature_declares(name, options, message):
    """The choices come from the constructor's Literal annotation; one wording for every reranker."""
    with pytest.raises(RerankError) as ei:
        make_reranker(name, llm=ScriptedLLM([""]), **options)
    assert str(ei.value) == message


def test_top_k_and_query_validation():
    rr = make_reranker("none")
    with pytest.raises(RerankError, match="top_k"):
        rr.rerank("q", make_hits(3), top_k=0)
    with pytest.raises(ValueError, match="empty"):
        rr.rerank("   ", make_hits(3))
    assert rr.rerank("q", []) == []


def test_output_hits_are_renumbered_and_keep_retrieval_metadata():
    out = make_reranker("listwise", llm=ScriptedLLM(["[2] > [1]"])).rerank("q", make_hits(2))
    assert [(h.id, h.rank, h.retriever) for h in out] == [("d1", 1, "listwise"), ("d0", 2, "listwise")]
    assert out[0].metadata["retrieval_rank"] == 2 and out[0].metadata["retrieval_score"] == pytest.approx(0.99)


@pytest.mark.parametrize("name", ["setwise", "rebel", "listwise", "pointwise", "none"])
def test_tool_specs(name):
    spec = make_reranker(name, llm=ScriptedLLM([""])).as_tool_spec()
    assert spec["name"] == f"rerank_{name}" and len(spec["description"]) > 20
    assert spec["parameters"]["type"] == "object" and spec["parameters"]["required"] == ["query"]
    assert set(spec["parameters"]["properties"]) == {"query", "hit_ids", "top_k", "subqueries"}


def test_names_and_async():
    assert set(reranker_names()) >= {"setwise", "rebel", "listwise", "pointwise", "cross-encoder", "embedding"}


async def test_arerank_matches_rerank():
    rr = make_reranker("listwise", llm=ScriptedLLM(["[3] > [1] > [2]"]))
    out = await rr.arerank("q", make_hits(3), top_k=2)
    assert [h.id for h in out] == ["d2", "d0"]


# ---- cross-encoder --------------------------------------------------------------------------


def test_cross_encoder_errors_explain_offline(tmp_path):
    with pytest.raises(RerankError, match="no cross-encoder ships"):
        make_reranker("cross-encoder")
    with pytest.raises(RerankError, match="(?i)not a local folder.*no cross-encoder ships"):
        make_reranker("cross-encoder", model="someone/not-cached-reranker-xyz")
    (tmp_path / "junk").mkdir()
    with pytest.raises(RerankError, match="does not hold a loadable CrossEncoder"):
        make_reranker("cross-encoder", model=str(tmp_path / "junk"))


def test_cross_encoder_tiny_local_model(tmp_path):
    """A randomly initialised 1-layer BERT cross-encoder built here, offline, then loaded by path."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = "lamp works marrow bay river clock hollin founded who the was in".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=1,
    )
    model_dir = tmp_path / "tiny-ce"
    BertForSequenceClassification(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rr = make_reranker("cross-encoder", model=str(model_dir), max_length=32)
    hits = make_hits(4)
    out = rr.rerank("who founded the lamp works", hits, top_k=3)
    assert len(out) == 3 and [h.rank for h in out] == [1, 2, 3]
    direct = rr.model.predict([("who founded the lamp works", t) for t in [h.title + ": " + h.text for h in hits]])
    assert [h.score for h in out] == pytest.approx(sorted(map(float, direct), reverse=True)[:3], abs=1e-5)


# ---- embedding (real bundled MiniLM) --------------------------------------------------------


def test_embedding_reranker_uses_subquestions():
    from hoprank.tools.embeddings import Embedder

    hits = [
        Hit(id="cafe", score=0.9, text="The Café Ñandú serves crème brûlée."),
        Hit(id="river", score=0.8, text="The Seren River is 212 kilometres long and flows into the Grey Sound."),
        Hit(id="ada", score=0.7, text="Ada Quill was born in Marrow Bay in 1871 and founded the Quill Lamp Works."),
    ]
    rr = make_reranker("embedding", embedder=Embedder(), llm_config=object())  # llm_config unused
    q = "Where was the founder of the Quill Lamp Works born?"
    out = rr.rerank(q, hits)
    assert out[0].id == "ada" and "cos(question)" in out[0].rationale
    sub = rr.rerank(q, hits, subqueries=["How long is the Seren River?"])
    assert sub[0].score != out[0].score and "Seren" in sub[1].rationale + sub[0].rationale
    assert sub.index(next(h for h in sub if h.id == "river")) < out.index(next(h for h in out if h.id == "river"))
    assert rr.last_trace["llm_calls"] == 0


def test_llm_failure_falls_back_to_current_order_and_is_traced():
    from hoprank.tools.errors import LLMError

    class Flaky(ScriptedLLM):
        def _complete(self, messages, **params):
            if "DOC01" in messages[-1]["content"]:
                raise LLMError("endpoint returned 500 three times")
            return super()._complete(messages, **params)

    rr = make_reranker("pointwise", llm=Flaky(["Rating: 9"], max_concurrency=2), mode="rating")
    out = rr.rerank("q", make_hits(3))
    assert [h.id for h in out] == ["d0", "d2", "d1"]  # the failed one gets the neutral rating
    assert rr.last_trace["errors"] and "500" in rr.last_trace["errors"][0]
    assert rr.last_trace["failed_calls"] == 1 and rr.last_trace["llm_calls"] == 2


# ---- end to end on the real embedded model --------------------------------------------------


@pytest.mark.slow
def test_listwise_end_to_end_on_embedded_smollm2():
    from hoprank.agent.config import LLMConfig

    hits = make_hits(4)
    rr = make_reranker("listwise", llm_config=LLMConfig(cache=False, max_tokens=64, timeout_s=900), max_tokens=40)
    out = rr.rerank("Which passage is about DOC02?", hits)
    assert sorted(h.id for h in out) == sorted(h.id for h in hits)  # a valid permutation
    assert [h.rank for h in out] == [1, 2, 3, 4] and all(h.retriever == "listwise" for h in out)
    t = rr.last_trace
    assert t["llm_calls"] == 1 and t["prompt_tokens"] > 50 and t["completion_tokens"] > 0 and t["seconds"] > 0
    assert len(t["raw"]) == 1 and sum(t["parse"].values()) == 1 and t["errors"] == []
