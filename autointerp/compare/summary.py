"""The ``compare_summary`` rows: one measure each, with its n, the random baseline where there is one,
and a note saying what it is or why it is missing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .matching import EXACT_LIMIT, Matching, matched_share, pw_mcc

THRESHOLDS = (0.5, 0.7, 0.9)


@dataclass
class Measure:
    """One row of ``compare_summary``."""

    measure: str
    value: float | None
    n: int | None
    baseline: float | None = None
    note: str | None = None


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson r, None with fewer than 3 points or a constant side."""
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (Pearson of average ranks)."""
    from scipy.stats import rankdata

    return pearson(rankdata(x), rankdata(y)) if len(x) >= 3 else None


def decoder_measures(matching: Matching, baseline: Matching | None, n_a: int, n_b: int) -> list[Measure]:
    """PW-MCC, matched shares, the assignment method and each side's size."""
    pairs = min(n_a, n_b)
    method_note = {
        "hungarian": f"exact Hungarian (scipy linear_sum_assignment) on the dense cosine matrix: n_a x n_b <= "
        f"{EXACT_LIMIT}",
        "sparse": f"n_a x n_b > {EXACT_LIMIT}: exact min-weight full matching on the top-k candidate graph "
        "(scipy min_weight_full_bipartite_matching)",
        "greedy": "greedy by descending cosine on the top-k candidate graph (it had no full matching)",
    }[matching.method]
    rows = [
        Measure(
            "pw_mcc",
            pw_mcc(matching, n_a, n_b),
            pairs,
            None if baseline is None else pw_mcc(baseline, n_a, n_b),
            "mean decoder cosine over the optimal one-to-one matching (Song et al. 2025); baseline: two random "
            "Gaussian dictionaries of the same shapes, matched the same way",
        )
    ]
    for t in THRESHOLDS:
        rows.append(
            Measure(
                f"matched_share_{t}",
                matched_share(matching, n_a, n_b, t),
                pairs,
                None if baseline is None else matched_share(baseline, n_a, n_b, t),
                f"share of the smaller side's latents matched with decoder cosine > {t}",
            )
        )
    rows.append(Measure("assignment", None, len(matching), None, f"{matching.method}: {method_note}"))
    return rows


def pair_measures(decoder_cos: np.ndarray, activation: np.ndarray | None, explanation: np.ndarray | None) -> list:
    """Means of the per-pair measures and the correlations between them."""
    rows = []
    if activation is not None:
        finite = _finite(activation)
        rows.append(
            Measure(
                "activation_corr",
                float(finite.mean()) if len(finite) else None,
                len(finite),
                None,
                "mean Pearson correlation of matched pairs' activations over the sampled tokens (pairs where "
                "both latents fired)",
            )
        )
    if explanation is not None:
        finite = _finite(explanation)
        rows.append(
            Measure(
                "explanation_sim",
                float(finite.mean()) if len(finite) else None,
                len(finite),
                None,
                "mean cosine of matched pairs' latest explanation embeddings",
            )
        )
        both = np.isfinite(explanation) & np.isfinite(decoder_cos)
        x, y = decoder_cos[both], explanation[both]
        rows.append(
            Measure(
                "decoder_vs_explanation_corr",
                pearson(x, y),
                int(both.sum()),
                None,
                "Pearson correlation of decoder_cos and explanation_sim over matched pairs with both",
            )
        )
        rows.append(
            Measure(
                "decoder_vs_explanation_spearman",
                spearman(x, y),
                int(both.sum()),
                None,
                "Spearman rank correlation of decoder_cos and explanation_sim over matched pairs with both",
            )
        )
    return rows
