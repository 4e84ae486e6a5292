"""The cue probes as stored scores: ``cue:<task>:<probe>`` rows beside every detection and fuzzing score.

No LLM and no explanation: each probe reads the label off the very samples the detection or fuzzing
scorer shows for the latent, by the leave-one-out threshold rule of ``score.cues``. Detection and
fuzzing attach these rows to their own outcome (``companions``), so they are stored whenever those
scorers run, for the samples they showed. Under a control (``--control``) the rows would repeat the
real ones, so none are stored there. ``bench/cues.py`` measures them on a database without an LLM.
"""

from __future__ import annotations

import random

from ...config import ScoreConfig, config_hash
from .. import classifier, cues
from ..base import ScoreOutcome

#: Bumped when the probes or their rule change, so stored cue scores are recomputed.
PROBE_RULE = "leave-one-out threshold, v1"


def task_samples(
    task: str, contexts: list[classifier.TestContext], config: ScoreConfig, rng: random.Random
) -> list[classifier.Sample]:
    """The samples ``task`` ('detection' or 'fuzzing') shows for a latent (seeded as that scorer seeds)."""
    if task == "detection":
        return classifier.detection_samples(contexts)
    return classifier.fuzzing_samples(contexts, config.mark_threshold, config.fuzz_random, config.fuzz_misplaced, rng)


def cue_identity(task: str, config: ScoreConfig) -> dict:
    """What shapes a task's cue scores: how its samples are built, and the probes' rule."""
    shaping = ("seed", "mark_threshold", "fuzz_random", "fuzz_misplaced") if task == "fuzzing" else ()
    return {
        "cues": task,
        "rule": PROBE_RULE,
        "samples": classifier.SAMPLES_VERSION,
        **{k: getattr(config, k) for k in shaping},
    }


def cue_outcome(balanced_accuracy: float | None, direction: float, samples: list[classifier.Sample]) -> ScoreOutcome:
    """One probe's score row: its balanced accuracy over the set, with n, the chance level 0.5 and, in
    ``detail``, the mean direction of its rules (+1: a larger value means activating; see
    ``cues.loo_threshold_rules``)."""
    n_pos = sum(s.label for s in samples)
    chance = {"score": 0.5, "balanced_accuracy": 0.5}
    detail = {
        "rule": PROBE_RULE,
        "direction": round(direction, 4),
        "n_positive": n_pos,
        "n_negative": len(samples) - n_pos,
    }
    if balanced_accuracy is None:
        return ScoreOutcome("unscored", None, chance, "the test set lacks one of the two labels", detail=detail)
    metrics = {"balanced_accuracy": balanced_accuracy, "n": len(samples)}
    return ScoreOutcome("scored", balanced_accuracy, chance, metrics=metrics, n_examples=len(samples), detail=detail)


def companions(task: str, samples: list[classifier.Sample], config: ScoreConfig) -> list[tuple[str, str, ScoreOutcome]]:
    """(scorer name, configuration hash, outcome) of each of ``task``'s probes on ``samples``; none under
    a control."""
    if config.control:
        return []
    chash = config_hash(cue_identity(task, config))
    results = cues.probe_results(task, samples)
    return [(name, chash, cue_outcome(ba, direction, samples)) for name, (ba, direction) in results.items()]
