"""Arad et al.'s input and output scores as pure functions over ids and probabilities (section A of
shared/specs/intervention-and-output-scores.md), and the random directions that give their chance level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..classifier import latent_rng


def peak_token_ids(records: Sequence[tuple[Sequence[int], Sequence[float]]]) -> list[int]:
    """The token id at the argmax of each record's activations (``records``: (token_ids, activations)),
    the first of equal maxima; compared as ids, never as strings (the spec's pitfall)."""
    peaks = []
    for ids, acts in records:
        best = max(range(len(acts)), key=lambda j: (acts[j], -j))
        peaks.append(int(ids[best]))
    return peaks


def input_hits(peaks: Sequence[int], representative: Sequence[int]) -> int:
    """How many peak tokens are among the representative tokens; the input score is hits / len(peaks)."""
    tokens = {int(t) for t in representative}
    return sum(int(p) in tokens for p in peaks)


def output_terms(probs: torch.Tensor, representative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank_term, prob_term), each [n], of next-token probabilities ``probs`` [n, |V|] and each row's
    representative token ids ``representative`` [n, k]; the output score is their product.

    ``prob_term`` = max over R of p(r). ``rank_term`` = 1 - min over R of rank(r) / |V|, with rank(r)
    0-based in descending order of p; the token of least rank is the likeliest one, so its rank is the
    number of tokens strictly likelier than ``prob_term`` (ties give the best place, where the spec's
    sort leaves the order of equal probabilities unspecified)."""
    chosen = probs.gather(1, representative.to(probs.device))
    prob_term = chosen.max(dim=-1).values
    rank = (probs > prob_term[:, None]).sum(dim=-1)
    rank_term = 1.0 - rank.double() / probs.shape[-1]
    return rank_term, prob_term.double()


def random_directions(rows: torch.Tensor, latents: Sequence[int], seed: int) -> torch.Tensor:
    """[n, d] directions uniform on the sphere, each as long as the decoder row ``rows[i]`` of latent
    ``latents[i]``; seeded by (seed, latent), so a latent's random baseline is the same whichever latents
    are scored with it."""
    width = rows.shape[-1]
    out = torch.empty(len(latents), width, dtype=torch.float64)
    for i, latent in enumerate(latents):
        generator = torch.Generator().manual_seed(latent_rng(seed, latent, "random direction").randrange(2**62))
        out[i] = torch.randn(width, generator=generator, dtype=torch.float64)
    out = out / out.norm(dim=-1, keepdim=True) * rows.double().norm(dim=-1, keepdim=True)
    return out.to(rows.dtype)
