"""Detection and fuzzing: turn an explanation into a binary classifier run by an LLM.

Samples come from the latent's **test set** only. Detection shows plain excerpts: activating test
contexts (label 1, from every quantile) and non-activating ones (label 0). Fuzzing shows marked
excerpts: activating contexts with their active tokens marked (label 1); non-activating contexts with
random tokens marked, and activating contexts with marks moved onto inactive tokens (label 0).

Where we deliberately differ from delphi (shared/specs/detection-fuzzing-simulation.md §1.9; issue 15
item 6 wins over the spec): no false excerpt can be told from a true one by its marks alone:
- a random-marks negative copies one correctly marked excerpt's exact mark pattern (positions in the
  excerpt, run lengths included) onto a non-activating context, so the count, length and place of the
  marks give nothing away;
- a misplaced-marks negative (delphi's "active" fuzzing type, part of the default set) moves each whole
  run of the correct marks onto inactive tokens (same run lengths, never over or next to an active
  token, runs kept apart so none merge), as near as it fits to where the latent's true runs start, and
  never shares a batch with its correctly marked original;
- special tokens (BOS, EOS, padding) are stored as empty strings (``text.hide_special``): they show as
  nothing and never carry a mark;
- every choice comes from a seeded RNG per latent; ``score.cues`` measures what is left to read;
- no few-shot turns and short instructions first, the explanation next and the excerpts last, with many
  excerpts per call and one short numbered line per excerpt: a prefix cache serves the instructions in
  every call and the explanation in all of a latent's calls but the first, so the per-latent cost is
  mostly the excerpts themselves (delphi's default spends 76% of its tokens on a repeated few-shot
  prefix);
- the answer is one 0/1 digit per excerpt after "[ANSWER]:"; a batch whose answer cannot be read is
  unscored, never counted as wrong, and the last batch may be shorter than the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..hashing import hash31
from ..text import clean_token, fill, mark_runs, neutralise, prompt_text

#: Example kinds that are negatives: non-activating windows, and the weakest-activating windows that
#: ``--weak-negatives`` takes for a latent that fires almost everywhere.
NEGATIVE_KINDS = ("random", "weak")
#: Hard negatives (non-activating windows that look like the activating ones): only ``detection_hard``
#: reads them; every other scorer is given the test set without them (``without_hard``).
HARD = "hard"

SYSTEM = {
    "detection": "score_detection_system.txt",
    "detection_hard": "score_detection_system.txt",  # the same task, other negatives
    "fuzzing": "score_fuzzing_system.txt",
}
SAMPLES_VERSION = 3
"""How samples are built and shown (part of the scorers' identity, so scores of older test sets or
renderings are not reused): 2 copies mark patterns, moves whole runs, keeps a misplaced copy from its
original's batch and hides special tokens; 3 numbers the excerpt lines without a period."""


@dataclass
class TestContext:
    """One context of a latent's test set."""

    context_id: int
    kind: str  # 'top' or 'quantile' (activating), 'random' or 'weak' (negatives: NEGATIVE_KINDS), 'hard'
    quantile: int | None
    tokens: list[str]
    activations: list[float]
    special: list[bool] = field(default_factory=list)
    """Positions holding a special token (shown as nothing: its token is stored empty); [] when unknown."""


@dataclass
class Sample:
    context_id: int
    label: bool
    quantile: int | None
    text: str
    variant: str  # 'plain', 'correct', 'random_marks' or 'misplaced_marks'
    marked: list[int] = field(default_factory=list)
    n_tokens: int = 0
    """Tokens of the context (for the cue probes: where in the excerpt the marks sit)."""
    special: bool = False
    """Whether the context holds a special token, shown or not (for the cue probes)."""


def excerpt_text(tokens: list[str], marked: list[bool] | None = None) -> str:
    shown = [clean_token(t) for t in tokens]
    return neutralise(mark_runs(shown, marked) if marked is not None else "".join(shown)).strip()


def active_positions(activations: list[float], threshold: float) -> list[int]:
    peak = max((abs(a) for a in activations), default=0.0)
    return [i for i, a in enumerate(activations) if peak > 0 and abs(a) >= threshold * peak]


def without_hard(contexts: list[TestContext]) -> list[TestContext]:
    """The test set as every scorer but ``detection_hard`` reads it: hard negatives left out."""
    return [c for c in contexts if c.kind != HARD]


def contexts_for(scorer, contexts: list[TestContext]) -> list[TestContext]:
    """The test contexts ``scorer`` is given: all of them for a scorer that ``reads_hard``, else
    ``without_hard``."""
    return contexts if getattr(scorer, "reads_hard", False) else without_hard(contexts)


def hard_detection_samples(contexts: list[TestContext]) -> list[Sample]:
    """Detection samples of the activating contexts against the hard negatives (random ones left out)."""
    chosen = [c for c in contexts if c.kind == HARD or c.kind not in (*NEGATIVE_KINDS, HARD)]
    return [
        Sample(c.context_id, c.kind != HARD, c.quantile, excerpt_text(c.tokens), "plain", [], *_facts(c))
        for c in chosen
    ]


def detection_samples(contexts: list[TestContext]) -> list[Sample]:
    return [
        Sample(c.context_id, c.kind not in NEGATIVE_KINDS, c.quantile, excerpt_text(c.tokens), "plain", [], *_facts(c))
        for c in contexts
    ]


def _facts(c: TestContext) -> tuple[int, bool]:
    return len(c.tokens), any(c.special)


def fuzzing_samples(
    contexts: list[TestContext], threshold: float, n_random: int, n_misplaced: int, rng: random.Random
) -> list[Sample]:
    """Correctly marked activating contexts (label 1), then ``n_random`` non-activating contexts carrying
    a copied mark pattern and ``n_misplaced`` activating contexts with their runs moved (label 0)."""
    positives = [c for c in contexts if c.kind not in NEGATIVE_KINDS]
    negatives = [c for c in contexts if c.kind in NEGATIVE_KINDS]
    samples, patterns = [], []
    for c in positives:
        shown = visible(c)
        marks = [i for i in active_positions(c.activations, threshold) if shown[i]]
        samples.append(_marked(c, True, marks, "correct"))
        if marks:
            patterns.append(marks)
    if not patterns:
        return samples
    for c in negatives[:n_random]:
        marks = copied_pattern(c, patterns, rng)
        if marks:
            samples.append(_marked(c, False, marks, "random_marks"))
    starts = [start for marks in patterns for start, _ in runs_of(marks)]
    for c in rng.sample(positives, min(n_misplaced, len(positives))):
        marks = misplaced_runs(c, active_positions(c.activations, threshold), starts, rng)
        if marks:
            samples.append(_marked(c, False, marks, "misplaced_marks"))
    return samples


def runs_of(marks: list[int]) -> list[tuple[int, int]]:
    """(start, length) of each maximal run of consecutive positions in the sorted ``marks``."""
    runs: list[list[int]] = []
    for i in marks:
        if runs and i == runs[-1][0] + runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return [(start, length) for start, length in runs]


def visible(c: TestContext) -> list[bool]:
    """Positions that show something (special tokens are stored empty and may carry no mark)."""
    return [t != "" for t in c.tokens]


def copied_pattern(c: TestContext, patterns: list[list[int]], rng: random.Random) -> list[int]:
    """A correctly marked excerpt's marks, positions unchanged, that land on visible tokens of ``c``:
    patterns are tried in a seeded random order; [] when none fits (a context shorter than them all)."""
    shown = visible(c)
    for marks in rng.sample(patterns, len(patterns)):
        if all(i < len(shown) and shown[i] for i in marks):
            return marks
    return []


def misplaced_runs(c: TestContext, correct: list[int], starts: list[int], rng: random.Random) -> list[int]:
    """The runs of ``correct`` moved, whole, onto inactive visible tokens of ``c``, longest run first.
    A run goes where it covers no active token and touches neither an active token nor a run already
    placed (so the number and lengths of the runs are kept), as near as it can to a start drawn from
    ``starts`` (where the latent's true runs start; ties drawn at random): the moved marks then sit where
    true marks sit, so their place gives no label away. [] when the runs do not fit."""
    active = set(correct)
    shown = visible(c)
    free = [ok and not {i - 1, i, i + 1} & active for i, ok in enumerate(shown)]
    placed: list[int] = []
    for length in sorted((n for _, n in runs_of(correct)), reverse=True):
        fits = [
            s
            for s in range(len(free) - length + 1)
            if all(free[s : s + length])
            and (s == 0 or s - 1 not in placed)
            and (s + length == len(free) or s + length not in placed)
        ]
        if not fits:
            return []
        target = rng.choice(starts)
        nearest = min(abs(s - target) for s in fits)
        s = rng.choice([s for s in fits if abs(s - target) == nearest])
        placed += range(s, s + length)
        for i in range(s, s + length):
            free[i] = False
    return sorted(placed)


def _marked(c: TestContext, label: bool, marks: list[int], variant: str) -> Sample:
    flags = [False] * len(c.tokens)
    for i in marks:
        flags[i] = True
    return Sample(c.context_id, label, c.quantile, excerpt_text(c.tokens, flags), variant, marks, *_facts(c))


def latent_rng(seed: int, latent: int, scorer: str) -> random.Random:
    return random.Random(int(hash31(seed, latent, sum(map(ord, scorer)))))


def batches(samples: list[Sample], batch_size: int, rng: random.Random) -> list[list[Sample]]:
    """The samples shuffled and cut into batches of ``batch_size`` (the last may be shorter), where no
    batch shows one context twice: a misplaced-marks copy is swapped into another batch than its
    original's. Samples that would fit in one batch are sent in two halves when a context repeats (a
    batch of copies alone would give their label away); a copy no swap can place goes in a batch of its
    own."""
    shuffled = samples[:]
    rng.shuffle(shuffled)
    if len(shuffled) <= batch_size and len({s.context_id for s in shuffled}) < len(shuffled):
        batch_size = -(-len(shuffled) // 2)
    groups = [shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size)]
    extra: list[Sample] = []
    for b, group in enumerate(groups):
        for k, s in enumerate(group):
            if s is None or s.variant == "correct" or not _repeats(group, k):
                continue
            if not _swap_out(groups, b, k, rng):
                extra.append(group[k])
                group[k] = None  # type: ignore[call-overload]
    groups = [[s for s in g if s is not None] for g in groups]
    out = [g for g in groups if g]
    while extra:  # a context may not repeat within a batch of its own either
        batch, rest = [], []
        for s in extra:
            (rest if any(o.context_id == s.context_id for o in batch) or len(batch) == batch_size else batch).append(s)
        out.append(batch)
        extra = rest
    return out


def _repeats(group: list[Sample | None], k: int) -> bool:
    """Whether another sample of ``group`` shows the context of ``group[k]``."""
    return any(o is not None and i != k and o.context_id == group[k].context_id for i, o in enumerate(group))


def _swap_out(groups: list[list[Sample]], b: int, k: int, rng: random.Random) -> bool:
    """Swap ``groups[b][k]`` with a sample of another batch so that neither batch repeats a context."""
    s = groups[b][k]
    others = [(b2, k2) for b2, g in enumerate(groups) if b2 != b for k2 in range(len(g))]
    for b2, k2 in rng.sample(others, len(others)):
        x = groups[b2][k2]
        if x is None:
            continue
        stays = [o for i, o in enumerate(groups[b]) if i != k and o is not None]
        there = [o for i, o in enumerate(groups[b2]) if i != k2 and o is not None]
        if all(o.context_id != x.context_id for o in stays) and all(o.context_id != s.context_id for o in there):
            groups[b][k], groups[b2][k2] = x, s
            return True
    return False


def build_messages(scorer: str, explanation: str, batch: list[Sample]) -> list[dict]:
    """The chat messages of one batch: the scorer's instructions (the same for every latent), then a
    user message that starts with ``explanation_header`` (the same for every batch of one latent) and
    ends with the batch's excerpts, so a prefix cache serves all but the excerpts (and the first call's
    explanation).

    One excerpt per line, numbered without a period ("12 text"): its number and the line break are all
    it costs beyond its own tokens. The lines cannot be forged: an excerpt never holds a line break
    (``clean_token`` shows one as ↵), and no excerpt text can fake a mark or the answer line."""
    excerpts = "\n".join(f"{i + 1} {s.text}" for i, s in enumerate(batch))
    return [
        {"role": "system", "content": system_text(scorer)},
        {"role": "user", "content": explanation_header(explanation) + "\n" + excerpts},
    ]


def system_text(scorer: str) -> str:
    """The system message of ``scorer``: the same in every call of every latent."""
    return prompt_text(SYSTEM[scorer]).strip()


def explanation_header(explanation: str) -> str:
    """The start of the user message, the same in every batch of one latent: its explanation and the
    heading of the excerpts."""
    return fill("score_user.txt", explanation=neutralise(explanation))
