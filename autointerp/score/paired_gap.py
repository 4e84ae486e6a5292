"""The paired gap of real scores over their control, with a 95% interval over latents.

Per latent the gap is ``score - control score`` (same explainer and scorer configuration: the
``control_gaps`` view); the reported number is the mean gap over latents. Its interval is a percentile
bootstrap over latents (resampling latents with replacement, so each latent's real and control scores
stay paired), ``N_RESAMPLES`` resamples drawn with a fixed seed, so the same rows always give the same
interval. One latent gives no interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class PairedGap:
    """Mean gap over ``n`` latents and its bootstrap interval (None for fewer than two latents)."""

    gap: float | None
    low: float | None
    high: float | None
    n: int

    def text(self, digits: int = 3) -> str:
        """'+0.123 [+0.050, +0.190], n=12', or '-' without latents."""
        if self.gap is None:
            return "-"
        interval = "" if self.low is None else f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return f"{self.gap:+.{digits}f}{interval}, n={self.n}"


def paired_gap(
    scores: Sequence[float], controls: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> PairedGap:
    """The mean of ``scores[i] - controls[i]`` over latents i and its 95% percentile-bootstrap interval."""
    if len(scores) != len(controls):
        raise ValueError(f"{len(scores)} scores and {len(controls)} controls: they must be paired")
    diff = np.asarray(scores, dtype=np.float64) - np.asarray(controls, dtype=np.float64)
    n = len(diff)
    if n == 0:
        return PairedGap(None, None, None, 0)
    mean = float(diff.mean())
    if n < 2:
        return PairedGap(mean, None, None, 1)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedGap(mean, float(low), float(high), n)
