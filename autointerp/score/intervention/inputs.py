"""The neutral prompts steering continues, and their left-padded encoding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ...errors import AutointerpError
from ...text import prompt_text

NEUTRAL_PROMPTS = "intervention_neutral_prompts.txt"


def neutral_prompts(path: str | Path | None = None, name: str = NEUTRAL_PROMPTS) -> list[str]:
    """The neutral prompt openings, one per non-empty line (lines starting with # are comments), of the
    file ``path``, or else of the packaged ``prompts/<name>`` (default the intervention scorers')."""
    if path is None:
        where, text = f"prompts/{name}", prompt_text(name)
    else:
        where, text = str(path), Path(path).read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise AutointerpError(f"{where} holds no prompt.", "one neutral prompt per line.")
    return prompts


def encode_left(tokenizer, prompts: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (input_ids, attention_mask), so every prompt's last token is at position -1."""
    if not prompts:
        raise AutointerpError("No prompts were given.", "at least one prompt.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rows = [tokenizer(p).input_ids for p in prompts]
    if any(len(r) == 0 for r in rows):
        raise AutointerpError("A prompt tokenizes to no token.", "non-empty prompts.")
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (as ``generate`` computes them)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
