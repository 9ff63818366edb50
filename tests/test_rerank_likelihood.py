"""Likelihood scoring modes of the LLM rerankers (issue 9, item 4).

Setwise by label likelihood, listwise FIRST and calibrated pointwise are driven here by a
real loopback HTTP server speaking OpenAI's chat completions with ``logprobs`` /
``top_logprobs`` (what vLLM returns), through the real ``OpenAICompatLLM`` and
``label_logprobs``. The server reads the documents of each prompt and answers from a hidden
preference order, so the tests check that heapsort, bubblesort, FIRST and pointwise recover
that order; then that a backend without log-probabilities, one whose top tokens are
garbage, and one that fails all fall back to the text prompt, named and counted in the
trace; that cached calls count like paid ones; and (slow) that every mode runs on the real
embedded SmolLM2 without falling back.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import LoopbackServer, send_json

from hoprank.agent.config import LLMConfig
from hoprank.tools.llm import make_llm
from hoprank.tools.llm.base import ScriptedLLM
from hoprank.tools.llm.cache import ResponseCache
from hoprank.tools.rerank import RerankError, make_reranker
from hoprank.tools.types import Hit

HIDDEN = [7, 2, 11, 0, 9, 4, 1, 10, 3, 8, 6, 5]  # the server's preference, best first
RANK = {d: r for r, d in enumerate(HIDDEN)}


def make_hits(n: int) -> list[Hit]:
    return [
        Hit(id=f"d{i}", score=1.0 - i / 100, text=f"passage on topic DOC{i:02d} with words", title=f"T{i}", rank=i + 1)
        for i in range(n)
    ]


def chat_reply(content: str, logprobs: Any = None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": logprobs,
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51},
    }


def top(pairs: list[tuple[str, float]]) -> dict[str, Any]:
    """An OpenAI ``logprobs`` object: one generated token with its top alternatives."""
    alts = [{"token": t, "logprob": lp, "bytes": None} for t, lp in pairs]
    return {"content": [{"token": pairs[0][0], "logprob": pairs[0][1], "bytes": None, "top_logprobs": alts}]}


def labelled_docs(user: str) -> list[tuple[str, int]]:
    """(label, DOCnn) of the ``Passage A: ...`` lines of a likelihood prompt."""
    return [(lab, int(d)) for lab, d in re.findall(r"^Passage ([A-Z]): [^\n]*?DOC(\d\d)", user, flags=re.M)]


def label_bias(label: str) -> float:
    """The server model's prior for a label as the first token: "A" strongly, then falling
    (a small model's position bias), strong enough to override the documents uncalibrated."""
    return -2.0 * (ord(label) - ord("A"))


def log_softmax(pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    z = math.log(sum(math.exp(v) for _, v in pairs))
    return sorted(((t, v - z) for t, v in pairs), key=lambda tv: -tv[1])


def oracle(body: dict[str, Any], rank: dict[int, int] = RANK) -> dict[str, Any]:
    """The hidden-order judge: letter log-probabilities (hidden preference + a label bias)
    for setwise/FIRST prompts, the bias alone for their "N/A" calibration prompts, yes/no
    log-probabilities for pointwise ones; text prompts get the Rank-R1 / RankGPT answer."""
    user = body["messages"][-1]["content"]
    docs = labelled_docs(user)
    if body.get("logprobs"):
        if "Passage A: N/A" in user:  # content-free: only the bias
            labels = re.findall(r"^Passage ([A-Z]): N/A$", user, flags=re.M)
            pairs = log_softmax([(lab, label_bias(lab)) for lab in labels])
            return chat_reply(pairs[0][0], top(pairs[:20]))
        if docs:
            ranked = sorted(docs, key=lambda ld: rank[ld[1]])
            pairs = log_softmax([(lab, -1.5 * i + label_bias(lab)) for i, (lab, _) in enumerate(ranked)])
            # a leading space on some tokens: servers return " B" as often as "B"
            spaced = [((" " if i % 2 else "") + t, v) for i, (t, v) in enumerate(pairs[:20])]
            return chat_reply(pairs[0][0], top(spaced))
        m = re.search(r"DOC(\d\d)", user)
        if m is None:  # a content-free calibration prompt ("N/A" or empty document)
            return chat_reply("Yes", top([("Yes", math.log(0.8)), ("No", math.log(0.2))]))
        p = 0.95 - rank[int(m.group(1))] / 15
        return chat_reply("Yes", top([("Yes", math.log(p)), ("No", math.log(1 - p)), ("The", -6.0)]))
    numbered = [int(d) for d in re.findall(r"^\[\d+\][^\n]*?DOC(\d\d)", user, flags=re.M)]
    order = sorted(range(len(numbered)), key=lambda j: rank[numbered[j]])
    if "<answer>" in body["messages"][0]["content"]:
        return chat_reply(f"<think>best</think><answer>[{order[0] + 1}]</answer>")
    return chat_reply(" > ".join(f"[{j + 1}]" for j in order))


class LogprobServer(LoopbackServer):
    """/v1/chat/completions on 127.0.0.1: ``respond(body)`` builds each answer (a dict, or
    an int for an HTTP error status); every request body is kept."""

    def __init__(self, respond: Callable[[dict[str, Any]], Any]) -> None:
        self.respond = respond
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        super().__init__(self._reply, "/v1")

    def _reply(self, handler: Any, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)
        out = self.respond(body)
        code, payload = (out, {"error": {"message": f"fake {out}"}}) if isinstance(out, int) else (200, out)
        send_json(handler, code, payload)

    def scoring_requests(self) -> list[dict[str, Any]]:
        return [b for b in self.requests if b.get("logprobs")]


@pytest.fixture()
def serve():
    servers: list[LogprobServer] = []

    def start(respond: Callable[[dict[str, Any]], Any] = oracle) -> LogprobServer:
        servers.append(LogprobServer(respond))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture(autouse=True)
def _no_ambient_openai_env(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HOPRANK_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)


def llm_for(server: LogprobServer, tmp_path, cache: bool = False) -> Any:
    over = {"cache_dir": str(tmp_path / "cache")} if cache else {}
    return make_llm(
        LLMConfig(
            backend="openai", base_url=server.url, model="fake-model", cache=cache, max_retries=0, timeout_s=5.0, **over
        )
    )


def expected(n: int) -> list[str]:
    return [f"d{d}" for d in HIDDEN if d < n]


# ---- the hidden order is recovered -----------------------------------------------------------


@pytest.mark.parametrize("method,num_child", [("heapsort", 3), ("heapsort", 19), ("bubblesort", 3)])
def test_setwise_likelihood_recovers_the_order(serve, tmp_path, method, num_child):
    server = serve()
    llm = llm_for(server, tmp_path)
    rr = make_reranker("setwise", llm=llm, method=method, num_child=num_child, k=5, scoring="likelihood")
    out = rr.rerank("q", make_hits(12), top_k=5)
    assert [h.id for h in out] == expected(12)[:5]
    t = rr.last_trace
    assert t["fallbacks"] == {} and t["errors"] == [] and "scoring_fallback" not in t
    # one calibration prompt ("N/A" passages) per set size
    sizes = {len(labelled_docs(b["messages"][-1]["content"])) for b in server.requests} - {0}
    assert sorted(t["label_prior"]) == sorted(str(n) for n in sizes)
    assert t["llm_calls"] == len(server.requests) == len(server.scoring_requests())
    assert t["llm_calls"] == t["parse"]["logprob"] + len(sizes)
    assert t["prompt_tokens"] == 50 * t["llm_calls"] and t["completion_tokens"] == 0  # scored, nothing generated
    assert server.requests[0]["max_tokens"] == 1 and server.requests[0]["top_logprobs"] == 20
    assert "label likelihood" in out[0].rationale and t["options"]["scoring"] == "likelihood"


def test_setwise_likelihood_permutations_vote_with_probabilities(serve, tmp_path):
    server = serve()
    llm = llm_for(server, tmp_path)
    rr = make_reranker("setwise", llm=llm, num_child=3, k=3, num_permutation=3, scoring="likelihood")
    out = rr.rerank("q", make_hits(10), top_k=3)
    assert [h.id for h in out] == expected(10)[:3]
    shown = [[d for _, d in labelled_docs(b["messages"][-1]["content"])] for b in server.requests]
    assert len({tuple(s) for s in shown}) > len({frozenset(s) for s in shown})  # shuffled copies were asked


@pytest.mark.parametrize("n,window,stride,exact", [(12, 20, 10, 12), (25, 10, 5, 5)])
def test_listwise_first_recovers_the_order(serve, tmp_path, n, window, stride, exact):
    hidden = HIDDEN + list(range(12, n))
    rank = {d: r for r, d in enumerate(hidden)}
    server = serve(lambda body: oracle(body, rank))
    rr = make_reranker("listwise", llm=llm_for(server, tmp_path), window=window, stride=stride, scoring="first")
    out = rr.rerank("q", make_hits(n))
    # one pass of sliding windows sorts at least the top window - stride exactly
    assert [h.id for h in out][:exact] == [f"d{d}" for d in hidden][:exact]
    t = rr.last_trace
    windows = 1 if n <= window else 4
    sizes = {min(n, window)} | ({n - (windows - 1) * stride} if n > window else set())
    assert t["llm_calls"] == len(server.requests) == windows + len(sizes) and t["fallbacks"] == {}
    prompt = server.requests[0]["messages"][-1]["content"]
    assert "Passage A:" in prompt and "C > B > A" in prompt


def test_pointwise_calibrated_orders_and_calibrates(serve, tmp_path):
    server = serve()
    rr = make_reranker("pointwise", llm=llm_for(server, tmp_path), scoring="calibrated")
    out = rr.rerank("q", make_hits(6))
    assert [h.id for h in out] == expected(6)
    t = rr.last_trace
    assert t["llm_calls"] == 6 + 2 == len(server.scoring_requests())  # + "N/A" and empty document
    bias = math.log(0.8 / 0.2)
    assert t["content_free_log_odds"] == pytest.approx(bias, abs=1e-3)
    p = 0.95 - RANK[2] / 15  # d2 is the best of d0..d5
    assert out[0].id == "d2" and out[0].score == pytest.approx(math.log(p / (1 - p)) - bias, abs=1e-3)
    assert t["pointwise_mode"] == "calibrated-likelihood" and "calibrated" in out[0].rationale
    docs = [
        b["messages"][-1]["content"].split("Document:", 1)[1].split("\n\n")[0].strip()
        for b in server.scoring_requests()
    ]
    assert "N/A" in docs and "" in docs


@pytest.mark.parametrize("name,opts", [("setwise", {"num_child": 3, "k": 5}), ("listwise", {"window": 20})])
def test_calibration_removes_the_label_bias(serve, tmp_path, name, opts):
    """The server's first token favours "A" by 2 nats a letter: uncalibrated, the bias wins."""
    scoring = "likelihood" if name == "setwise" else "first"
    got = {}
    for calib in (True, False):
        server = serve()
        rr = make_reranker(name, llm=llm_for(server, tmp_path), scoring=scoring, calibrate=calib, **opts)
        got[calib] = [h.id for h in rr.rerank("q", make_hits(12), top_k=5)]
        assert ("label_prior" in rr.last_trace) == calib and rr.last_trace["options"]["calibrate"] is calib
    assert got[True] == expected(12)[:5] and got[False] != got[True]


# ---- fallbacks, named and counted ------------------------------------------------------------


def no_logprobs(body: dict[str, Any]) -> dict[str, Any]:
    """A server that ignores ``logprobs``: the text answers of the oracle, nothing else."""
    return oracle({**body, "logprobs": False})


def garbage_top(body: dict[str, Any]) -> dict[str, Any]:
    """Log-probabilities whose top tokens are none of the labels (a chatty model)."""
    if body.get("logprobs"):
        return chat_reply("The", top([("The", -0.1), ("I", -2.5), ("Sure", -3.0)]))
    return oracle(body)


def error_on_scoring(body: dict[str, Any]) -> Any:
    return 500 if body.get("logprobs") else oracle(body)


@pytest.mark.parametrize(
    "respond,why",
    [(no_logprobs, "no log-probabilities"), (garbage_top, "none of the labels"), (error_on_scoring, "500")],
)
def test_setwise_falls_back_to_text_and_says_so(serve, tmp_path, respond, why):
    server = serve(respond)
    rr = make_reranker("setwise", llm=llm_for(server, tmp_path), num_child=3, k=3, scoring="likelihood")
    out = rr.rerank("q", make_hits(9), top_k=3)
    assert [h.id for h in out] == expected(9)[:3]  # the text prompt answered instead
    t = rr.last_trace
    assert t["scoring_fallback"] == "text" and why in t["errors"][0]
    n_text = len(server.requests) - len(server.scoring_requests())
    assert t["fallbacks"] == {"setwise likelihood -> text": n_text} and n_text > 0
    # the failed first batch is not retried as scoring: one try, then text for the rest
    assert len(server.scoring_requests()) <= 3 + 1 and t["failed_calls"] >= 1  # + the "N/A" prompt
    assert t["llm_calls"] == n_text and t["parse"].get("ok") == n_text


@pytest.mark.parametrize("respond", [no_logprobs, garbage_top, error_on_scoring])
def test_listwise_first_falls_back_to_the_permutation(serve, tmp_path, respond):
    server = serve(respond)
    rr = make_reranker("listwise", llm=llm_for(server, tmp_path), window=4, stride=2, scoring="first")
    out = rr.rerank("q", make_hits(8))
    t = rr.last_trace
    assert [h.id for h in out][:2] == expected(8)[:2]
    assert t["fallbacks"] == {"listwise first -> text": 3} and len(server.scoring_requests()) <= 2  # window + "N/A"
    assert t["parse"] == {"ok": 3} and t["errors"]


@pytest.mark.parametrize("respond", [garbage_top, error_on_scoring])
def test_pointwise_calibrated_falls_back_to_text_mode(serve, tmp_path, respond):
    server = serve(respond)
    rr = make_reranker("pointwise", llm=llm_for(server, tmp_path), scoring="calibrated", mode="rating")
    out = rr.rerank("q", make_hits(4))
    t = rr.last_trace
    assert t["fallbacks"] == {"pointwise calibrated -> text": 1} and t["pointwise_mode"] == "rating"
    assert len(out) == 4 and len(server.requests) - len(server.scoring_requests()) == 4


def test_a_backend_that_cannot_score_falls_back_without_a_server():
    from test_rerank import judge  # the scripted perfect judge of the text prompts

    hidden = [3, 0, 5, 1, 4, 2]
    cases = [
        ("setwise", {"num_child": 2, "k": 3, "scoring": "likelihood"}, "r1"),
        ("listwise", {"scoring": "first"}, "perm"),
    ]
    for name, opts, style in cases:
        rr = make_reranker(name, llm=ScriptedLLM(judge(hidden, style)), **opts)
        out = rr.rerank("q", make_hits(6), top_k=3)
        t = rr.last_trace
        assert [h.id for h in out] == [f"d{d}" for d in hidden[:3]], name
        assert "cannot return log-probabilities" in t["errors"][0] and sum(t["fallbacks"].values()) >= 1
        assert t["failed_calls"] == 1  # one scoring attempt, then text


# ---- accounting: cached calls count like paid ones -------------------------------------------


def test_cached_scoring_calls_count_their_tokens(serve, tmp_path):
    server = serve()
    llm = llm_for(server, tmp_path, cache=True)
    rr = make_reranker("setwise", llm=llm, num_child=3, k=3, scoring="likelihood")
    first = rr.rerank_with_trace("q", make_hits(9), top_k=3)
    n = len(server.requests)
    second = rr.rerank_with_trace("q", make_hits(9), top_k=3)
    assert len(server.requests) == n  # all from the cache
    a, b = first[1], second[1]
    assert [h.id for h in first[0]] == [h.id for h in second[0]]
    assert a["llm_calls"] == b["llm_calls"] == n and a["prompt_tokens"] == b["prompt_tokens"] > 0
    assert (a["cached_calls"], a["cached_tokens"]) == (0, 0)
    assert b["cached_calls"] == n and b["cached_tokens"] == b["prompt_tokens"]


def test_cached_text_calls_count_their_tokens(tmp_path):
    from test_rerank import judge

    llm = ScriptedLLM(judge([2, 0, 1], "perm"))
    llm.cache = ResponseCache(tmp_path / "cache")
    rr = make_reranker("listwise", llm=llm)
    _, a = rr.rerank_with_trace("q", make_hits(3))
    _, b = rr.rerank_with_trace("q", make_hits(3))
    assert len(llm.calls) == 1 and a["llm_calls"] == b["llm_calls"] == 1
    tokens = [t["prompt_tokens"] + t["completion_tokens"] for t in (a, b)]
    assert tokens[0] == tokens[1] == b["cached_tokens"] > 0
    assert b["cached_calls"] == b["cache_hits"] == 1 and a["cached_calls"] == 0


# ---- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,opts,msg",
    [
        ("setwise", {"scoring": "logits"}, "'text' or 'likelihood'"),
        ("setwise", {"scoring": "likelihood", "num_child": 26}, "num_child must be <= 25"),
        ("listwise", {"scoring": "likelihood"}, "'text' or 'first'"),
        ("listwise", {"scoring": "first", "window": 30}, "window must be <= 26"),
        ("pointwise", {"scoring": "first"}, "'text' or 'calibrated'"),
    ],
)
def test_bad_scoring_options_are_one_line_errors(name, opts, msg):
    with pytest.raises(RerankError, match=re.escape(msg)):
        make_reranker(name, llm=ScriptedLLM(["x"]), **opts)


# ---- the real embedded model ------------------------------------------------------------------


@pytest.mark.slow
def test_every_likelihood_mode_scores_on_embedded_smollm2():
    llm = make_llm(LLMConfig(cache=False, timeout_s=900))
    hits = [
        ("ada", "Ada Quill", "Ada Quill was born in Marrow Bay in 1871 and founded the Quill Lamp Works."),
        ("river", "Seren River", "The Seren River is 212 kilometres long and flows into the Grey Sound."),
        ("cafe", "Cafe Nandu", "The Cafe Nandu serves creme brulee and strong coffee."),
        ("lamp", "Quill Lamp Works", "The Quill Lamp Works made brass ship lamps in Marrow Bay until 1932."),
        ("bay", "Marrow Bay", "Marrow Bay is a fishing town on the Grey Sound."),
    ]
    hits = [Hit(id=i, score=1.0 - n / 10, text=text, title=title) for n, (i, title, text) in enumerate(hits)]
    q = "Where was the founder of the Quill Lamp Works born?"
    for name, opts in [
        ("setwise", {"num_child": 2, "k": 2, "scoring": "likelihood"}),
        ("listwise", {"scoring": "first"}),
        ("pointwise", {"scoring": "calibrated"}),
    ]:
        rr = make_reranker(name, llm=llm, **opts)
        out = rr.rerank(q, hits)
        t = rr.last_trace
        assert sorted(h.id for h in out) == sorted(h.id for h in hits), name
        assert all(math.isfinite(h.score) for h in out), name
        assert t["fallbacks"] == {} and t["errors"] == [] and "scoring_fallback" not in t, (name, t["errors"])
        assert t["llm_calls"] >= 1 and t["prompt_tokens"] > 50 * t["llm_calls"] and t["completion_tokens"] == 0, name
        assert t["parse"]["logprob"] >= 1, name
        scores = [float(x.split(":")[1]) for r in t["raw"] for x in r["text"].split()]
        assert scores and all(math.isfinite(s) and s <= 0 for s in scores), name  # real log-probabilities
    assert math.isfinite(rr.last_trace["content_free_log_odds"])


def test_a_paid_scoring_call_counts_its_seconds_once(serve, tmp_path):
    from hoprank.tools.llm.scoring import label_logprobs

    server = serve()
    llm = llm_for(server, tmp_path)
    msgs = [{"role": "user", "content": "Passage A: DOC02 x\nPassage B: DOC07 y"}]
    scores, r = label_logprobs(llm, msgs, ["A", "B"])
    # the oracle: B's document preferred by 1.5 nats, A's label by 2 (its bias)
    assert scores["A"] - scores["B"] == pytest.approx(0.5) and r.latency_s > 0
    u = llm.usage.snapshot()
    assert u.calls == 1 and u.prompt_tokens == 50 and llm.usage.seconds == pytest.approx(r.latency_s, rel=1e-6)
