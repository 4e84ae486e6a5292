"""Metrics of the score stage, and the chance level of each, as pure functions over arrays.

Every metric that cannot be computed from the data it is given is ``None``, never 0 (an empty or
one-class sample says nothing about a scorer). The definitions below are the ones reported.

Binary metrics (detection, fuzzing, embedding), over the *scored* examples: an example whose
prediction is ``None`` (the scorer's answer could not be parsed) is left out of the confusion matrix
and counted in ``n_unscored``. With P = TP + FN positives, N = TN + FP negatives, n = P + N:

- TPR = recall = TP / P (None when P = 0); TNR = TN / N (None when N = 0);
- balanced accuracy = (TPR + TNR) / 2 (None unless both classes are present);
- accuracy = (TP + TN) / n (None when n = 0);
- precision = TP / (TP + FP) (None when nothing is predicted positive);
- F1 = 2 TP / (2 TP + FP + FN), which equals 2PR / (P + R) wherever both are defined and non-zero;
  it is None only when there are neither positives nor predicted positives (as in scikit-learn, an
  undefined precision with P > 0 gives F1 = 0: the scorer found none of the positives);
- AUROC = probability that a random positive gets a higher probability than a random negative, ties
  counting one half (the Mann-Whitney statistic; equal to scikit-learn's ``roc_auc_score``). It is
  computed over every example that has a probability (NaN counts as none), whether or not its
  prediction parsed, and is None when no example has one or they are all of one class;
- recall per quantile: the recall over the scored positives of each activation quantile (quantiles
  given for negatives are ignored); a quantile whose positives are all unscored has recall None.

Chance levels (``chance_levels``), with prevalence p = P / n and a guesser that ignores its input and
answers "positive" at rate q. Values are ratios of expected counts (E[TP] = qP, E[FP] = qN, ...), i.e.
the guesser's metric in the limit of many examples. Each is None where the metric itself is undefined.

- balanced accuracy: 0.5 (an input-blind guesser has TPR = q and TNR = 1 - q, mean 0.5 for any q);
- AUROC: 0.5 (input-blind scores rank positives above negatives half the time);
- accuracy: max(p, 1 - p), the majority-class constant answer (the best input-blind accuracy; this
  is why balanced accuracy is the headline);
- precision: p (for any q > 0; None when q = 0);
- recall: q;
- F1: 2pq / (p + q), from E[2TP] / E[2TP + FP + FN].

``binary_metrics`` reports the chance levels with q = the scorer's own predicted-positive rate: the
baseline is a guesser exactly as inclined to say "yes" as the scorer, so a scorer that always answers
"yes" sits exactly at chance on every metric. ``chance_levels`` uses q = 0.5 when q is not given.

Other scorers: ``pearson`` (simulation: the correlation pooled over all tokens, chance 0) and
``multiple_choice`` (accuracy, chance the mean of 1 / n_options).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def _optional_bools(values, n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values as bool, mask of the ones given) from a sequence of bool | None."""
    if values is None:
        return np.zeros(n, bool), np.zeros(n, bool)
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries, labels have {n}")
    given = np.array([v is not None for v in values], bool)
    return np.array([bool(v) if v is not None else False for v in values], bool), given


def auroc(labels, scores) -> float | None:
    """Area under the ROC curve, ties counting one half; None unless both classes are present."""
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, np.float64)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    u = midranks(scores)[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def chance_levels(n_positive: int, n_negative: int, predicted_positive_rate: float | None = None) -> dict:
    """Chance level of each binary metric; see the module docstring for the definitions.

    ``predicted_positive_rate`` is q, the rate at which the input-blind guesser answers "positive"
    (0.5 when not given).
    """
    q = 0.5 if predicted_positive_rate is None else float(predicted_positive_rate)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"predicted_positive_rate must lie in [0, 1], got {q}")
    n = n_positive + n_negative
    both = n_positive > 0 and n_negative > 0
    p = n_positive / n if n else None
    return {
        "balanced_accuracy": 0.5 if both else None,
        "auroc": 0.5 if both else None,
        "accuracy": max(p, 1.0 - p) if p is not None else None,
        "precision": p if p is not None and q > 0 else None,
        "recall": q if n_positive > 0 else None,
        "f1": 2 * p * q / (p + q) if p is not None and p + q > 0 else None,
        "predicted_positive_rate": q,
    }


def binary_metrics(
    labels: Sequence[bool],
    predictions: Sequence[bool | None] | None,
    probabilities: Sequence[float | None] | None = None,
    quantiles: Sequence[int | None] | None = None,
) -> dict:
    """Confusion-matrix metrics, AUROC and recall per quantile of one set of binary judgements.

    ``labels``: whether each example is activating. ``predictions``: the scorer's answer per example,
    None where it gave none (``predictions=None``: no example has one). ``probabilities``: the scorer's
    probability of "activating" per example, None or NaN where absent. ``quantiles``: the activation
    quantile of each activating example (None for others). Returns a flat dict of counts and metrics
    plus ``recall_by_quantile``, ``n_by_quantile`` and ``chance`` (``chance_levels`` at the scorer's
    own predicted-positive rate). Undefined metrics are None (module docstring).
    """
    y = np.asarray(labels, bool).reshape(-1)
    n_all = y.size
    pred, scored = _optional_bools(predictions, n_all, "predictions")
    ys, ps = y[scored], pred[scored]
    tp = int(np.sum(ys & ps))
    fp = int(np.sum(~ys & ps))
    tn = int(np.sum(~ys & ~ps))
    fn = int(np.sum(ys & ~ps))
    n_pos, n_neg, n = tp + fn, tn + fp, tp + fp + tn + fn
    tpr, tnr = _ratio(tp, n_pos), _ratio(tn, n_neg)

    auc, n_prob = None, 0
    if probabilities is not None:
        probs = np.array([np.nan if v is None else float(v) for v in probabilities], np.float64)
        if probs.size != n_all:
            raise ValueError(f"probabilities has {probs.size} entries, labels have {n_all}")
        has = ~np.isnan(probs)
        n_prob = int(has.sum())
        auc = auroc(y[has], probs[has])

    recall_q: dict[int, float | None] = {}
    count_q: dict[int, int] = {}
    if quantiles is not None:
        quantiles = list(quantiles)
        if len(quantiles) != n_all:
            raise ValueError(f"quantiles has {len(quantiles)} entries, labels have {n_all}")
        for q in sorted({int(q) for q, lab in zip(quantiles, y, strict=True) if q is not None and lab}):
            sel = np.array([qq is not None and int(qq) == q for qq in quantiles]) & y & scored
            count_q[q] = int(sel.sum())
            recall_q[q] = _ratio(int(pred[sel].sum()), count_q[q])

    return {
        "n": n,
        "n_unscored": int(n_all - scored.sum()),
        "n_positive": n_pos,
        "n_negative": n_neg,
        "n_with_probability": n_prob,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "balanced_accuracy": (tpr + tnr) / 2 if tpr is not None and tnr is not None else None,
        "accuracy": _ratio(tp + tn, n),
        "precision": _ratio(tp, tp + fp),
        "recall": tpr,
        "specificity": tnr,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auroc": auc,
        "recall_by_quantile": recall_q,
        "n_by_quantile": count_q,
        "chance": chance_levels(n_pos, n_neg, _ratio(tp + fp, n)),
    }


def pearson(x, y) -> float | None:
    """Pearson correlation of two equal-length arrays pooled as they are (simulation scorer).

    None when either side is constant (or has fewer than two values): the correlation is undefined.
    """
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"x has {x.size} values, y has {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("pearson needs finite values")
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    xc, yc = x - x.mean(), y - y.mean()
    r = float(np.dot(xc, yc) / np.sqrt(np.dot(xc, xc) * np.dot(yc, yc)))
    return min(1.0, max(-1.0, r))


def multiple_choice(
    correct_index: Sequence[int], chosen_index: Sequence[int | None], n_options: int | Sequence[int]
) -> dict:
    """Accuracy of multiple-choice answers, with its chance level.

    ``chosen_index`` None marks an unscored question (left out, counted in ``n_unscored``).
    ``n_options`` is one count for every question or one per question. Chance is the mean of
    1 / n_options over the scored questions (1/n when every question has n options). Accuracy and
    chance are None when nothing is scored.
    """
    correct = [int(c) for c in correct_index]
    chosen = list(chosen_index)
    if len(chosen) != len(correct):
        raise ValueError(f"chosen_index has {len(chosen)} entries, correct_index has {len(correct)}")
    options = [int(n_options)] * len(correct) if np.ndim(n_options) == 0 else [int(k) for k in n_options]
    if len(options) != len(correct):
        raise ValueError(f"n_options has {len(options)} entries, correct_index has {len(correct)}")
    hits, inverse, n = 0, 0.0, 0
    for c, ch, k in zip(correct, chosen, options, strict=True):
        if k < 1 or not 0 <= c < k or (ch is not None and not 0 <= int(ch) < k):
            raise ValueError(f"index out of range for {k} options: correct {c}, chosen {ch}")
        if ch is None:
            continue
        n += 1
        hits += int(int(ch) == c)
        inverse += 1.0 / k
    return {
        "n": n,
        "n_unscored": len(correct) - n,
        "n_correct": hits,
        "accuracy": _ratio(hits, n),
        "chance": _ratio(inverse, n),
    }


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks
