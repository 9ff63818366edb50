"""Cross-encoder reranking (sentence-transformers ``CrossEncoder``), from a user-given model.

No cross-encoder weights ship with hoprank and nothing is downloaded at run time, so the
model must be a local folder (or a hub name that is already in the local cache); a model
that cannot be loaded is a clear error, raised when the reranker is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hoprank.tools.rerank.base import CallRecorder, Reranker, RerankError, Scored, doc_text
from hoprank.tools.types import Hit


class CrossEncoderReranker(Reranker):
    name = "cross-encoder"
    description = "Rerank passages with a cross-encoder model that reads the query and each passage together."

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        device: str = "cpu",
        max_doc_words: int | None = 300,
    ) -> None:
        super().__init__()
        if not model:
            raise RerankError(
                "the cross-encoder reranker needs a model: no cross-encoder ships with hoprank "
                "offline. Pass model=<local folder of a sentence-transformers CrossEncoder> "
                "(e.g. one you saved with CrossEncoder(...).save(path)), or use the 'embedding' reranker."
            )
        self.model_name = str(model)
        self.batch_size = batch_size
        self.max_doc_words = max_doc_words
        self.model = self._load(self.model_name, max_length, device)

    @staticmethod
    def _load(model: str, max_length: int, device: str) -> Any:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as e:  # pragma: no cover - a core dependency
            raise RerankError("the cross-encoder reranker needs sentence-transformers installed") from e
        try:
            # local_files_only: a hub name is looked up in the local cache only, never fetched
            return CrossEncoder(model, max_length=max_length, device=device, local_files_only=True)
        except Exception as e:
            where = (
                "the folder exists but does not hold a loadable CrossEncoder"
                if Path(model).exists()
                else "it is not a local folder and is not in the local model cache (no download happens offline)"
            )
            raise RerankError(
                f"could not load cross-encoder {model!r}: {where} "
                f"({type(e).__name__}: {' '.join(str(e).split())[:200]}). "
                "No cross-encoder ships with hoprank offline: pass model=<local path> to a saved "
                "sentence-transformers CrossEncoder, or use the 'embedding' reranker."
            ) from e

    def options(self) -> dict[str, Any]:
        return {"model": self.model_name}

    def _score(
        self, query: str, hits: list[Hit], top_k: int | None, subqueries: list[str] | None, rec: CallRecorder
    ) -> list[Scored]:
        pairs = [(query, doc_text(h, self.max_doc_words)) for h in hits]
        raw = self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        scores = [float(x) for x in (raw.tolist() if hasattr(raw, "tolist") else raw)]
        if len(scores) != len(hits):
            raise RerankError(
                f"cross-encoder {self.model_name!r} returned {len(scores)} scores for {len(hits)} passages"
            )
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
        return [Scored(i, scores[i]) for i in order]
