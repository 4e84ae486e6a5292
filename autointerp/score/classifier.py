"""Detection and fuzzing: turn an explanation into a binary classifier run by an LLM.

Samples come from the latent's **test set** only. Detection shows plain excerpts: activating test
contexts (label 1, from every quantile) and non-activating ones (label 0). Fuzzing shows marked
excerpts: activating contexts with their active tokens marked (label 1); non-activating contexts with
random tokens marked, and activating contexts with marks moved onto inactive tokens (label 0).

Where we deliberately differ from delphi (shared/specs/detection-fuzzing-simulation.md §1.9):
- false marks copy the number of marked tokens from the correctly marked excerpts (one drawn per
  false excerpt), so the count of marks gives nothing away; positions come from a seeded RNG per latent;
- the misplaced-marks negatives (delphi's "active" fuzzing type) are part of the default set;
- no few-shot turns and short instructions first, the explanation next and the excerpts last, with many
  excerpts per call: the fixed part is served by a prefix cache and the per-latent cost is mostly the
  excerpts themselves (delphi's default spends 76% of its tokens on a repeated few-shot prefix);
- the answer is one 0/1 digit per excerpt after "[ANSWER]:"; a batch whose answer cannot be read is
  unscored, never counted as wrong, and the last batch may be shorter than the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..collect.hashing import hash31
from ..text import clean_token, fill, mark_runs, neutralise, prompt_text

#: Example kinds that are negatives: non-activating windows, and the weakest-activating windows that
#: ``--weak-negatives`` takes for a latent that fires almost everywhere.
NEGATIVE_KINDS = ("random", "weak")

SYSTEM = {"detection": "score_detection_system.txt", "fuzzing": "score_fuzzing_system.txt"}


@dataclass
class TestContext:
    """One context of a latent's test set."""

    context_id: int
    kind: str  # 'top' or 'quantile' (activating), 'random' or 'weak' (negatives: NEGATIVE_KINDS)
    quantile: int | None
    tokens: list[str]
    activations: list[float]


@dataclass
class Sample:
    context_id: int
    label: bool
    quantile: int | None
    text: str
    variant: str  # 'plain', 'correct', 'random_marks' or 'misplaced_marks'
    marked: list[int] = field(default_factory=list)


def excerpt_text(tokens: list[str], marked: list[bool] | None = None) -> str:
    shown = [clean_token(t) for t in tokens]
    return neutralise(mark_runs(shown, marked) if marked is not None else "".join(shown)).strip()


def active_positions(activations: list[float], threshold: float) -> list[int]:
    peak = max((abs(a) for a in activations), default=0.0)
    return [i for i, a in enumerate(activations) if peak > 0 and abs(a) >= threshold * peak]


def detection_samples(contexts: list[TestContext]) -> list[Sample]:
    return [
        Sample(c.context_id, c.kind not in NEGATIVE_KINDS, c.quantile, excerpt_text(c.tokens), "plain")
        for c in contexts
    ]


def fuzzing_samples(
    contexts: list[TestContext], threshold: float, n_random: int, n_misplaced: int, rng: random.Random
) -> list[Sample]:
    positives = [c for c in contexts if c.kind not in NEGATIVE_KINDS]
    negatives = [c for c in contexts if c.kind in NEGATIVE_KINDS]
    samples, counts = [], []
    for c in positives:
        marks = active_positions(c.activations, threshold)
        counts.append(len(marks))
        samples.append(_marked(c, True, marks, "correct"))
    if not counts:
        return samples
    for c in negatives[:n_random]:
        k = min(rng.choice(counts), len(c.tokens))
        samples.append(_marked(c, False, sorted(rng.sample(range(len(c.tokens)), k)), "random_marks"))
    for c in rng.sample(positives, min(n_misplaced, len(positives))):
        correct = set(active_positions(c.activations, threshold))
        inactive = [i for i, a in enumerate(c.activations) if i not in correct]
        k = min(len(correct), len(inactive))
        if k:
            samples.append(_marked(c, False, sorted(rng.sample(inactive, k)), "misplaced_marks"))
    return samples


def _marked(c: TestContext, label: bool, marks: list[int], variant: str) -> Sample:
    flags = [False] * len(c.tokens)
    for i in marks:
        flags[i] = True
    return Sample(c.context_id, label, c.quantile, excerpt_text(c.tokens, flags), variant, marks)


def latent_rng(seed: int, latent: int, scorer: str) -> random.Random:
    return random.Random(int(hash31(seed, latent, sum(map(ord, scorer)))))


def batches(samples: list[Sample], batch_size: int, rng: random.Random) -> list[list[Sample]]:
    shuffled = samples[:]
    rng.shuffle(shuffled)
    return [shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size)]


def build_messages(scorer: str, explanation: str, batch: list[Sample]) -> list[dict]:
    excerpts = "\n".join(f"{i + 1}. {s.text}" for i, s in enumerate(batch))
    return [
        {"role": "system", "content": prompt_text(SYSTEM[scorer]).strip()},
        {"role": "user", "content": fill("score_user.txt", explanation=neutralise(explanation), excerpts=excerpts)},
    ]
