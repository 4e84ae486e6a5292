"""Cue probes: can the label of a detection or fuzzing test sample be read without the explanation?

Each probe reads one number off a sample exactly as the scorer shows it (its text and its marks, never
the activations or the label) and predicts the label with a one-threshold rule. The rule is fit by
leave-one-out: the label of sample i is predicted by the threshold and direction ("above" or "below"
means activating) with the best balanced accuracy on the *other* samples of the set, so no prediction
ever sees its own label; the probe's score is the balanced accuracy of those predictions. A set that
leaks no label scores about 0.5 (slightly below on pure noise, the known pessimism of leave-one-out);
a cue the rule can read, in either direction, scores above it. Stored in ``scores`` as
``cue:<task>:<probe>`` (issue 15 item 8), so

    SELECT scorer, avg(balanced_accuracy) FROM scores WHERE scorer LIKE 'cue:%' GROUP BY 1

answers "do our test sets leak the label?".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from ..text import OPEN
from .classifier import Sample, runs_of

LATE = 0.6
"""The last 40% of an excerpt starts at this fraction of its tokens (the issue's "last 40%" probe)."""


def _n_tokens(s: Sample) -> int:
    return s.n_tokens or 1


def run_count(s: Sample, _: dict) -> float:
    """Runs of marked tokens (one << >> pair each)."""
    return float(s.text.count(OPEN))


def marked_count(s: Sample, _: dict) -> float:
    """Marked tokens."""
    return float(len(s.marked))


def longest_run(s: Sample, _: dict) -> float:
    """Tokens in the longest run of marks."""
    return float(max((n for _, n in runs_of(s.marked)), default=0))


def peak_position(s: Sample, _: dict) -> float:
    """Where the first of the excerpt's longest run of marks starts, as a fraction of its tokens (the
    correct marks of an activating window surround its peak)."""
    runs = runs_of(s.marked)
    if not runs:
        return -1.0
    start, _ = max(runs, key=lambda r: (r[1], -r[0]))
    return start / _n_tokens(s)


def modal_index_marked(s: Sample, set_facts: dict) -> float:
    """Whether the token index marked most often over the whole set (labels unseen) is marked here: the
    issue's "index 24 is marked" without assuming the 24."""
    return float(set_facts["modal_index"] in s.marked)


def late_share(s: Sample, _: dict) -> float:
    """Share of the marked tokens that sit in the last 40% of the excerpt."""
    if not s.marked:
        return 0.0
    return sum(i >= LATE * _n_tokens(s) for i in s.marked) / len(s.marked)


def excerpt_length(s: Sample, _: dict) -> float:
    """Characters of the excerpt as shown."""
    return float(len(s.text))


def special_token(s: Sample, _: dict) -> float:
    """Whether the context holds a special token (BOS, EOS, padding; shown as nothing since issue 15, so
    what is left to read is the seam it leaves, e.g. two documents run together)."""
    return float(s.special)


def line_breaks(s: Sample, _: dict) -> float:
    """Line breaks (↵) shown: document boundaries and layout differ between the windows around a peak
    and random windows."""
    return float(s.text.count("↵"))


def starts_lowercase(s: Sample, _: dict) -> float:
    """Whether the excerpt starts in the middle of a word or sentence (a lowercase first letter)."""
    first = s.text.lstrip("<> ")[:1]
    return float(first.islower())


Probe = Callable[[Sample, dict], float]

#: The probes of each task, by name. Fuzzing shows marks; detection shows plain excerpts.
PROBES: dict[str, dict[str, Probe]] = {
    "fuzzing": {
        "run_count": run_count,
        "marked_count": marked_count,
        "longest_run": longest_run,
        "peak_position": peak_position,
        "modal_index_marked": modal_index_marked,
        "late_share": late_share,
        "excerpt_length": excerpt_length,
        "special_token": special_token,
    },
    "detection": {
        "excerpt_length": excerpt_length,
        "special_token": special_token,
        "line_breaks": line_breaks,
        "starts_lowercase": starts_lowercase,
    },
}


def probe_names(task: str) -> list[str]:
    """The stored scorer names of ``task``'s probes: ``cue:<task>:<probe>``."""
    return [f"cue:{task}:{name}" for name in PROBES[task]]


def set_facts(samples: list[Sample]) -> dict:
    """What some probes read off the whole set, labels unseen: the most often marked token index."""
    counts = Counter(i for s in samples for i in s.marked)
    return {"modal_index": counts.most_common(1)[0][0] if counts else -1}


def probe_features(task: str, samples: list[Sample]) -> dict[str, np.ndarray]:
    """Each probe of ``task``: its number for every sample."""
    facts = set_facts(samples)
    return {name: np.array([probe(s, facts) for s in samples], float) for name, probe in PROBES[task].items()}


def loo_threshold_predictions(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For each sample i, the prediction at ``x[i]`` of the threshold rule fit on all other samples: of
    the rules "x > t" and "x <= t" over every cut t between distinct values (and below them all), the one
    with the best balanced accuracy on the others (the first in that order on ties)."""
    return loo_threshold_rules(x, y)[0]


def loo_threshold_rules(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """``loo_threshold_predictions`` and the mean direction of the rules fit: +1 for "x > t", -1 for
    "x <= t", 0 for a rule that predicts one label everywhere. A cue whose direction changes from latent to
    latent is about the latent's content (the explanation may carry it); one with the same direction on
    every latent is a leak of how the test sets are built."""
    x = np.asarray(x, float)
    y = np.asarray(y, bool)
    values = np.unique(x)
    cuts = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2]) if len(values) > 1 else np.array([-np.inf])
    above = x[:, None] > cuts[None, :]  # [sample, cut]
    pos_above = (above & y[:, None]).sum(0)
    neg_above = (above & ~y[:, None]).sum(0)
    n_pos, n_neg = y.sum(), (~y).sum()
    # the counts without sample i
    pa = pos_above[None, :] - (above & y[:, None])
    na = neg_above[None, :] - (above & ~y[:, None])
    p = np.maximum(n_pos - y, 1)[:, None]
    n = np.maximum(n_neg - ~y, 1)[:, None]
    ba_above = 0.5 * (pa / p + 1 - na / n)  # "x > t" predicts activating
    both = np.concatenate([ba_above, 1 - ba_above], axis=1).round(9)  # then "x <= t"; rounded: ties are ties
    best = both.argmax(1)
    cut = best % len(cuts)
    flip = best >= len(cuts)
    direction = np.where(cut == 0, 0.0, np.where(flip, -1.0, 1.0))
    return above[np.arange(len(x)), cut] ^ flip, float(direction.mean()) if len(x) else 0.0


def balanced_accuracy(y: np.ndarray, predictions: np.ndarray) -> float | None:
    """Mean of the recall of each class; None when a class is missing."""
    y, predictions = np.asarray(y, bool), np.asarray(predictions, bool)
    if y.all() or not y.any():
        return None
    return float(0.5 * (predictions[y].mean() + (~predictions[~y]).mean()))


def probe_results(task: str, samples: list[Sample]) -> dict[str, tuple[float | None, float]]:
    """``cue:<task>:<probe>`` -> (the probe's leave-one-out balanced accuracy on ``samples``, None with
    fewer than 3 samples or one label only; the mean direction of its rules, see ``loo_threshold_rules``)."""
    y = np.array([s.label for s in samples], bool)
    out = {}
    for name, x in probe_features(task, samples).items():
        predictions, direction = loo_threshold_rules(x, y) if len(samples) > 2 else (None, 0.0)
        out[f"cue:{task}:{name}"] = (None if predictions is None else balanced_accuracy(y, predictions), direction)
    return out


def probe_scores(task: str, samples: list[Sample]) -> dict[str, float | None]:
    """``cue:<task>:<probe>`` -> the probe's leave-one-out balanced accuracy on ``samples``."""
    return {name: ba for name, (ba, _) in probe_results(task, samples).items()}
