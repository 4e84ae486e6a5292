"""An in-process transformers model that batches concurrent requests together.

Requests arriving while a batch is being generated wait in a queue; the worker takes up to
``max_batch`` of them with the same options and generates them in one left-padded ``generate`` call in
a thread, so the event loop stays free. Logprobs come from the generation scores.
"""

from __future__ import annotations

import asyncio
import logging

import torch

from ..models import embedded
from ..models.subject import resolve_device, resolve_dtype
from .base import Backend, Completion, GenerateOptions, PermanentError, TokenLogprob
from .guided import RegexGuide

log = logging.getLogger(__name__)


class LocalBackend(Backend):
    kind = "local"

    def __init__(self, model: str = embedded.EMBEDDED, max_batch: int = 8, device: str = "auto", dtype: str = "auto"):
        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        if model == embedded.EMBEDDED:
            self._model, self._tokenizer = embedded.load_smollm2(torch_dtype)
            self.model = "SmolLM2-135M-Instruct"
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(model)
            self._model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
            self.model = model
        self._model.to(dev).eval()
        self._device = dev
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self.max_batch = max_batch
        self._queue: asyncio.Queue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None
        self.batches: list[int] = []  # size of every generate call, for tests and benchmarks

    def count_tokens(self, messages: list[dict], generation_prompt: bool = True) -> int:
        """Prompt tokens of ``messages`` with the chat template, as ``generate`` counts them (without the
        generation prompt: as the start of a longer prompt)."""
        return len(chat_token_ids(self._tokenizer, messages, generation_prompt))

    async def generate(self, messages: list[dict], options: GenerateOptions) -> Completion:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # first use, or used again from a new event loop
            self._loop, self._queue = loop, asyncio.Queue()
            self._worker = asyncio.create_task(self._work())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, options, future))
        return await future

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0)  # let requests submitted in the same tick join
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            groups: dict[GenerateOptions, list] = {}
            for item in batch:
                groups.setdefault(item[1], []).append(item)
            for options, items in groups.items():
                try:
                    results = await asyncio.to_thread(self._generate_batch, [i[0] for i in items], options)
                except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                    for _, _, future in items:
                        if not future.done():
                            future.set_exception(PermanentError(f"local generation failed: {exc}"))
                    continue
                for (_, _, future), result in zip(items, results, strict=True):
                    if not future.done():
                        future.set_result(result)

    @torch.inference_mode()
    def _generate_batch(self, conversations: list[list[dict]], options: GenerateOptions) -> list[Completion]:
        tok = self._tokenizer
        prompts = [
            tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) + options.prefill
            for m in conversations
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        sampling = (
            dict(do_sample=True, temperature=options.temperature)
            if options.temperature > 0
            else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        )
        if options.regex:
            sampling["prefix_allowed_tokens_fn"] = RegexGuide(tok, options.regex, enc.input_ids.shape[1])
        out = self._model.generate(
            **enc,
            max_new_tokens=options.max_tokens,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            output_scores=options.logprobs,
            return_dict_in_generate=True,
            **sampling,
        )
        self.batches.append(len(conversations))
        new = out.sequences[:, enc.input_ids.shape[1] :]
        prompt_lengths = enc.attention_mask.sum(1).tolist()
        results = []
        for i in range(len(conversations)):
            ids = new[i].tolist()
            n = len(ids)
            finish = "length"
            if tok.eos_token_id in ids:
                n = ids.index(tok.eos_token_id)
                finish = "stop"
            logprobs = None
            if options.logprobs:
                logprobs = []
                for step in range(n):
                    lp = torch.log_softmax(out.scores[step][i].float(), dim=-1)
                    top = lp.topk(max(options.top_logprobs, 1))
                    logprobs.append(
                        TokenLogprob(
                            token=tok.decode([ids[step]]),
                            logprob=float(lp[ids[step]]),
                            top={tok.decode([int(t)]): float(v) for v, t in zip(top.values, top.indices, strict=True)},
                        )
                    )
            results.append(
                Completion(
                    text=tok.decode(ids[:n], skip_special_tokens=True),
                    prompt_tokens=int(prompt_lengths[i]),
                    completion_tokens=n,
                    logprobs=logprobs,
                    finish_reason=finish,
                )
            )
        return results

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
            self._queue = None


def chat_token_ids(tokenizer, messages: list[dict], generation_prompt: bool = True) -> list[int]:
    """The token ids of ``messages`` in ``tokenizer``'s chat template, as ``LocalBackend`` sends them
    (``generation_prompt=False``: without the assistant's opening, as the start of a longer prompt)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False).input_ids
