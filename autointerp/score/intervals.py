"""95% intervals for a score's headline number, as pure functions over counts and arrays.

Every stored score carries one (``score_rows.ci_low``, ``ci_high``, ``ci_method``); the method named in
``ci_method`` is one of:

- ``wilson``: the Wilson score interval of a proportion k / n (accuracy, intervention_choice's
  accuracy). No continuity correction; it is scipy's ``binomtest(k, n).proportion_ci(method='wilson')``.
- ``wilson_mover``: balanced accuracy (TPR + TNR) / 2. The Wilson intervals of TPR (over the P
  positives) and TNR (over the N negatives) are combined by MOVER (Zou & Donner 2008, "method of
  variance estimates recovery") for a sum of independent proportions:
  low = BA - sqrt((TPR - l_TPR)^2 + (TNR - l_TNR)^2) / 2, high likewise with the upper limits. Chosen
  over a bootstrap because it is exact to compute, needs no seed, and does not collapse to a point
  when TPR or TNR is 0 or 1 (a percentile bootstrap does).
- ``delong``: AUROC +- z * its DeLong standard error (DeLong, DeLong & Clarke-Pearson 1988, computed
  with midranks), clipped to [0, 1]. Needs at least two positives and two negatives; with perfect
  separation the standard error is 0 and the interval is the point.
- ``fisher_z``: a correlation r over n units: tanh(atanh(r) +- z / sqrt(n - 3)); needs n > 3.
- ``bootstrap``: the percentile interval of a mean over ``BOOTSTRAP_RESAMPLES`` resamples of its
  values with replacement, from a seeded generator (same values and seed, same interval).

A function returns ``None`` where its interval is undefined (too few units); the score row then has
NULL bounds and NULL ``ci_method``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .metrics import midranks

CONFIDENCE = 0.95
Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A 95% interval [low, high] and the name of the method that made it (module docstring)."""

    low: float
    high: float
    method: str


def wilson(successes: int, n: int) -> Interval | None:
    """The Wilson score interval of the proportion ``successes`` / ``n``; None when n = 0."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    p = successes / n
    z2 = Z * Z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return Interval(max(0.0, center - half), min(1.0, center + half), "wilson")


def balanced_accuracy_interval(tp: int, n_positive: int, tn: int, n_negative: int) -> Interval | None:
    """MOVER combination of the Wilson intervals of TPR = tp / n_positive and TNR = tn / n_negative;
    None unless both classes are present."""
    tpr_ci, tnr_ci = wilson(tp, n_positive), wilson(tn, n_negative)
    if tpr_ci is None or tnr_ci is None:
        return None
    tpr, tnr = tp / n_positive, tn / n_negative
    ba = (tpr + tnr) / 2
    low = ba - math.hypot(tpr - tpr_ci.low, tnr - tnr_ci.low) / 2
    high = ba + math.hypot(tpr_ci.high - tpr, tnr_ci.high - tnr) / 2
    return Interval(max(0.0, low), min(1.0, high), "wilson_mover")


def delong_variance(labels, scores) -> tuple[float, float] | None:
    """(AUROC, its DeLong variance) of ``scores`` for binary ``labels``, ties counting one half; None
    unless there are at least two positives and two negatives."""
    y = np.asarray(labels, bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    pos, neg = s[y], s[~y]
    m, n = pos.size, neg.size
    if m < 2 or n < 2:
        return None
    combined = midranks(np.r_[pos, neg])
    v10 = (combined[:m] - midranks(pos)) / n  # per positive: share of negatives it outranks
    v01 = 1.0 - (combined[m:] - midranks(neg)) / m  # per negative: share of positives outranking it
    auc = float(v10.mean())
    return auc, float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)


def delong(labels, scores) -> Interval | None:
    """AUROC +- z * DeLong standard error, clipped to [0, 1] (module docstring)."""
    result = delong_variance(labels, scores)
    if result is None:
        return None
    auc, var = result
    half = Z * math.sqrt(max(var, 0.0))
    return Interval(max(0.0, auc - half), min(1.0, auc + half), "delong")


def fisher_z(r: float | None, n: int) -> Interval | None:
    """The Fisher z interval of a correlation ``r`` over ``n`` independent units; None when r is None
    or n <= 3."""
    if r is None or n <= 3:
        return None
    if abs(r) >= 1.0:  # atanh is infinite: the interval is the point
        return Interval(float(r), float(r), "fisher_z")
    z, half = math.atanh(r), Z / math.sqrt(n - 3)
    return Interval(math.tanh(z - half), math.tanh(z + half), "fisher_z")


def bootstrap_mean(values: Sequence[float], seed: int | Sequence[int]) -> Interval | None:
    """Percentile bootstrap interval of the mean of ``values`` (``BOOTSTRAP_RESAMPLES`` resamples from
    ``numpy.random.default_rng(seed)``); None with fewer than two values."""
    x = np.asarray(values, np.float64).reshape(-1)
    if x.size < 2 or not np.all(np.isfinite(x)):
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(BOOTSTRAP_RESAMPLES, x.size))].mean(axis=1)
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(low), float(high), "bootstrap")


def binary_interval(metrics: dict, headline: str, labels=None, probabilities=None) -> Interval | None:
    """The interval of the headline metric of ``score.metrics.binary_metrics``' result: ``wilson_mover``
    for balanced_accuracy, ``wilson`` for accuracy, ``delong`` for auroc (over the examples that have a
    probability, as the AUROC itself); None for any other metric or where undefined."""
    if headline == "balanced_accuracy":
        return balanced_accuracy_interval(metrics["tp"], metrics["n_positive"], metrics["tn"], metrics["n_negative"])
    if headline == "accuracy":
        return wilson(metrics["tp"] + metrics["tn"], metrics["n"])
    if headline == "auroc" and labels is not None and probabilities is not None:
        probs = np.array([np.nan if v is None else float(v) for v in probabilities], np.float64)
        has = ~np.isnan(probs)
        return delong(np.asarray(labels, bool)[has], probs[has])
    return None
