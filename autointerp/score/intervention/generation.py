"""Clean and steered continuations of the neutral prompts that share their random numbers."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch

from ...errors import AutointerpError
from ...models.steering import model_device, steering, torch_module
from .inputs import encode_left, position_ids


@torch.inference_mode()
def generate_completions(
    model,
    tokenizer,
    prompts: Sequence[str],
    direction: torch.Tensor | None = None,
    scale: float | torch.Tensor = 0.0,
    hookpoint: str | None = None,
    max_new_tokens: int = 20,
    seed: int = 0,
    temperature: float = 0.7,
    *,
    noise_rows: int | None = None,
) -> list[str]:
    """One continuation per prompt (the new text only, cut at end-of-sequence), all prompts in one
    left-padded batch, with ``scale * direction`` added at ``hookpoint`` when a direction is given
    (``scale`` may be a tensor of one scale per prompt, as ``steering`` takes).

    Sampling draws the token argmax(log p - log E) with E ~ Exp(1) noise from a ``torch.Generator``
    seeded with ``seed`` (the exponential race: an exact sample of p). The same seed gives clean and
    steered runs the same noise, so the steering is the only difference between them; ``temperature``
    0 is greedy. ``hookpoint`` defaults to that of a ``SubjectModel`` reading a module's output.
    ``noise_rows``: draw noise for that many rows and repeat it, so row i shares its random numbers with
    rows i + noise_rows, i + 2 noise_rows, ... (``generate_clean_and_steered``).
    """
    if max_new_tokens < 1 or temperature < 0:
        raise AutointerpError(
            f"max_new_tokens={max_new_tokens!r}, temperature={temperature!r}.",
            "max_new_tokens >= 1 and temperature >= 0 (0: greedy).",
        )
    if noise_rows is not None and (noise_rows < 1 or len(prompts) % noise_rows):
        raise AutointerpError(
            f"noise_rows={noise_rows!r} for {len(prompts)} prompts.", "a positive divisor of the number of prompts."
        )
    net = torch_module(model)
    if direction is not None and not hookpoint:
        # a SubjectModel's hookpoint is where its SAE writes only when the SAE reads the module's output
        hookpoint = getattr(model, "hookpoint", "") if getattr(model, "reads", "") == "output" else ""
        if not hookpoint:
            raise AutointerpError(
                "A steering direction without the module to steer.",
                "hookpoint=<module name> (steering_target gives it), or a SubjectModel "
                "reading the output its SAE reconstructs.",
            )
    device = model_device(net)
    ids, mask = encode_left(tokenizer, prompts, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    eos = _eos_ids(net, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(eos[0])
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    new: list[torch.Tensor] = []
    steer = steering(net, hookpoint, direction, scale) if direction is not None else nullcontext()
    with steer:
        positions = position_ids(mask)
        out = net(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        for step in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            if temperature > 0:
                rows = logits.shape[0] if noise_rows is None else noise_rows
                noise = logits.new_empty((rows, logits.shape[1])).exponential_(generator=generator)
                noise = noise.repeat(logits.shape[0] // rows, 1)
                token = (torch.log_softmax(logits / temperature, dim=-1) - noise.log()).argmax(-1)
            else:
                token = logits.argmax(-1)
            token = torch.where(done, torch.full_like(token, pad), token)
            new.append(token)
            done |= torch.isin(token, eos)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            out = net(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
    tokens = torch.stack(new, dim=1).tolist() if new else [[] for _ in prompts]
    eos_set = set(eos.tolist())
    texts = []
    for row in tokens:
        cut = next((i for i, t in enumerate(row) if t in eos_set), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return texts


def generate_clean_and_steered(
    model,
    tokenizer,
    prompts: Sequence[str],
    direction: torch.Tensor,
    scale: float,
    hookpoint: str | None = None,
    max_new_tokens: int = 20,
    seed: int = 0,
    temperature: float = 0.7,
) -> tuple[list[str], list[str]]:
    """(clean, steered) continuations of ``prompts``: ``generate_completions`` without and with
    ``scale * direction`` from one seed, run as one batch of 2 x len(prompts) rows whose clean rows are
    steered by 0 and share their noise with the steered rows. A decoding step of a small model on a CPU
    costs about the same for 10 rows as for 20 (each step reads all weights once), so this takes about
    half the time of the two calls."""
    n = len(prompts)
    scales = torch.tensor([0.0] * n + [float(scale)] * n)
    texts = generate_completions(
        model,
        tokenizer,
        list(prompts) * 2,
        direction,
        scales,
        hookpoint,
        max_new_tokens,
        seed,
        temperature,
        noise_rows=n,
    )
    return texts[:n], texts[n:]


def _eos_ids(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(sorted(set(ids)), device=model_device(model), dtype=torch.long)
