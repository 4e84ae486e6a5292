"""The interval methods of autointerp/score/intervals.py against reference computations (scipy, a
brute-force DeLong over all pairs) on random data, and their coverage where the reference is a simulation."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from scipy import stats

from autointerp.config import ScoreConfig
from autointerp.score import intervals
from autointerp.score.metrics import binary_metrics
from autointerp.score.stage import score

from .conftest import query
from .openai_server import ModelServer
from .test_score_stage import explained_db  # noqa: F401


@pytest.mark.parametrize("seed", range(5))
def test_wilson_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(1, 300))
        k = int(rng.integers(0, n + 1))
        ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        got = intervals.wilson(k, n)
        assert got.method == "wilson"
        assert got.low == pytest.approx(ref.low, abs=1e-12)
        assert got.high == pytest.approx(ref.high, abs=1e-12)
    assert intervals.wilson(0, 0) is None
    with pytest.raises(ValueError):
        intervals.wilson(5, 4)


def test_balanced_accuracy_is_mover_of_scipy_wilson_intervals():
    rng = np.random.default_rng(1)
    for _ in range(50):
        p, n = int(rng.integers(1, 80)), int(rng.integers(1, 80))
        tp, tn = int(rng.integers(0, p + 1)), int(rng.integers(0, n + 1))
        a = stats.binomtest(tp, p).proportion_ci(method="wilson")
        b = stats.binomtest(tn, n).proportion_ci(method="wilson")
        tpr, tnr = tp / p, tn / n
        ba = (tpr + tnr) / 2
        low = ba - np.sqrt((tpr - a.low) ** 2 + (tnr - b.low) ** 2) / 2
        high = ba + np.sqrt((a.high - tpr) ** 2 + (b.high - tnr) ** 2) / 2
        got = intervals.balanced_accuracy_interval(tp, p, tn, n)
        assert (got.low, got.high, got.method) == (pytest.approx(low), pytest.approx(high), "wilson_mover")
        assert got.low <= ba <= got.high
    # perfect on both classes still leaves a real interval below 1 (a percentile bootstrap would not)
    perfect = intervals.balanced_accuracy_interval(25, 25, 25, 25)
    assert perfect.high == 1.0 and 0.85 < perfect.low < 1.0
    assert intervals.balanced_accuracy_interval(3, 3, 0, 0) is None


def test_balanced_accuracy_interval_covers_about_95_percent():
    rng = np.random.default_rng(7)
    tpr, tnr, p, n = 0.8, 0.65, 40, 60
    truth = (tpr + tnr) / 2
    hits = 0
    trials = 2000
    for _ in range(trials):
        ci = intervals.balanced_accuracy_interval(int(rng.binomial(p, tpr)), p, int(rng.binomial(n, tnr)), n)
        hits += ci.low <= truth <= ci.high
    assert 0.93 <= hits / trials <= 0.975


def _delong_brute_force(labels, scores):
    """DeLong's structural components from their definition, over every (positive, negative) pair."""
    labels = np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size


@pytest.mark.parametrize("seed", range(6))
def test_delong_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(2, 60)), int(rng.integers(2, 60))
    labels = np.r_[np.ones(m, bool), np.zeros(n, bool)]
    scores = np.r_[rng.normal(0.7, 1, m), rng.normal(0, 1, n)]
    if seed % 2:
        scores = np.round(scores, 1)  # ties
    auc, var = intervals.delong_variance(labels, scores)
    ref_auc, ref_var = _delong_brute_force(labels, scores)
    assert auc == pytest.approx(ref_auc) and var == pytest.approx(ref_var)
    ci = intervals.delong(labels, scores)
    half = 1.959963984540054 * np.sqrt(ref_var)
    assert ci.method == "delong"
    assert ci.low == pytest.approx(max(0, ref_auc - half)) and ci.high == pytest.approx(min(1, ref_auc + half))
    assert intervals.delong([True, False, False], [0.9, 0.1, 0.2]) is None


def test_fisher_z_matches_scipy_pearsonr():
    rng = np.random.default_rng(3)
    for n in (5, 20, 200):
        x = rng.normal(size=n)
        y = 0.5 * x + rng.normal(size=n)
        res = stats.pearsonr(x, y)
        ref = res.confidence_interval(0.95)
        got = intervals.fisher_z(float(res.statistic), n)
        assert got.method == "fisher_z"
        assert got.low == pytest.approx(ref.low) and got.high == pytest.approx(ref.high)
    assert intervals.fisher_z(0.5, 3) is None
    assert intervals.fisher_z(None, 50) is None
    assert intervals.fisher_z(1.0, 50) == intervals.Interval(1.0, 1.0, "fisher_z")


def test_bootstrap_mean_agrees_with_scipy_and_is_seeded():
    rng = np.random.default_rng(4)
    values = rng.exponential(size=60)
    got = intervals.bootstrap_mean(values, seed=[11, 5])
    assert got == intervals.bootstrap_mean(values, seed=[11, 5])
    assert got != intervals.bootstrap_mean(values, seed=[12, 5])
    ref = stats.bootstrap((values,), np.mean, confidence_level=0.95, method="percentile", n_resamples=20000, rng=0)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert got.low == pytest.approx(ref.confidence_interval.low, abs=0.1 * width)
    assert got.high == pytest.approx(ref.confidence_interval.high, abs=0.1 * width)
    assert got.method == "bootstrap"
    assert intervals.bootstrap_mean([1.0], seed=0) is None


def test_binary_interval_picks_the_headline_method():
    labels = [True] * 6 + [False] * 6
    preds = [True, True, True, True, False, None, False, False, False, True, False, False]
    probs = [0.9, 0.8, 0.7, 0.6, 0.3, None, 0.2, 0.1, 0.4, 0.65, 0.2, 0.05]
    m = binary_metrics(labels, preds, probs)
    ba = intervals.binary_interval(m, "balanced_accuracy")
    assert ba == intervals.balanced_accuracy_interval(4, 5, 5, 6)
    assert intervals.binary_interval(m, "accuracy") == intervals.wilson(9, 11)
    keep = [p is not None for p in probs]
    ref = intervals.delong(np.array(labels)[keep], np.array([p for p in probs if p is not None]))
    assert intervals.binary_interval(m, "auroc", labels, probs) == ref
    assert intervals.binary_interval(m, "f1") is None


# ---- through the score stage ---------------------------------------------------------------------------


@pytest.mark.slow
def test_stage_stores_n_and_interval_recomputable_from_the_stored_contexts(explained_db, local_backend):  # noqa: F811
    """Detection (balanced accuracy) and embedding (AUROC) through the stage: each row's n_positive,
    n_negative and interval equal what the stored per-context rows give, the Wilson parts by scipy."""
    db, latents = explained_db
    with ModelServer(local_backend) as server:
        config = ScoreConfig(
            backend="openai", model="smollm2", base_url=server.base_url, scorers="detection,embedding", max_tokens=16
        )
        asyncio.run(score(config, db, progress=False))
    rows = query(
        db,
        "SELECT latent, scorer, explanation_id, config_hash, status, score, n_positive, n_negative, ci_low, ci_high, "
        "ci_method FROM scores WHERE scorer NOT LIKE 'cue:%' ORDER BY latent, scorer",
    )
    assert len(rows) == 2 * len(latents)
    for latent, scorer, explanation_id, chash, status, value, n_pos, n_neg, low, high, method in rows:
        examples = query(
            db,
            "SELECT label, prediction, probability FROM score_examples WHERE latent = ? AND scorer = ? "
            "AND explanation_id = ? AND config_hash = ? AND control = ''",
            [latent, scorer, explanation_id, chash],
        )
        scored = [(label, pred) for label, pred, _ in examples if pred is not None]
        assert (n_pos, n_neg) == (sum(1 for lab, _ in scored if lab), sum(1 for lab, _ in scored if not lab))
        if status != "scored" or value is None:
            assert (low, high, method) == (None, None, None)
            continue
        assert low <= value <= high
        if scorer == "detection":
            tp = sum(1 for lab, pred in scored if lab and pred)
            tn = sum(1 for lab, pred in scored if not lab and not pred)
            a = stats.binomtest(tp, n_pos).proportion_ci(method="wilson")
            b = stats.binomtest(tn, n_neg).proportion_ci(method="wilson")
            tpr, tnr = tp / n_pos, tn / n_neg
            assert method == "wilson_mover"
            assert low == pytest.approx(max(0, value - np.hypot(tpr - a.low, tnr - b.low) / 2))
            assert high == pytest.approx(min(1, value + np.hypot(a.high - tpr, b.high - tnr) / 2))
        else:
            labels = np.array([lab for lab, _, p in examples if p is not None])
            probs = np.array([p for _, _, p in examples if p is not None])
            ref_auc, ref_var = _delong_brute_force(labels, probs)
            assert method == "delong" and value == pytest.approx(ref_auc)
            half = intervals.Z * np.sqrt(ref_var)
            assert (low, high) == (pytest.approx(max(0, ref_auc - half)), pytest.approx(min(1, ref_auc + half)))
