"""Score metrics against scikit-learn on seeded random data, and every degenerate case."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from autointerp.score.metrics import auroc, binary_metrics, chance_levels, multiple_choice, pearson


def _close(ours, reference):
    """None on our side matches NaN (undefined) on scikit-learn's."""
    if ours is None:
        return reference is None or math.isnan(reference)
    return reference is not None and not math.isnan(reference) and ours == pytest.approx(reference, abs=1e-12)


def _reference(labels, predictions, probabilities):
    """scikit-learn's metrics over the scored examples (NaN where undefined)."""
    scored = np.array([p is not None for p in predictions], bool)
    y = np.asarray(labels, bool)[scored]
    p = np.array([bool(v) for v in np.asarray(predictions, object)[scored]], bool)
    ref = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref["accuracy"] = accuracy_score(y, p) if y.size else np.nan
        ref["precision"] = precision_score(y, p, zero_division=np.nan) if y.size else np.nan
        ref["recall"] = recall_score(y, p, zero_division=np.nan) if y.size else np.nan
        ref["f1"] = f1_score(y, p, zero_division=np.nan) if y.size else np.nan
        # scikit-learn averages the recall of the classes present, so one class is not 'undefined' there
        ref["balanced_accuracy"] = balanced_accuracy_score(y, p) if 0 < y.sum() < y.size else np.nan
    if probabilities is not None:
        has = np.array([v is not None and not math.isnan(v) for v in probabilities], bool)
        yy = np.asarray(labels, bool)[has]
        pr = np.array([probabilities[i] for i in np.flatnonzero(has)], float)
        ref["auroc"] = roc_auc_score(yy, pr) if 0 < yy.sum() < yy.size else np.nan
    else:
        ref["auroc"] = np.nan
    return ref


def _random_case(rng):
    n = int(rng.integers(1, 60))
    kind = rng.integers(0, 8)
    labels = rng.random(n) < rng.uniform(0.05, 0.95)
    if kind == 0:
        labels[:] = True  # one class only
    elif kind == 1:
        labels[:] = False
    predictions = list(rng.random(n) < rng.uniform(0, 1))
    if kind == 2:
        predictions = [True] * n  # a constant answer
    elif kind == 3:
        predictions = [False] * n
    drop = rng.random(n) < (0.3 if kind in (4, 5) else 0.0)
    predictions = [None if d else bool(p) for p, d in zip(predictions, drop, strict=True)]
    if kind == 5:
        probabilities = None
    elif kind == 6:
        probabilities = list(rng.integers(0, 4, n) / 3)  # many ties
    else:
        probabilities = [float(v) for v in rng.random(n)]
        for i in np.flatnonzero(rng.random(n) < 0.1):
            probabilities[i] = None if i % 2 else float("nan")
    return labels, predictions, probabilities


def test_binary_metrics_match_scikit_learn_on_random_data():
    rng = np.random.default_rng(1234)
    for _ in range(250):
        labels, predictions, probabilities = _random_case(rng)
        ours = binary_metrics(labels, predictions, probabilities)
        ref = _reference(labels, predictions, probabilities)
        for name, value in ref.items():
            assert _close(ours[name], value), (name, ours[name], value, labels, predictions, probabilities)
        assert ours["n"] + ours["n_unscored"] == len(labels)
        assert ours["n_unscored"] == sum(p is None for p in predictions)
        assert ours["tp"] + ours["fn"] == ours["n_positive"]
        assert ours["tn"] + ours["fp"] == ours["n_negative"]


def test_auroc_matches_roc_auc_score_with_ties():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 200))
        labels = rng.random(n) < 0.5
        if labels.all() or not labels.any():
            continue
        scores = rng.integers(0, int(rng.integers(1, 6)), n).astype(float)
        assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_counts_and_perfect_scorer():
    labels = [True, True, False, False, True]
    m = binary_metrics(labels, labels, [0.9, 0.8, 0.1, 0.2, 0.7], quantiles=[0, 1, None, None, 1])
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 0, 2, 0)
    assert m["balanced_accuracy"] == m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == 1.0
    assert m["auroc"] == 1.0
    assert m["recall_by_quantile"] == {0: 1.0, 1: 1.0} and m["n_by_quantile"] == {0: 1, 1: 2}


def test_recall_by_quantile_ignores_unscored_and_negatives():
    labels = [True, True, True, True, False]
    predictions = [True, False, None, None, True]
    quantiles = [0, 0, 1, 2, 3]  # the negative's quantile is ignored
    m = binary_metrics(labels, predictions, quantiles=quantiles)
    assert m["recall_by_quantile"] == {0: 0.5, 1: None, 2: None}
    assert m["n_by_quantile"] == {0: 2, 1: 0, 2: 0}


def test_no_positives():
    m = binary_metrics([False, False, False], [True, False, False], [0.3, 0.2, 0.1])
    assert m["recall"] is None and m["balanced_accuracy"] is None and m["auroc"] is None
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["accuracy"] == pytest.approx(2 / 3)
    assert m["chance"]["recall"] is None and m["chance"]["balanced_accuracy"] is None
    assert m["chance"]["f1"] == 0.0 and m["chance"]["precision"] == 0.0


def test_no_negatives():
    m = binary_metrics([True, True], [True, False], [0.9, 0.1])
    assert m["specificity"] is None and m["balanced_accuracy"] is None and m["auroc"] is None
    assert m["recall"] == 0.5 and m["precision"] == 1.0 and m["f1"] == pytest.approx(2 / 3)


def test_no_predicted_positives():
    m = binary_metrics([True, False, False], [False, False, False])
    assert m["precision"] is None  # undefined, not 0
    assert m["recall"] == 0.0 and m["f1"] == 0.0 and m["balanced_accuracy"] == 0.5
    assert m["chance"]["precision"] is None and m["chance"]["recall"] == 0.0


def test_no_positives_and_no_predicted_positives():
    m = binary_metrics([False, False], [False, False])
    assert m["f1"] is None and m["precision"] is None and m["recall"] is None
    assert m["accuracy"] == 1.0 and m["chance"]["f1"] is None


def test_nothing_scored():
    m = binary_metrics([True, False], [None, None], [0.8, 0.4])
    assert m["n"] == 0 and m["n_unscored"] == 2
    for name in ("balanced_accuracy", "accuracy", "precision", "recall", "f1"):
        assert m[name] is None
    assert m["auroc"] == 1.0  # probabilities exist even where no answer parsed
    assert m["chance"]["accuracy"] is None and m["chance"]["f1"] is None
    m = binary_metrics([True, False], None)
    assert m["n"] == 0 and m["auroc"] is None and m["n_with_probability"] == 0


def test_empty_and_mismatched_inputs():
    m = binary_metrics([], [])
    assert m["n"] == 0 and m["accuracy"] is None and m["recall_by_quantile"] == {}
    with pytest.raises(ValueError):
        binary_metrics([True, False], [True])
    with pytest.raises(ValueError):
        binary_metrics([True, False], [True, False], [0.5])
    with pytest.raises(ValueError):
        binary_metrics([True, False], [True, False], quantiles=[0])


def test_constant_answer_sits_at_chance():
    rng = np.random.default_rng(3)
    labels = rng.random(100) < 0.3
    for answer in (True, False):
        m = binary_metrics(labels, [answer] * 100)
        c = m["chance"]
        assert m["balanced_accuracy"] == c["balanced_accuracy"] == 0.5
        for name in ("precision", "recall", "f1"):
            assert _close(m[name], c[name] if c[name] is not None else np.nan), name


def test_chance_levels_definitions():
    c = chance_levels(30, 70)
    p, q = 0.3, 0.5
    assert c["balanced_accuracy"] == 0.5 and c["auroc"] == 0.5
    assert c["accuracy"] == pytest.approx(0.7)
    assert c["precision"] == pytest.approx(p) and c["recall"] == q
    assert c["f1"] == pytest.approx(2 * p * q / (p + q))
    c = chance_levels(30, 70, predicted_positive_rate=0.2)
    assert c["recall"] == 0.2 and c["f1"] == pytest.approx(2 * 0.3 * 0.2 / 0.5)
    assert chance_levels(0, 0)["accuracy"] is None
    with pytest.raises(ValueError):
        chance_levels(1, 1, 1.5)


def test_chance_f1_is_the_random_guessers_f1():
    """A guesser that answers "yes" at rate q, blind to the input, reaches 2pq/(p+q) on a large sample."""
    rng = np.random.default_rng(11)
    labels = rng.random(400_000) < 0.2
    guesses = rng.random(labels.size) < 0.35
    m = binary_metrics(labels, guesses)
    c = chance_levels(m["n_positive"], m["n_negative"], 0.35)
    for name in ("balanced_accuracy", "precision", "recall", "f1"):
        assert m[name] == pytest.approx(c[name], abs=5e-3), name


def test_pearson():
    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(2, 100))
        x, y = rng.normal(size=n), rng.normal(size=n)
        assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-10)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([0.1, 0.1, 0.1], [1, 2, 3]) is None
    assert pearson([1, 2, 3], [0, 0, 0]) is None
    assert pearson([1.0], [2.0]) is None
    with pytest.raises(ValueError):
        pearson([1, 2], [1, 2, 3])


def test_multiple_choice():
    m = multiple_choice([0, 1, 2, 3], [0, 1, 0, None], 4)
    assert (m["n"], m["n_unscored"], m["n_correct"]) == (3, 1, 2)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["chance"] == 0.25
    m = multiple_choice([0, 1], [0, 0], [2, 5])
    assert m["chance"] == pytest.approx((1 / 2 + 1 / 5) / 2)
    m = multiple_choice([0], [None], 3)
    assert m["accuracy"] is None and m["chance"] is None
    with pytest.raises(ValueError):
        multiple_choice([4], [0], 4)
