"""Loaders on small fixtures written here, in each dataset's exact published layout."""

from __future__ import annotations

import json
import sys
import types

import pytest

from hoprank.evals import datasets as D
from hoprank.tools.errors import DatasetFormatError, MissingExtraError, OfflineError

PARAS = [
    ("Ada Quill", ["Ada Quill was born in Marrow Bay.", " She founded the Quill Lamp Works."]),
    ("Marrow Bay", ["Marrow Bay is a port town.", " It lies on the Seren River."]),
    ("Otto Brenn", ["Otto Brenn was a clockmaker."]),
]


def official_record(i: int = 0) -> dict:
    return {
        "_id": f"5a8b{i:04d}",
        "question": "Which river flows by the birthplace of Ada Quill?",
        "answer": "Seren River",
        "type": "bridge",
        "level": "medium",
        "supporting_facts": [["Ada Quill", 0], ["Marrow Bay", 1]],
        "context": [[t, s] for t, s in PARAS],
    }


def hf_record() -> dict:
    return {
        "question": "Which river flows by the birthplace of Ada Quill?",
        "answer": "Seren River",
        "type": "bridge",
        "level": "medium",
        "supporting_facts": {"title": ["Ada Quill", "Marrow Bay"], "sent_id": [0, 1]},
        "context": {"title": [t for t, _ in PARAS], "sentences": [s for _, s in PARAS]},
    }


def test_hotpotqa_official_and_hf_layouts_agree(tmp_path):
    off = tmp_path / "official.json"
    off.write_text(json.dumps([official_record()]))
    hf = tmp_path / "hf.json"
    hf.write_text(json.dumps([hf_record()]))
    (a,) = D.load_hotpotqa(off)
    (b,) = D.load_hotpotqa(hf)
    assert a.id == "5a8b0000"
    assert b.id.startswith("hp-") and b.id == D.load_hotpotqa(hf)[0].id  # stable derived id
    for ex in (a, b):
        assert ex.gold_doc_ids == ["Ada Quill", "Marrow Bay"]
        assert ex.supporting_facts == [("Ada Quill", 0), ("Marrow Bay", 1)]
        assert [d.id for d in ex.documents] == ["Ada Quill", "Marrow Bay", "Otto Brenn"]
        assert ex.documents[0].text == "Ada Quill was born in Marrow Bay. She founded the Quill Lamp Works."
        assert (ex.type, ex.level, ex.answer) == ("bridge", "medium", "Seren River")
    assert a.documents == b.documents


def test_pooled_corpus_dedups_by_title(tmp_path):
    recs = [official_record(0), official_record(1)]
    recs[1]["context"] = recs[1]["context"][1:] + [["Hollin", ["Hollin is a village."]]]
    p = tmp_path / "two.json"
    p.write_text(json.dumps(recs))
    exs = D.load_hotpotqa(p)
    assert [d.id for d in D.pooled_corpus(exs)] == ["Ada Quill", "Marrow Bay", "Otto Brenn", "Hollin"]
    assert D.example_corpus(exs[1])[0].id == "Marrow Bay"


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda r: r.pop("answer"), "answer"),
        (lambda r: r.pop("question"), "question"),
        (lambda r: r.pop("context"), "context"),
        (lambda r: r.__setitem__("supporting_facts", [["Ada Quill"]]), "supporting_facts"),
    ],
)
def test_hotpotqa_malformed_names_file_record_and_field(tmp_path, mutate, field):
    recs = [official_record(0), official_record(1)]
    mutate(recs[1])
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(recs))
    with pytest.raises(DatasetFormatError) as e:
        D.load_hotpotqa(p)
    msg = str(e.value)
    assert str(p) in msg and "record 1" in msg and "5a8b0001" in msg and field in msg


def test_hotpotqa_not_json_and_duplicate_ids(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("[{")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        D.load_hotpotqa(p)
    p.write_text(json.dumps([official_record(0), official_record(0)]))
    with pytest.raises(DatasetFormatError, match="repeats id"):
        D.load_hotpotqa(p)


def test_hotpotqa_hub_offline_raises(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="--path"):
        D.load_hotpotqa_hf()
    with pytest.raises(OfflineError):
        D.load_dataset("hotpotqa", None)


def test_hotpotqa_hub_connection_error_becomes_offline(monkeypatch):
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HOPRANK_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    fake = types.ModuleType("datasets")

    def load_dataset(*a, **k):
        raise ConnectionError("no route to huggingface.co")

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(OfflineError, match="hub"):
        D.load_hotpotqa_hf()


MHR_QUERIES = [
    {
        "query": "Did The Verge and TechCrunch both report that Lumen shipped a lamp?",
        "answer": "Yes",
        "question_type": "comparison_query",
        "evidence_list": [
            {
                "title": "Lumen ships lamp",
                "author": "A",
                "url": "u1",
                "source": "The Verge",
                "category": "technology",
                "published_at": "2023-10-01T00:00:00+00:00",
                "fact": "Lumen shipped its first lamp on Monday.",
            },
            {
                "title": "Lamp review",
                "author": "B",
                "url": "u2",
                "source": "TechCrunch",
                "category": "technology",
                "published_at": "2023-10-02T00:00:00+00:00",
                "fact": "The new Lumen lamp is bright.",
            },
        ],
    },
    {
        "query": "Who won the 2031 chess cup?",
        "answer": "Insufficient information.",
        "question_type": "null_query",
        "evidence_list": [],
    },
]
MHR_CORPUS = [
    {
        "title": "Lumen ships lamp",
        "author": "A",
        "source": "The Verge",
        "published_at": "2023-10-01T00:00:00+00:00",
        "category": "technology",
        "url": "u1",
        "body": "Lumen shipped its first lamp on Monday. " + "More words here. " * 200,
    },
    {
        "title": "Lamp review",
        "author": "B",
        "source": "TechCrunch",
        "published_at": "2023-10-02T00:00:00+00:00",
        "category": "technology",
        "url": "u2",
        "body": "The new Lumen lamp is bright.",
    },
]


def test_multihop_rag_queries_and_corpus(tmp_path):
    q = tmp_path / "MultiHopRAG.json"
    q.write_text(json.dumps(MHR_QUERIES))
    c = tmp_path / "corpus.json"
    c.write_text(json.dumps(MHR_CORPUS))
    exs = D.load_multihop_rag(q)
    assert [e.type for e in exs] == ["comparison_query", "null_query"]
    assert exs[0].gold_doc_ids == ["Lumen ships lamp", "Lamp review"]
    assert exs[0].supporting_facts[0] == "Lumen shipped its first lamp on Monday."
    assert exs[1].gold_doc_ids == [] and exs[1].supporting_facts == []  # kept, but no retrieval gold
    assert exs[0].id != exs[1].id
    docs = D.load_multihop_rag_corpus(c)
    assert [d.id for d in docs] == ["Lumen ships lamp", "Lamp review"]
    assert docs[0].metadata["source"] == "The Verge"
    chunks = D.chunk_multihop_rag_corpus(docs)
    first = [ch for ch in chunks if ch.doc_id == "Lumen ships lamp"]
    assert len(first) == 3  # 606 words -> 256 + 256 + 94
    assert all(len(ch.text.split()) <= 256 for ch in chunks)


def test_multihop_rag_malformed(tmp_path):
    bad = [dict(MHR_QUERIES[0]), dict(MHR_QUERIES[0])]
    bad[1] = {k: v for k, v in bad[1].items() if k != "question_type"}
    q = tmp_path / "q.json"
    q.write_text(json.dumps(bad))
    with pytest.raises(DatasetFormatError, match=r"record 1.*question_type"):
        D.load_multihop_rag(q)
    corpus = [{"title": "x"}]
    c = tmp_path / "corpus.json"
    c.write_text(json.dumps(corpus))
    with pytest.raises(DatasetFormatError, match=r"corpus.json: record 0.*'body'"):
        D.load_multihop_rag_corpus(c)


FANOUT_DEV = [
    {
        "id": "fo-1",
        "question": "What is the total population of the two largest towns on the Seren River?",
        "decomposition": [
            {
                "id": "fo-1-a",
                "question": "What are the two largest towns on the Seren River?",
                "decomposition": [],
                "answer": ["Marrow Bay", "Hollin"],
                "depends_on": [],
                "evidence": {
                    "pageid": 1,
                    "revid": 11,
                    "title": "Seren River",
                    "url": "https://en.wikipedia.org/wiki/Seren_River",
                },
            },
            {
                "id": "fo-1-b",
                "question": "What is the population of Marrow Bay?",
                "decomposition": [
                    {
                        "id": "fo-1-b-1",
                        "question": "Marrow Bay census 2020?",
                        "decomposition": [],
                        "answer": 1200,
                        "depends_on": [],
                        "evidence": {"pageid": 2, "revid": 22, "title": "Marrow Bay", "url": "u"},
                    }
                ],
                "answer": 1200,
                "depends_on": ["fo-1-a"],
                "evidence": None,
            },
        ],
        "answer": {"Marrow Bay": 1200, "Hollin": 300},
        "categories": ["Geography"],
    }
]


def test_fanoutqa_dev_layout(tmp_path):
    p = tmp_path / "fanout-final-dev.json"
    p.write_text(json.dumps(FANOUT_DEV))
    (ex,) = D.load_fanoutqa_dev(p)
    assert ex.id == "fo-1" and ex.type == "Geography"
    assert ex.answer == "Marrow Bay: 1200; Hollin: 300"
    subs = ex.metadata["decomposition"]
    assert [s.id for s in subs] == ["fo-1-a", "fo-1-b", "fo-1-b-1"]
    assert subs[1].depends_on == ["fo-1-a"] and subs[2].depth == 1
    assert ex.gold_doc_ids == ["Seren River", "Marrow Bay"]
    from hoprank.evals.metrics import decomposition_match

    m = decomposition_match(["What are the two largest towns on the Seren River?"], [s.question for s in subs])
    assert m["precision"] == 1.0 and 0 < m["recall"] < 1


def test_fanoutqa_malformed_and_missing_extra(tmp_path, monkeypatch):
    bad = json.loads(json.dumps(FANOUT_DEV))
    del bad[0]["decomposition"][1]["decomposition"][0]["question"]
    p = tmp_path / "dev.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(DatasetFormatError, match="question"):
        D.load_fanoutqa_dev(p)
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingExtraError, match=r"hoprank\[fanoutqa\]"):
        D.load_fanoutqa_dev()


def test_fanoutqa_reads_package_data_without_importing(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "fanoutqa"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "data" / "fanout-final-dev.json").write_text(json.dumps(FANOUT_DEV))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "fanoutqa", raising=False)
    (ex,) = D.load_fanoutqa_dev()
    assert ex.id == "fo-1" and "fanoutqa" not in sys.modules


def test_jsonl_loader(tmp_path):
    p = tmp_path / "qa.jsonl"
    p.write_text(
        json.dumps({"id": "a", "question": "Q1?", "answer": "A1", "gold_doc_ids": ["d1"], "type": "bridge"})
        + "\n\n"
        + json.dumps({"question": "Q2?", "answer": 42, "gold_docs": ["d2", "d3"]})
        + "\n"
    )
    a, b = D.load_jsonl(p)
    assert (a.id, a.gold_doc_ids, a.type) == ("a", ["d1"], "bridge")
    assert (b.id, b.answer, b.gold_doc_ids) == ("1", "42", ["d2", "d3"])
    p.write_text(json.dumps({"id": "x", "question": "Q?"}) + "\n")
    with pytest.raises(DatasetFormatError, match=r"qa.jsonl: record 0 \(id 'x'\): missing field 'answer'"):
        D.load_jsonl(p)
    p.write_text('{"question": "Q?", "answer": "A"}\n{oops\n')
    with pytest.raises(DatasetFormatError, match="line 2"):
        D.load_jsonl(p)


def test_load_dataset_dispatch_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="unknown dataset"):
        D.load_dataset("squad", tmp_path / "x")
    with pytest.raises(DatasetFormatError, match="not found"):
        D.load_dataset("jsonl", tmp_path / "missing.jsonl")
