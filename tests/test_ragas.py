"""RAGAS metrics through hoprank's ChatLLM: hand-computable scripted judgements, NaN
counting with reasons, and a socket guard proving the whole path stays offline."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest

from hoprank.evals.ragas_eval import (
    RagasSample,
    aragas_scores,
    parse_structured,
    ragas_scores,
)
from hoprank.tools.llm.base import ScriptedLLM

Q = "Who founded the Quill Lamp Works and when?"
ANSWER = "Ada Quill founded the Quill Lamp Works in 1896 in Paris."
REFERENCE = "Ada Quill founded it in 1896 in Marrow Bay."
CONTEXTS = [
    "Quill Lamp Works was founded in 1896 in Marrow Bay by Ada Quill.",
    "The Seren River is 212 kilometres long.",
    "Ada Quill was born in Marrow Bay in 1871.",
]


def nli(*verdicts: int) -> str:
    return json.dumps(
        {"statements": [{"statement": f"s{i}", "reason": "r", "verdict": v} for i, v in enumerate(verdicts)]}
    )


def judge(messages) -> str:
    """Scripted replies keyed on which ragas prompt is asking (and on its input)."""
    p = messages[0]["content"]
    inp = p.rsplit("Now perform the same with the following input", 1)[-1]
    if "Break down each sentence into one or more fully understandable statements" in p:
        return json.dumps({"statements": ["Ada Quill founded the works.", "It was in 1896.", "It was in Paris."]})
    if "Decompose and break down each of the input sentences" in p:
        if "Paris" in inp:  # the response
            return json.dumps({"claims": ["Ada Quill founded the works.", "The works are in Paris."]})
        return json.dumps({"claims": ["Ada Quill founded it.", "It was in 1896.", "It is in Marrow Bay."]})
    if "judge the faithfulness of a series of statements" in p:
        if '"Ada Quill founded the works.",' in inp and "It was in Paris" in inp:
            return nli(1, 1, 0)  # faithfulness: 2 of 3 statements supported
        if "The works are in Paris." in inp:
            return nli(1, 0)  # response claims vs reference: tp=1, fp=1
        return nli(1, 0, 0)  # reference claims vs response: 2 not covered -> fn=2
    if "ContextPrecisionOutput" in p:  # one call per context: only the river one is useless
        return json.dumps({"reason": "", "verdict": 0 if "Seren" in inp else 1})
    if "ContextRecallOutput" in p:
        return json.dumps(
            {
                "classifications": [
                    {"statement": "Ada Quill founded it.", "reason": "r", "attributed": 1},
                    {"statement": "It was in 1896.", "reason": "r", "attributed": 0},
                ]
            }
        )
    if "AnswerRelevanceOutput" in p:
        return json.dumps({"question": Q, "noncommittal": 0})
    return "I do not know."


@pytest.fixture(scope="module")
def embedder():
    from hoprank.tools.embeddings import Embedder

    return Embedder()


def test_hand_computed_scores(embedder):
    llm = ScriptedLLM(judge)
    s = RagasSample(Q, ANSWER, CONTEXTS, reference=REFERENCE, id="q1")
    res = ragas_scores([s], llm, embedder, strictness=2)
    sc = res.samples[0].scores
    assert sc["faithfulness"] == pytest.approx(2 / 3)
    # verdicts [1, 0, 1]: AP = (1/1 + 2/3) / 2
    assert sc["context_precision"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-6)
    assert sc["context_recall"] == pytest.approx(0.5)
    # tp=1 fp=1 fn=2: P=1/2, R=1/3, F1=0.4 (ragas rounds to 2 decimals)
    assert sc["factual_correctness"] == pytest.approx(0.4)
    # the generated question equals the user question: MiniLM cosine 1
    assert sc["answer_relevancy"] == pytest.approx(1.0, abs=1e-4)
    assert res.undetermined == dict.fromkeys(res.metrics, 0)
    assert res.aggregates["faithfulness"] == pytest.approx(2 / 3)
    assert res.samples[0].id == "q1" and res.samples[0].reasons == {}
    # calls: faithfulness 2, relevancy 2 (strictness), precision 3 (one per context), recall 1, fc 4
    assert res.llm_calls == 12 == len(llm.calls)
    json.dumps(res.to_dict(include_raw=True))


def test_context_precision_is_order_sensitive():
    def reply(messages):
        p = messages[0]["content"]
        inp = p.rsplit("following input", 1)[-1]
        return json.dumps({"reason": "", "verdict": 0 if "Seren" in inp else 1})

    ctx = [CONTEXTS[1], CONTEXTS[0], CONTEXTS[2]]  # irrelevant first
    res = ragas_scores(
        [RagasSample(Q, ANSWER, ctx, reference=REFERENCE)],
        ScriptedLLM(reply),
        metrics=["context_precision"],
    )
    # verdicts [0, 1, 1]: AP = (1/2 + 2/3) / 2
    assert res.aggregates["context_precision"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-6)


def test_nan_is_counted_with_reasons_never_averaged_as_zero():
    def reply(messages):
        p = messages[0]["content"]
        if "Faithful sample" in p and "Break down" in p:
            return json.dumps({"statements": ["Faithful statement one.", "Faithful statement two."]})
        if "Faithful statement one." in p:
            return nli(1, 1)
        if "Empty sample" in p and "Break down" in p:
            return json.dumps({"statements": []})  # ragas: no statements -> NaN
        if "AnswerRelevanceOutput" in p:
            return json.dumps({"question": "", "noncommittal": 0})  # nothing generated back
        return "Sure! Here is the answer: the lamp works."  # a 135M model's garbage

    samples = [
        RagasSample("Q?", "Faithful sample answer.", ["ctx"], reference="ref"),
        RagasSample("Q?", "Garbage sample answer.", ["ctx"], reference="ref"),
        RagasSample("Q?", "Empty sample answer.", ["ctx"]),  # no reference
        RagasSample("Q?", "", ["ctx"], reference="ref"),  # failed question: no answer
    ]
    llm = ScriptedLLM(reply)
    res = ragas_scores(
        samples,
        llm,
        embedder=None,
        metrics=["faithfulness", "context_recall", "response_relevancy"],
    )
    assert res.metrics == ("faithfulness", "context_recall", "answer_relevancy")
    f = [s.scores["faithfulness"] for s in res.samples]
    assert f[0] == 1.0 and all(math.isnan(v) for v in f[1:])
    assert res.aggregates["faithfulness"] == 1.0  # mean over the one determined sample
    assert res.undetermined["faithfulness"] == 3
    assert res.undetermined_reasons["faithfulness"] == {
        "unparseable_llm_output": 1,
        "metric_returned_nan": 1,
        "missing_answer": 1,
    }
    assert res.undetermined["context_recall"] == 4
    # context recall needs no answer: the 4th sample is judged (garbage) too
    assert res.undetermined_reasons["context_recall"] == {
        "unparseable_llm_output": 3,
        "missing_reference": 1,
    }
    assert res.aggregates["context_recall"] is None
    assert res.undetermined_reasons["answer_relevancy"] == {"no_embedder": 3, "missing_answer": 1}
    d = res.to_dict()
    assert d["samples"][1]["scores"]["faithfulness"] is None  # JSON null, not 0
    assert "raw_outputs" not in d["samples"][0]
    assert res.samples[1].raw_outputs["faithfulness"] == ["Sure! Here is the answer: the lamp works."]


def test_silent_zeros_of_ragas_are_kept_and_flagged(embedder):
    """ragas' own value is the headline (0.0 when nothing was judged); the determined-only
    variant leaves those samples out, and each is flagged with its reason."""

    def reply(messages):
        p = messages[0]["content"]
        if "AnswerRelevanceOutput" in p:
            return json.dumps({"question": "", "noncommittal": 0})
        if "ClaimDecompositionOutput" in p:
            return json.dumps({"claims": []})
        return "{}"

    res = ragas_scores(
        [RagasSample(Q, ANSWER, CONTEXTS, reference=REFERENCE)],
        ScriptedLLM(reply),
        embedder,
        metrics=["answer_relevancy", "factual_correctness"],
        strictness=1,
    )
    assert res.samples[0].scores == {"answer_relevancy": 0.0, "factual_correctness": 0.0}
    flagged = {"answer_relevancy": "no_questions_generated", "factual_correctness": "no_claims"}
    assert res.samples[0].silent_zero == flagged
    assert res.undetermined == {"answer_relevancy": 0, "factual_correctness": 0}
    assert res.aggregates == {"answer_relevancy": 0.0, "factual_correctness": 0.0}
    assert res.aggregates_determined_only == {"answer_relevancy": None, "factual_correctness": None}
    assert res.silent_zeros == {"answer_relevancy": 1, "factual_correctness": 1}


def test_llm_errors_are_undetermined_not_fatal():
    class Down(ScriptedLLM):
        def _complete(self, messages, **params):
            raise ConnectionError("endpoint down")

    res = ragas_scores([RagasSample(Q, ANSWER, CONTEXTS)], Down([""]), metrics=["faithfulness"])
    assert res.undetermined == {"faithfulness": 1}
    assert res.undetermined_reasons == {"faithfulness": {"llm_error": 1}}
    assert "endpoint down" in res.samples[0].reasons["faithfulness"]


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="bogus"):
        ragas_scores([], ScriptedLLM([""]), metrics=["bogus"])


async def test_callable_inside_a_running_event_loop():
    llm = ScriptedLLM(judge)
    s = RagasSample(Q, ANSWER, CONTEXTS, reference=REFERENCE)
    sync = ragas_scores([s], llm, metrics=["faithfulness"])  # runs in a worker thread
    direct = await aragas_scores([s], llm, metrics=["faithfulness"])
    assert sync.aggregates["faithfulness"] == direct.aggregates["faithfulness"] == pytest.approx(2 / 3)


def test_parser_accepts_small_model_shapes():
    from ragas.metrics.collections.faithfulness.util import StatementGeneratorOutput

    assert parse_structured('```json\n{"statements": ["a"]}\n``` trailing', StatementGeneratorOutput).statements == [
        "a"
    ]
    assert parse_structured('["a", "b"]', StatementGeneratorOutput).statements == [
        "a",
        "b",
    ]  # bare list
    with pytest.raises(ValueError, match="StatementGeneratorOutput"):
        parse_structured('{"foo": 1}', StatementGeneratorOutput)


def test_whole_path_makes_no_network_connection(tmp_path):
    """Fresh interpreter (so ragas' import runs under the guard): import, score, embed."""
    script = textwrap.dedent(
        """
        import json, socket, sys
        attempts = []
        real = socket.socket.connect
        def connect(self, address):
            if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
                attempts.append(str(address)); raise OSError("network forbidden")
            return real(self, address)
        def gai(host, *a, **k):
            attempts.append(str(host)); raise socket.gaierror("dns forbidden")
        socket.socket.connect = connect
        socket.getaddrinfo = gai
        sys.path.insert(0, sys.argv[1])
        from test_ragas import judge, RagasSample, Q, ANSWER, CONTEXTS, REFERENCE
        from hoprank.evals.ragas_eval import ragas_scores
        from hoprank.tools.embeddings import Embedder
        from hoprank.tools.llm.base import ScriptedLLM
        sample = RagasSample(Q, ANSWER, CONTEXTS, reference=REFERENCE)
        r = ragas_scores([sample], ScriptedLLM(judge), Embedder(), strictness=1)
        import ragas.tokenizers as rt  # ragas' default would download o200k_base
        assert rt.DEFAULT_TOKENIZER.encode("tokenizer stays offline")
        print(json.dumps({"attempts": attempts, "undetermined": r.undetermined}))
        """
    )
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    unset = {
        "RAGAS_DO_NOT_TRACK",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    }  # prove our own defaults suffice
    env = {k: v for k, v in __import__("os").environ.items() if k not in unset}
    out = subprocess.run(
        [sys.executable, "-c", script, tests_dir],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    assert all(v == 0 for v in report["undetermined"].values())
