"""vLLM's offline engine for batch evaluation on a GPU (optional extra ``hoprank[vllm]``).

Why a separate backend from the OpenAI-compatible one: for an eval run over thousands of
prompts, handing the whole batch to one ``LLM.chat`` call lets vLLM schedule it with
continuous batching and no HTTP round trips. ``chat_many`` therefore sends every uncached
conversation in one engine call; ``chat`` is a batch of one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from hoprank.tools.errors import LLMError, MissingExtraError
from hoprank.tools.llm.base import ChatLLM, LLMResponse, Messages, _check_messages

INSTALL_HINT = "pip install 'hoprank[vllm]'"


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise MissingExtraError(
            f"llm.backend=vllm needs the vLLM engine (a CUDA GPU): {INSTALL_HINT}; or serve the model with "
            "`vllm serve MODEL` and use llm.backend=openai with llm.base_url"
        ) from e
    return vllm


def to_sampling_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Our generation params -> ``vllm.SamplingParams`` keyword arguments."""
    kw: dict[str, Any] = {
        "max_tokens": int(params.get("max_tokens") or 512),
        "temperature": float(params.get("temperature", 0.0)),
    }
    if params.get("seed") is not None:
        kw["seed"] = int(params["seed"])
    if params.get("stop"):
        kw["stop"] = params["stop"] if isinstance(params["stop"], list) else [params["stop"]]
    if params.get("logprobs"):
        kw["logprobs"] = int(params.get("top_logprobs") or 5)
    return kw


def to_conversation(messages: Messages) -> list[dict[str, str]]:
    """vLLM's chat template wants plain role/content strings."""
    return [{"role": str(m["role"]), "content": m.get("content") or ""} for m in messages]


class VLLMEngineLLM(ChatLLM):
    backend_name = "vllm"
    serial = True  # the engine batches internally

    def __init__(
        self,
        model: str,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int = 0,
        n_ctx: int | None = None,
        engine: Any = None,
        vllm_module: Any = None,
    ):
        super().__init__()
        if not model:
            raise LLMError("llm.backend=vllm needs llm.model (a Hugging Face model id or local path)")
        self.vllm = vllm_module or import_vllm()
        self.model_name = model
        self.defaults = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        kw: dict[str, Any] = {"model": model, "seed": seed}
        if n_ctx:
            kw["max_model_len"] = n_ctx
        self.engine = engine if engine is not None else self.vllm.LLM(**kw)

    @classmethod
    def from_config(cls, cfg: Any) -> VLLMEngineLLM:
        vllm = import_vllm()  # fail with the extra's name before anything else
        return cls(
            cfg.model,
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            seed=cfg.seed,
            n_ctx=cfg.n_ctx,
            vllm_module=vllm,
        ).configure(cfg)

    def sampling_params(self, params: dict[str, Any]) -> Any:
        kw = to_sampling_kwargs(params)
        schema = params.get("json_schema")
        if schema:
            guided = getattr(getattr(self.vllm, "sampling_params", None), "GuidedDecodingParams", None)
            if guided is not None:
                kw["guided_decoding"] = guided(json=schema)
        return self.vllm.SamplingParams(**kw)

    def _to_response(self, out: Any, latency: float) -> LLMResponse:
        comp = out.outputs[0]
        lps = None
        if getattr(comp, "logprobs", None):
            lps = []
            for tok_id, step in zip(comp.token_ids, comp.logprobs):
                chosen = step.get(tok_id)
                top = {str(lp.decoded_token): float(lp.logprob) for lp in step.values()}
                lps.append(
                    {
                        "token": str(getattr(chosen, "decoded_token", "")),
                        "logprob": float(getattr(chosen, "logprob", float("-inf"))),
                        "top": top,
                    }
                )
        return LLMResponse(
            text=comp.text,
            prompt_tokens=len(getattr(out, "prompt_token_ids", None) or []),
            completion_tokens=len(comp.token_ids),
            model=self.model_name,
            latency_s=latency,
            logprobs=lps,
            finish_reason=getattr(comp, "finish_reason", None),
        )

    def _generate(self, convs: list[Messages], params: dict[str, Any]) -> list[LLMResponse]:
        t0 = time.perf_counter()
        outs = self.engine.chat(
            [to_conversation(m) for m in convs], self.sampling_params(params), use_tqdm=len(convs) > 1
        )
        per = (time.perf_counter() - t0) / max(1, len(convs))
        return [self._to_response(o, per) for o in outs]

    def _complete(self, messages: Messages, **params: Any) -> LLMResponse:
        return self._generate([messages], params)[0]

    def chat_many(self, batch: Sequence[Messages], *, return_exceptions: bool = False, **params: Any) -> list[Any]:
        """Cache hits first, then every miss in ONE engine call (vLLM schedules the batch)."""
        eff = self._effective_params(params)
        results: list[Any] = [None] * len(batch)
        todo: list[int] = []
        keys: list[str | None] = []
        for i, m in enumerate(batch):
            _check_messages(m)
            key = self._cache_key(m, eff) if self.cache is not None else None
            hit = self._cache_get(key)
            if hit is not None:
                self.usage.add(hit)
                results[i] = hit
            else:
                todo.append(i)
                keys.append(key)
        if todo:
            try:
                outs = self._generate([batch[i] for i in todo], eff)
            except Exception as e:
                err = self._fail(1, e)
                if not return_exceptions:
                    raise err from e
                for i in todo:
                    results[i] = err
                return results
            for i, key, r in zip(todo, keys, outs):
                self._cache_put(key, r)
                self.usage.add(r)
                results[i] = r
        return results
