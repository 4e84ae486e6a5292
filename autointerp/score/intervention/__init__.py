"""The steering core of intervention scoring: push a latent's decoder direction, calibrated by KL.

- ``steer``: ``steering(model, hookpoint, direction, scale)``, a context manager that adds ``scale *
  direction`` to the output of the module ``hookpoint`` at every position of every forward pass inside
  it, the prompt and each generated token alike (a decoder-direction addition, no SAE round trip), and
  ``steering_target`` (where a latent writes, and its direction). We steer every position rather than
  only the last prompt token (delphi) because the steered completions should carry the latent's effect
  throughout, as in Gur-Arieh et al.'s output metric.
- ``inputs``: the neutral prompts and their left-padded encoding.
- ``kl``: ``kl_for_scale`` / ``scale_for_target_kl``, the mean KL(clean || steered) of the next-token
  distribution at the last position of neutral prompts, and the scale that reaches a target KL.
- ``generation``: clean and steered continuations that share their random numbers.
- ``surprisal``: delphi's surprisal variant (spec section B, PR #151).
- ``judge``: the LLM judge's prompts over steered and clean texts, and reading its answers.
- ``store``: each latent's calibrated, clean and steered continuations, computed once and stored.
- ``schedule`` and ``output_judge``: the ``output_choice`` scorer's steering over a signed KL schedule
  (Gur-Arieh et al.'s output metric) and its three-way judge.

The scale multiplies the direction as passed (a raw decoder row: the scale is then in units of the
latent's activation). Steering goes the direction's own way by default; the other side is the same
search with ``sign=-1`` (equivalently ``-direction``), and the signed scale it returns is what
``steering`` takes.
"""

from __future__ import annotations

from ...models.steering import steering, steering_target
from .generation import generate_clean_and_steered, generate_completions
from .inputs import NEUTRAL_PROMPTS, neutral_prompts
from .kl import KLCalibration, UnreachableKL, kl_for_scale, scale_for_target_kl
from .surprisal import SURPRISAL_TEMPLATE, explanation_logprobs, render_surprisal, surprisal_score

__all__ = [
    "NEUTRAL_PROMPTS",
    "SURPRISAL_TEMPLATE",
    "KLCalibration",
    "UnreachableKL",
    "explanation_logprobs",
    "generate_clean_and_steered",
    "generate_completions",
    "kl_for_scale",
    "neutral_prompts",
    "render_surprisal",
    "scale_for_target_kl",
    "steering",
    "steering_target",
    "surprisal_score",
]
