"""Whether a collect's token budget left too many live latents under the minimum of activating contexts,
and how many tokens would bring them over it.

The estimate scales each live latent's observed activating contexts with the corpus read: a latent seen
in ``n`` activating contexts over ``S`` sequences is expected to reach the minimum ``m`` at
``S * m / n`` sequences. That assumes the rest of the corpus is like the part read. It uses the observed
count of activating contexts rather than the per-token frequency ``f`` with independent firings
(``1 - (1 - f)^L`` per sequence of ``L`` tokens): latents fire in bursts, and a latent firing 30 times in
3 sequences would be predicted 30 contexts, so that model promises fewer tokens than are needed, often
fewer than were already read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import ALL_TOKENS
from ..store.coverage import LiveContexts, read_live_contexts

#: Warn when more than this share of live latents is under the minimum.
WARN_SHARE = 0.10


def minimum_activating(config) -> int:
    """The fewest activating contexts an ``ok`` latent has: ``config.min_activating`` where the
    configuration has that field, else the older derived ``min_activating_contexts``."""
    value = getattr(config, "min_activating", None)
    return int(value if value is not None else config.min_activating_contexts)


def sequences_needed(n_active_contexts: np.ndarray, n_sequences: int, minimum: int) -> np.ndarray:
    """Per latent, the sequences at which its expected activating contexts reach ``minimum``, scaling its
    observed count (at least 1: live latents only) in proportion to the sequences read."""
    n = np.maximum(np.asarray(n_active_contexts, dtype=np.float64), 1.0)
    return np.ceil(minimum * n_sequences / n).astype(np.int64)


@dataclass
class Shortfall:
    """Live latents under the minimum after a collect, and the tokens estimated to bring them over it."""

    live: int
    under: int
    minimum: int
    tokens_read: int
    tokens_for_share: int
    """Tokens after which at most ``WARN_SHARE`` of live latents are expected under the minimum."""
    tokens_for_all: int
    """Tokens after which every live latent is expected over the minimum."""


def shortfall(seen: LiveContexts, minimum: int, share: float = WARN_SHARE) -> Shortfall | None:
    """The shortfall when more than ``share`` of the live latents are under ``minimum``, else None."""
    counts = np.asarray(seen.n_active_contexts)
    live = len(counts)
    under = int((counts < minimum).sum())
    allowed = math.floor(
        share * live + 1e-9
    )  # latents that may stay under; 1e-9 for a product a hair below a whole number
    if live == 0 or under <= allowed:
        return None
    needed = np.sort(sequences_needed(counts, seen.n_sequences, minimum))
    k = live - 1 - allowed  # all but the `allowed` neediest latents reach the minimum at needed[k]
    return Shortfall(
        live,
        under,
        minimum,
        seen.n_sequences * seen.seq_len,
        int(needed[k]) * seen.seq_len,
        int(needed[-1]) * seen.seq_len,
    )


def round_up(value: int, digits: int = 2) -> int:
    """``value`` rounded up to ``digits`` significant digits (4,512,768 -> 4,600,000)."""
    if value <= 0:
        return 0
    step = 10 ** max(len(str(value)) - digits, 0)
    return -(-value // step) * step


def describe(s: Shortfall, whole_corpus: bool = False) -> str:
    """The warning's text: how many are under, the token estimates, and the estimate's assumption."""
    text = (
        f"{s.under:,} of {s.live:,} live latents ({s.under / s.live:.0%}) have fewer than {s.minimum} activating "
        f"contexts, the minimum to be explained and scored, after {s.tokens_read:,} tokens. "
        f"About {round_up(s.tokens_for_share):,} tokens would leave at most {WARN_SHARE:.0%} of live latents "
        f"under it, and about {round_up(s.tokens_for_all):,} none (estimated by scaling each latent's "
        "activating contexts with the tokens read, which assumes the rest of the corpus is like the part "
        "read; for a latent seen in a few contexts the estimate is rough). "
    )
    if whole_corpus:
        return text + "The whole corpus was read: a larger corpus would be needed."
    return text + "Pass --tokens N to collect over more."


def budget_warning(con, config) -> str | None:
    """The warning for the collect stored behind ``con`` with ``config``, or None when none is due."""
    seen = read_live_contexts(con)
    if seen is None:
        return None
    found = shortfall(seen, minimum_activating(config))
    if found is None:
        return None
    return describe(found, whole_corpus=config.tokens == ALL_TOKENS)
