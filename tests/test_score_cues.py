"""Label cues in the detection and fuzzing test sets (issue 15 items 6-8): fuzzing negatives that copy
the true marks' patterns, a misplaced copy never batched with its original, special tokens never shown,
and the cue probes, each on a case it must read and one it must not."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from autointerp.config import ScoreConfig
from autointerp.explain.render import render_example
from autointerp.models.special import collect_special_ids
from autointerp.score import classifier, cues
from autointerp.score.classifier import Sample, batches, excerpt_text, fuzzing_samples, runs_of
from autointerp.score.scorers.cues import companions
from autointerp.text import OPEN, hide_special

N = 32


def activating(cid: int, peak: int, width: int = 1, second: int | None = None) -> classifier.TestContext:
    acts = [0.0] * N
    for i in range(peak, min(N, peak + width)):
        acts[i] = 1.0
    if second is not None:
        acts[second] = 0.8
    return classifier.TestContext(cid, "quantile", cid % 10, [f" w{cid}_{i}" for i in range(N)], acts)


def silent(cid: int) -> classifier.TestContext:
    return classifier.TestContext(cid, "random", None, [f" r{cid}_{i}" for i in range(N)], [0.0] * N)


def make_test_set(seed: int = 0) -> list[classifier.TestContext]:
    rng = random.Random(seed)
    pos = [activating(i, rng.randrange(2, 28), rng.choice([1, 2, 3]), rng.choice([None, 0, 1])) for i in range(1, 41)]
    return pos + [silent(1000 + i) for i in range(30)]


# ------------------------------------------------------------------------------------------ fuzzing samples


def test_random_negatives_copy_a_true_mark_pattern_exactly():
    contexts = make_test_set()
    samples = fuzzing_samples(contexts, 0.3, 25, 25, random.Random(5))
    patterns = {tuple(s.marked) for s in samples if s.variant == "correct"}
    randoms = [s for s in samples if s.variant == "random_marks"]
    assert len(randoms) == 25
    for s in randoms:
        assert tuple(s.marked) in patterns  # positions and run lengths, as a true excerpt has them
        assert s.text.count(OPEN) == len(runs_of(s.marked))
    # the copied patterns are spread over the positives, not one pattern repeated
    assert len({tuple(s.marked) for s in randoms}) > 10


def test_misplaced_negatives_move_whole_runs_onto_inactive_tokens():
    contexts = make_test_set(1)
    by_id = {c.context_id: c for c in contexts}
    samples = fuzzing_samples(contexts, 0.3, 0, 40, random.Random(2))
    moved = [s for s in samples if s.variant == "misplaced_marks"]
    assert len(moved) >= 35
    for s in moved:
        c = by_id[s.context_id]
        active = classifier.active_positions(c.activations, 0.3)
        assert not {m + d for m in s.marked for d in (-1, 0, 1)} & set(active)  # never over or next to one
        # the same run lengths, none merged with another, none over an active token
        assert sorted(n for _, n in runs_of(s.marked)) == sorted(n for _, n in runs_of(active))
        assert s.text.count(OPEN) == len(runs_of(active))


def test_fuzzing_samples_are_seeded():
    a = fuzzing_samples(make_test_set(), 0.3, 10, 10, random.Random(7))
    b = fuzzing_samples(make_test_set(), 0.3, 10, 10, random.Random(7))
    c = fuzzing_samples(make_test_set(), 0.3, 10, 10, random.Random(8))
    assert [(s.context_id, s.marked) for s in a] == [(s.context_id, s.marked) for s in b]
    assert [(s.context_id, s.marked) for s in a] != [(s.context_id, s.marked) for s in c]


@pytest.mark.parametrize("batch_size", [3, 10, 20, 200])
def test_a_misplaced_copy_never_shares_a_batch_with_its_original(batch_size):
    for seed in range(20):
        rng = random.Random(seed)
        samples = fuzzing_samples(make_test_set(seed), 0.3, 10, 25, rng)
        groups = batches(samples, batch_size, rng)
        assert sorted(id(s) for g in groups for s in g) == sorted(id(s) for s in samples)  # each sample once
        for g in groups:
            assert len(g) <= batch_size
            assert max(Counter(s.context_id for s in g).values()) == 1
        # swaps keep the batch sizes; what would fit in one batch goes in two halves
        assert len(groups) == max(2, -(-len(samples) // batch_size))
        assert all(len(g) >= len(samples) // 2 for g in groups) or batch_size < len(samples)


# ------------------------------------------------------------------------------------------ special tokens


@pytest.fixture(scope="module")
def special_ids():
    """The embedded model's special token ids, read off its real tokenizer (a collect made before they
    were recorded)."""
    return collect_special_ids({"model": "embedded", "resolved": {}})


def test_special_ids_come_from_the_collect_or_its_tokenizer(special_ids):
    from autointerp.models.special import _tokenizer

    tokenizer = _tokenizer("embedded")
    assert special_ids == frozenset(tokenizer.all_special_ids) and len(special_ids) >= 2
    assert collect_special_ids({"model": "embedded", "resolved": {"special_token_ids": [7]}}) == {7}
    assert collect_special_ids(None) == frozenset()


def test_special_tokens_are_never_shown_nor_marked(special_ids):
    from autointerp.models.special import _tokenizer

    tokenizer = _tokenizer("embedded")
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    ids = [bos] + tokenizer("The river Thames", add_special_tokens=False).input_ids + [eos]
    ids += tokenizer(" flows east", add_special_tokens=False).input_ids
    tokens = tokenizer.batch_decode([[i] for i in ids])
    assert tokenizer.decode([eos]) in tokens  # shown today: the window gives itself away
    shown = hide_special(tokens, ids, special_ids)
    hidden = [i in special_ids for i in ids]
    assert [t == "" for t in shown] == hidden and sum(hidden) == 2
    acts = [0.0] * len(ids)
    acts[2] = 1.0
    positive = classifier.TestContext(1, "quantile", 0, shown, acts, hidden)
    negative = classifier.TestContext(2, "random", None, shown, [0.0] * len(ids), hidden)
    for s in fuzzing_samples([positive, negative], 0.3, 5, 5, random.Random(0)):
        assert not any(hidden[i] for i in s.marked)
        assert all(tokenizer.decode([i]) not in s.text for i in special_ids)
    text = render_example(shown, acts, 1.0, 1)  # the explainer's view
    assert all(tokenizer.decode([i]) not in text for i in special_ids) and "<<" in text


def test_a_window_of_special_tokens_only_gets_no_false_marks():
    positive = activating(1, 5)
    blank = classifier.TestContext(2, "random", None, [""] * N, [0.0] * N, [True] * N)
    samples = fuzzing_samples([positive, blank], 0.3, 5, 0, random.Random(0))
    assert [s.variant for s in samples] == ["correct"]


# ------------------------------------------------------------------------------------------ cue probes


def sample(label: bool, marked=(), tokens=None, special=False) -> Sample:
    tokens = tokens or [f" t{i}" for i in range(N)]
    flags = [i in marked for i in range(len(tokens))]
    text = excerpt_text(tokens, flags)
    return Sample(0, label, 0 if label else None, text, "x", sorted(marked), len(tokens), special)


def words(first: str, n: int, breaks: int = 0) -> list[str]:
    return [first] + [" word"] * (n - 1 - breaks) + ["↵"] * breaks


#: probe -> (an activating sample, a non-activating sample) that differ in that probe's cue only.
CUES = {
    "run_count": (lambda i: sample(True, [20]), lambda i: sample(False, [4, 12, 20])),
    "marked_count": (lambda i: sample(True, [i % 20]), lambda i: sample(False, [i % 20, 22, 24, 26])),
    "longest_run": (lambda i: sample(True, [10, 11, 12, 13]), lambda i: sample(False, [10])),
    "peak_position": (lambda i: sample(True, [24 + i % 4]), lambda i: sample(False, [2 + i % 4])),
    "modal_index_marked": (lambda i: sample(True, [24]), lambda i: sample(False, [i % 20])),
    "late_share": (lambda i: sample(True, [25, i % 10]), lambda i: sample(False, [3, i % 10])),
    "excerpt_length": (lambda i: sample(True, [], words("A", 30)), lambda i: sample(False, [], words("A", 10))),
    "special_token": (lambda i: sample(True, [5], special=True), lambda i: sample(False, [5])),
    "line_breaks": (lambda i: sample(True, [], words("A", 20, 3)), lambda i: sample(False, [], words("A", 20))),
    "starts_lowercase": (lambda i: sample(True, [], words("the", 20)), lambda i: sample(False, [], words("The", 20))),
}


def probe_ba(probe: str, samples: list[Sample]) -> float:
    task = "fuzzing" if probe in cues.PROBES["fuzzing"] else "detection"
    return cues.probe_scores(task, samples)[f"cue:{task}:{probe}"]


def test_every_probe_has_a_case():
    assert set(CUES) == set(cues.PROBES["fuzzing"]) | set(cues.PROBES["detection"])


@pytest.mark.parametrize("probe", sorted(CUES))
def test_probe_reads_a_label_its_cue_gives_away(probe):
    pos, neg = CUES[probe]
    samples = [pos(i) for i in range(30)] + [neg(i) for i in range(20)]
    assert probe_ba(probe, samples) >= 0.95


@pytest.mark.parametrize("probe", sorted(CUES))
def test_probe_stays_at_chance_when_both_labels_share_the_cue(probe):
    pos, neg = CUES[probe]
    samples = []
    for i in range(20):  # every cue value shown once with each label
        for make in (pos, neg):
            for label in (True, False):
                made = make(i)
                made.label = label
                samples.append(made)
    assert probe_ba(probe, samples) <= 0.55


def test_leave_one_out_never_reads_the_held_out_label():
    """Against a brute-force refit per held-out sample, on random data."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, 25).astype(float)
        y = rng.random(25) < 0.4
        got = cues.loo_threshold_predictions(x, y)
        for i in range(25):
            keep = np.arange(25) != i
            xs, ys = x[keep], y[keep]
            values = np.unique(x)  # cuts come from every value shown, labels unseen
            cuts = [-np.inf] + list((values[:-1] + values[1:]) / 2)
            rules = [(t, False) for t in cuts] + [(t, True) for t in cuts]
            bas = []
            for t, flip in rules:
                pred = (xs > t) ^ flip
                bas.append(round(0.5 * (pred[ys].mean() + (~pred[~ys]).mean()), 9))
            t, flip = rules[int(np.argmax(bas))]  # the first best rule, as documented
            assert got[i] == ((x[i] > t) ^ flip)


def test_cue_rows_ride_along_a_fuzzing_score_but_not_a_control():
    samples = fuzzing_samples(make_test_set(), 0.3, 10, 10, random.Random(1))
    rows = companions("fuzzing", samples, ScoreConfig())
    assert [name for name, _, _ in rows] == cues.probe_names("fuzzing")
    for _, chash, outcome in rows:
        assert outcome.status == "scored" and 0 <= outcome.score <= 1
        assert outcome.n_examples == len(samples) and outcome.chance["balanced_accuracy"] == 0.5
        assert chash == rows[0][1]
    assert companions("fuzzing", samples, ScoreConfig(control="shuffled")) == []


def test_moved_runs_sit_where_true_runs_sit():
    """With every peak at index 24, a moved mark lands as near 24 as it may: two tokens away (the next
    token touches the active one), so the late marks tell it apart no more (its exact place still does
    until the peak moves from window to window: the collect's jitter)."""
    contexts = [activating(i, 24) for i in range(1, 31)]
    samples = fuzzing_samples(contexts, 0.3, 0, 30, random.Random(4))
    moved = [s for s in samples if s.variant == "misplaced_marks"]
    assert len(moved) == 30 and {abs(s.marked[0] - 24) for s in moved} == {2}
    assert probe_ba("late_share", samples) <= 0.55
