"""The split rule (collect/select.py, collect/split_rule.py) against a brute-force reference, and the
reason of every latent that is not ok (collect/reduce.py)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from autointerp.collect.reduce import latent_reasons, latent_statistics
from autointerp.collect.sampler import SALT_SPLIT, SamplerSizes, StreamingSampler
from autointerp.collect.select import KINDS, SPLITS, SplitSizes, select_examples
from autointerp.collect.split_rule import bin_quotas, bin_sizes, full_plan, split_quotas, top_quota
from autointerp.collect.stream import negative_capacity
from autointerp.config import CollectConfig
from autointerp.errors import AutointerpError
from autointerp.hashing import hash62

T, W, OFFSET = 24, 6, 4

# ------------------------------------------------------------------------------------------ counts (pure)


@pytest.mark.parametrize("n_q, e, t", [(10, 4, 5), (4, 2, 3), (3, 1, 1), (5, 0, 2), (5, 3, 0)])
def test_bin_quotas_match_a_one_at_a_time_walk(n_q, e, t):
    for remaining in range(0, 120):
        # Bins by brute force: rank r goes to bin r * Q // R.
        sizes = [sum(1 for r in range(remaining) if r * n_q // remaining == q) for q in range(n_q)]
        assert bin_sizes(torch.tensor([remaining]), n_q)[0].tolist() == sizes
        # Walk the contexts each bin gives, weakest bin first: the k-th goes to test while the test set
        # holds fewer than ceil(k x t / (t + e)).
        test, explain, given = [0] * n_q, [0] * n_q, 0
        share = Fraction(t, t + e) if t + e else Fraction(0)
        for q in range(n_q):
            for _ in range(min(sizes[q], t + e)):
                given += 1
                if sum(test) < math.ceil(given * share):
                    test[q] += 1
                else:
                    explain[q] += 1
        got_test, got_explain = bin_quotas(torch.tensor([remaining]), n_q, e, t)
        assert got_test[0].tolist() == test and got_explain[0].tolist() == explain, remaining
        if remaining >= n_q * (t + e):  # the full plan: exactly t and e per bin
            assert test == [t] * n_q and explain == [e] * n_q


@pytest.mark.parametrize(
    "n_q, e, t, v", [(10, 4, 5, 3), (4, 2, 3, 2), (3, 1, 1, 1), (5, 0, 2, 1), (5, 3, 0, 2), (4, 0, 0, 3), (4, 2, 3, 0)]
)
def test_split_quotas_match_a_one_at_a_time_walk(n_q, e, t, v):
    per_bin = e + t + v
    for remaining in range(0, 120):
        sizes = bin_sizes(torch.tensor([remaining]), n_q)[0].tolist()
        # The k-th context given goes to test while the test set holds fewer than ceil(k x t / P); the
        # j-th of the others to validate while it holds fewer than ceil(j x v / (v + e)); the rest explain.
        test, validate, explain = [0] * n_q, [0] * n_q, [0] * n_q
        given = left = 0
        for q in range(n_q):
            for _ in range(min(sizes[q], per_bin)):
                given += 1
                if sum(test) < math.ceil(Fraction(given * t, per_bin)):
                    test[q] += 1
                    continue
                left += 1
                if sum(validate) < math.ceil(Fraction(left * v, v + e)):
                    validate[q] += 1
                else:
                    explain[q] += 1
        got = split_quotas(torch.tensor([remaining]), n_q, e, t, v)
        assert [x[0].tolist() for x in got] == [test, validate, explain], remaining
        if remaining >= n_q * per_bin:  # the full plan: exactly t, v and e per bin
            assert (test, validate, explain) == ([t] * n_q, [v] * n_q, [e] * n_q)
        if v == 0:  # no validate set: the two-way rule's counts exactly
            two_way = bin_quotas(torch.tensor([remaining]), n_q, e, t)
            assert (test, explain) == (two_way[0][0].tolist(), two_way[1][0].tolist())


@pytest.mark.parametrize("sides", [1, 2])
def test_top_quota_and_the_three_shares(sides):
    top_k, n_q, e, t, v = 20, 10, 4, 5, 3
    plan = full_plan(top_k, n_q, e, t, sides, v)
    assert plan == sides * 20 + 120 and full_plan(top_k, n_q, e, t, sides, 0) == full_plan(top_k, n_q, e, t, sides)
    for n in range(0, 400):
        keep = int(top_quota(torch.tensor([n]), top_k, plan)[0])
        assert keep == min(top_k, math.floor(top_k * Fraction(n, plan)))
        if n < sides * top_k:
            continue
        remaining = n - sides * keep
        test, validate, explain = (int(x.sum()) for x in split_quotas(torch.tensor([remaining]), n_q, e, t, v))
        explain += sides * keep
        if n >= plan:
            assert (test, validate, explain) == (50, 30, sides * 20 + 40)
            continue
        # everything is used (signed: the two sides' rounding may leave one out), and the three sets
        # shrink together: test keeps its share of the full plan, validate its share of what test leaves
        assert n - (sides - 1) <= test + validate + explain <= n
        assert Fraction(test, n) >= Fraction(n_q * t, plan)
        left_by_test = validate + explain - sides * keep  # what the bins gave less the test set
        assert validate >= Fraction(left_by_test * v, v + e)
        assert min(test, validate, explain) >= 1


@pytest.mark.parametrize("sides", [1, 2])
def test_top_quota_and_the_test_share(sides):
    top_k, n_q, e, t = 20, 10, 4, 5
    plan = full_plan(top_k, n_q, e, t, sides)
    assert plan == sides * 20 + 90
    for n in range(0, 400):
        keep = int(top_quota(torch.tensor([n]), top_k, plan)[0])
        assert keep == min(top_k, math.floor(top_k * Fraction(n, plan)))
        if n < sides * top_k:
            continue
        remaining = n - sides * keep
        test, explain = bin_quotas(torch.tensor([remaining]), n_q, e, t)
        n_test, n_explain = int(test.sum()), int(explain.sum()) + sides * keep
        if n >= plan:
            assert (n_test, n_explain) == (50, sides * 20 + 40)
        else:  # everything is used, and the test set keeps its share of the full plan
            # unsigned: every context is used; signed: the two sides' rounding may leave one out
            assert n - (sides - 1) <= n_test + n_explain <= n
            assert Fraction(n_test, n) >= Fraction(n_q * t, plan)
            if sides == 1:
                assert n_test >= 0.4 * n


# --------------------------------------------------------------------------- selection against a reference


def make_sampler(n_seq, rates, seed=0, signed=False, top_k=5, reservoir=200, negatives=12):
    g = torch.Generator().manual_seed(seed)
    L = len(rates)
    fires = torch.rand(n_seq, T, L, generator=g) < torch.tensor(rates)
    acts = torch.rand(n_seq, T, L, generator=g) * 10 * fires
    if signed:
        acts = acts * torch.where(torch.rand(acts.shape, generator=g) < 0.3, -1.0, 1.0)
    tokens = torch.randint(3, 1000, (n_seq, T), generator=g)
    sizes = SamplerSizes(L, T, W, OFFSET, top_k, reservoir, negatives, 12, seed + 5, signed)
    sampler = StreamingSampler(sizes, torch.device("cpu"))
    counted = torch.ones(n_seq, T, dtype=torch.bool)
    counted[:, 0] = False
    for i in range(0, n_seq, 16):
        sl = slice(i, min(i + 16, n_seq))
        sampler.update(acts[sl].clone(), tokens[sl], counted[sl], torch.arange(n_seq)[sl])
    sampler.finish()
    return sampler


def with_documents(sampler, per_document):
    """Give every buffer a document id (as H2's sampler will): ``per_document`` sequences per document."""
    for buf in sampler.buffers().values():
        buf.document = torch.where(buf.sequence >= 0, buf.sequence // per_document, -1)
    return sampler


def reference(sampler, sizes: SplitSizes) -> set[tuple]:
    """The split rule of select.py's docstring, one latent and one context at a time."""
    s = sampler.sizes
    out = set()

    def slots(buf, lat):
        doc = getattr(buf, "document", buf.sequence)
        return [
            {
                "slot": i,
                "key": buf.key[lat, i].item(),
                "seq": int(buf.sequence[lat, i]),
                "start": int(buf.start[lat, i]),
                "value": float(buf.value[lat, i]),
                "doc": int(doc[lat, i]),
            }
            for i in range(buf.key.shape[1])
            if buf.key[lat, i] >= 0
        ]

    for lat in range(s.n_latents):
        n = int(sampler.n_active_contexts[lat])
        sides = [slots(b, lat) for b in (sampler.top, sampler.top_negative) if b is not None]
        sides = [side for side in sides if side]
        per_bin = sizes.explain_per_quantile + sizes.test_per_quantile + sizes.validate_per_quantile
        plan = len(sides) * s.top_k + sizes.n_quantiles * per_bin
        keep = min(s.top_k, n * s.top_k // plan)
        top_ctx, explain_docs, test_docs, validate_docs = set(), set(), set(), set()
        for side in sides:
            for c in sorted(side, key=lambda c: (-c["key"], c["seq"]))[:keep]:
                out.add((lat, "explain", "top", -1, c["seq"], c["start"]))
                top_ctx.add((c["seq"], c["start"]))
                explain_docs.add(c["doc"])
        pool = [c for c in slots(sampler.reservoir, lat) if (c["seq"], c["start"]) not in top_ctx]
        ranked = sorted(pool, key=lambda c: (abs(c["value"]), c["slot"]))
        n_q, R = sizes.n_quantiles, len(ranked)
        for rank, c in enumerate(ranked):
            c["bin"] = rank * n_q // R
        test_quota, validate_quota, explain_quota = split_quotas(
            torch.tensor([R]), n_q, sizes.explain_per_quantile, sizes.test_per_quantile, sizes.validate_per_quantile
        )
        for c in pool:
            c["priority"] = int(hash62(sizes.seed, c["doc"], lat, SALT_SPLIT))
        used = set()
        for q in range(n_q):
            members = sorted((c for c in pool if c["bin"] == q), key=lambda c: (c["priority"], c["slot"]))
            n_test = 0
            for c in members:
                if n_test < test_quota[0, q] and c["doc"] not in explain_docs:
                    n_test += 1
                    c["split"] = "test"
                    test_docs.add(c["doc"])
        for q in range(n_q):
            members = sorted((c for c in pool if c["bin"] == q), key=lambda c: (c["priority"], c["slot"]))
            n_validate = 0
            for c in members:
                if (
                    "split" not in c
                    and n_validate < validate_quota[0, q]
                    and c["doc"] not in explain_docs
                    and c["doc"] not in test_docs
                ):
                    n_validate += 1
                    c["split"] = "validate"
                    validate_docs.add(c["doc"])
        for q in range(n_q):
            members = sorted((c for c in pool if c["bin"] == q), key=lambda c: (c["priority"], c["slot"]))
            n_explain = 0
            for c in members:
                if (
                    "split" not in c
                    and n_explain < explain_quota[0, q]
                    and c["doc"] not in test_docs
                    and c["doc"] not in validate_docs
                ):
                    n_explain += 1
                    c["split"] = "explain"
                    explain_docs.add(c["doc"])
        for c in pool:
            if "split" in c:
                out.add((lat, c["split"], "quantile", c["bin"], c["seq"], c["start"]))
                used.add(c["slot"])
        candidates = [(c, "random") for c in sorted(slots(sampler.negatives, lat), key=lambda c: (-c["key"], c["seq"]))]
        if sizes.weak_negatives:
            unused = [c for c in slots(sampler.reservoir, lat) if c["slot"] not in used]
            candidates += [(c, "weak") for c in sorted(unused, key=lambda c: (abs(c["value"]), c["slot"]))]
        taken, n_test = set(), 0
        for i, (c, kind) in enumerate(candidates):
            if n_test < sizes.random_test and c["doc"] not in explain_docs | validate_docs:
                n_test += 1
                taken.add(i)
                test_docs.add(c["doc"])
                out.add((lat, "test", kind, -1, c["seq"], c["start"]))
        n_validate = 0
        for i, (c, kind) in enumerate(candidates):
            if i not in taken and n_validate < sizes.random_validate and c["doc"] not in explain_docs | test_docs:
                n_validate += 1
                taken.add(i)
                validate_docs.add(c["doc"])
                out.add((lat, "validate", kind, -1, c["seq"], c["start"]))
        n_explain = 0
        for i, (c, kind) in enumerate(candidates):
            if i not in taken and n_explain < sizes.random_explain and c["doc"] not in test_docs | validate_docs:
                n_explain += 1
                out.add((lat, "explain", kind, -1, c["seq"], c["start"]))
    return out


def as_set(sel) -> set[tuple]:
    return {
        (int(lat), SPLITS[sp], KINDS[k], int(q), int(seq), int(st))
        for lat, sp, k, q, seq, st in zip(
            sel.latent, sel.split, sel.kind, sel.quantile, sel.sequence, sel.start, strict=True
        )
    }


def split_sizes(weak=False, n_q=4, validate=(0, 0)):
    return SplitSizes(
        n_quantiles=n_q,
        explain_per_quantile=2,
        test_per_quantile=3,
        random_explain=3,
        random_test=6,
        seed=11,
        weak_negatives=weak,
        validate_per_quantile=validate[0],
        random_validate=validate[1],
    )


RATES = [0.0, 0.002, 0.006, 0.01, 0.02, 0.04, 0.08, 0.2, 0.5, 0.9]


@pytest.mark.parametrize("per_document", [1, 3])
@pytest.mark.parametrize("weak", [False, True])
@pytest.mark.parametrize("signed", [False, True])
def test_selection_matches_the_reference(per_document, weak, signed):
    sampler = with_documents(make_sampler(150, RATES, seed=per_document, signed=signed, reservoir=60), per_document)
    for n_q in (4, 7):
        sizes = split_sizes(weak, n_q)
        sel = select_examples(sampler, sizes)
        assert as_set(sel) == reference(sampler, sizes)
        assert len(as_set(sel)) == len(sel.latent)  # no context twice


@pytest.mark.parametrize("per_document, weak", [(1, False), (3, True)])
@pytest.mark.parametrize("validate", [(2, 4), (1, 0), (0, 3)])
def test_selection_with_a_validate_set_matches_the_reference(per_document, weak, validate):
    sampler = with_documents(make_sampler(150, RATES, seed=per_document, reservoir=60, negatives=18), per_document)
    sizes = split_sizes(weak, 4, validate)
    sel = select_examples(sampler, sizes)
    assert as_set(sel) == reference(sampler, sizes)
    assert len(as_set(sel)) == len(sel.latent)
    assert ((sel.split == SPLITS.index("validate")) & (sel.kind <= 1)).any() == (validate[0] > 0)
    assert ((sel.split == SPLITS.index("validate")) & (sel.kind >= 2)).any() == (validate[1] > 0)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("per_document", [1, 3])
def test_the_three_sets_never_share_a_document(per_document, signed):
    sampler = with_documents(make_sampler(150, RATES, seed=4, signed=signed, reservoir=60), per_document)
    sel = select_examples(sampler, split_sizes(weak=True, validate=(2, 4)))
    assert set(sel.split.tolist()) == {0, 1, 2}
    for lat in range(len(RATES)):
        docs = {split: set() for split in range(3)}
        for r in np.nonzero(sel.latent == lat)[0]:
            docs[int(sel.split[r])].add(int(sel.sequence[r]) // per_document)
        assert not docs[0] & docs[1] and not docs[0] & docs[2] and not docs[1] & docs[2], lat


@pytest.mark.parametrize("per_document", [1, 3])
def test_explain_and_test_never_share_a_document(per_document):
    sampler = with_documents(make_sampler(150, RATES, seed=4, reservoir=60), per_document)
    sel = select_examples(sampler, split_sizes(weak=True))
    for lat in range(len(RATES)):
        docs = {split: set() for split in (0, 1)}
        for r in np.nonzero(sel.latent == lat)[0]:
            docs[int(sel.split[r])].add(int(sel.sequence[r]) // per_document)
        assert not docs[0] & docs[1], lat


def test_shares_and_bins_when_the_reservoir_holds_everything():
    sampler = make_sampler(200, [0.005, 0.01, 0.02, 0.03, 0.05], seed=2, top_k=20, negatives=60)
    sizes = SplitSizes(10, 4, 5, 10, 50, seed=3)
    sel = select_examples(sampler, sizes)
    for lat in range(5):
        n = int(sampler.n_active_contexts[lat])
        assert 20 <= n <= 200
        rows = np.nonzero((sel.latent == lat) & (sel.kind <= 1))[0]
        n_test = int((sel.split[rows] == 1).sum())
        if n < 110:  # below the full plan every activating context is used, 45% or more of them to test
            assert len(rows) == n and n_test >= 0.45 * n
            assert (sel.split[rows][sel.kind[rows] == 0] == 0).all()
        else:
            assert n_test == 50 and len(rows) == 110
        quantile_rows = rows[sel.kind[rows] == 1]
        # The strongest bin is never empty (no bin is), and the strongest bins give test contexts.
        for q in range(10):
            in_bin = quantile_rows[sel.quantile[quantile_rows] == q]
            assert len(in_bin) >= 1, (lat, q)
        assert (sel.split[quantile_rows[sel.quantile[quantile_rows] >= 8]] == 1).any()
        assert not np.isnan(sel.quantile_edges[lat]).any()


# ------------------------------------------------------------------------------------------------ statuses


def dense_sampler():
    """Latents that fire on some, many or all sequences (few clean negatives)."""
    return make_sampler(300, [0.0, 0.0015, 0.01, 0.2, 0.6], seed=9, top_k=20, negatives=60)


def collect_config(**kw):
    return CollectConfig(**{"random_test": 50, "random_explain": 10, **kw})


def sizes_of(config):
    return SplitSizes(
        config.n_quantiles,
        config.explain_per_quantile,
        config.test_per_quantile,
        config.random_explain,
        config.random_test,
        config.seed,
        config.weak_negatives,
    )


def test_reason_of_every_status():
    sampler = dense_sampler()
    n_active = sampler.n_active_contexts.numpy()
    config = collect_config(min_activating=20)
    stats = latent_statistics(sampler, select_examples(sampler, sizes_of(config)), config)
    assert stats["status"][0] == "dead"
    assert stats["reason"][0] == f"never fired in {sampler.n_tokens:,} counted tokens"
    assert n_active[1] < 20
    assert stats["status"][1] == "too_few_examples"
    assert stats["reason"][1] == f"{n_active[1]} activating contexts; --min-activating is 20"
    assert n_active[2] >= 20 and stats["status"][2] == "ok" and stats["reason"][2] is None
    dense = [lat for lat in (3, 4) if stats["status"][lat] != "ok"]
    assert dense, "the densest latents must lack clean negatives"
    sel = select_examples(sampler, sizes_of(config))
    for lat in dense:
        clean = int(((sel.latent == lat) & (sel.kind == 2)).sum())
        assert stats["reason"][lat] == (
            f"{clean} non-activating windows usable; 60 needed (--random-test 50 + --random-explain 10): the "
            "latent fires almost everywhere (pass --weak-negatives to use its weakest-activating windows as "
            "negatives)"
        )
    # With --weak-negatives they are ok, their reason says the negatives are weak.
    weak_config = collect_config(min_activating=20, weak_negatives=True)
    sel = select_examples(sampler, sizes_of(weak_config))
    stats = latent_statistics(sampler, sel, weak_config)
    for lat in dense:
        clean = int(((sel.latent == lat) & (sel.kind == 2)).sum())
        weak = int(((sel.latent == lat) & (sel.kind == 3)).sum())
        assert clean + weak == 60 and weak > 0
        assert stats["status"][lat] == "ok"
        assert stats["reason"][lat] == (
            f"negatives are weak: {clean} non-activating windows and {weak} weakest-activating windows "
            "(kind 'weak', --weak-negatives)"
        )
        weak_rows = np.nonzero((sel.latent == lat) & (sel.kind == 3))[0]
        # the weakest activating contexts that are not used as positives, with their activations
        assert (np.abs(sel.activations[weak_rows]).max(1) > 0).all()
        positives = (sel.latent == lat) & (sel.kind <= 1)
        assert np.abs(sel.max_activation[weak_rows]).max() <= np.abs(sel.max_activation[positives]).max()


def test_reason_when_weak_negatives_cannot_fill_the_shortfall():
    sampler = dense_sampler()
    config = collect_config(min_activating=20, weak_negatives=True, random_test=150, reservoir=200)
    n_active = sampler.n_active_contexts.numpy()
    sel = select_examples(sampler, sizes_of(config))
    reasons = latent_reasons(sel, n_active, config)
    lat = 4
    clean = int(((sel.latent == lat) & (sel.kind == 2)).sum())
    weak = int(((sel.latent == lat) & (sel.kind == 3)).sum())
    assert reasons[lat] == (
        f"{clean} non-activating windows and {weak} weakest-activating windows usable; 160 negatives needed "
        "(--random-test 150 + --random-explain 10)"
    )


def test_reason_when_a_set_would_be_empty():
    sampler = dense_sampler()
    config = collect_config(min_activating=2, test_per_quantile=0, random_test=0, random_explain=0)
    sel = select_examples(sampler, sizes_of(config))
    reasons = latent_reasons(sel, sampler.n_active_contexts.numpy(), config)
    n = int(sampler.n_active_contexts[2])
    explain = int(((sel.latent == 2) & (sel.kind <= 1)).sum())
    assert reasons[2] == (
        f"{n} activating contexts gave {explain} explain and 0 test contexts; both sets need at least one "
        "(raise --min-activating or the per-quantile sizes)"
    )


def sizes_with_validate(config):
    return SplitSizes(
        **{f: getattr(config, f) for f in SplitSizes.__dataclass_fields__ if f not in ("seed", "weak_negatives")},
        seed=config.seed,
        weak_negatives=config.weak_negatives,
    )


def test_reasons_when_a_validate_set_is_asked_for():
    # rare latents (a few activating contexts) lose a set first; dense ones lack negatives for all three
    sampler = make_sampler(150, [0.0005, 0.001, 0.002, 0.01, 0.6], seed=1, top_k=20, negatives=60)
    config = collect_config(
        min_activating=2, validate_per_quantile=1, random_validate=20, random_test=20, random_explain=5
    )
    sel = select_examples(sampler, sizes_with_validate(config))
    n_active = sampler.n_active_contexts.numpy()
    reasons = latent_reasons(sel, n_active, config)
    positive = sel.kind <= 1
    short = 0
    for lat in range(5):
        n = int(n_active[lat])
        counts = [int(((sel.latent == lat) & positive & (sel.split == k)).sum()) for k in range(3)]
        if n >= 2 and min(counts) == 0:
            short += 1
            assert reasons[lat] == (
                f"{n} activating contexts gave {counts[0]} explain, {counts[1]} test and {counts[2]} validate "
                "contexts; each set needs at least one (raise --min-activating or lower --validate-per-quantile)"
            )
    assert short, "a rare latent must have lost a set"
    clean = int(((sel.latent == 4) & (sel.kind == 2)).sum())
    assert reasons[4] == (
        f"{clean} non-activating windows usable; 45 needed (--random-test 20 + --random-validate 20 + "
        "--random-explain 5): the latent fires almost everywhere (pass --weak-negatives to use its "
        "weakest-activating windows as negatives)"
    )
    assert int(((sel.latent == 3) & (sel.split == 2) & (sel.kind == 2)).sum()) == 20 and 3 not in reasons


# ---------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("name", ["validate_per_quantile", "random_validate"])
@pytest.mark.parametrize("value", [-1, True, "2", 1.5])
def test_validate_sizes_must_be_whole_and_not_negative(name, value):
    with pytest.raises(AutointerpError, match=f"--{name.replace('_', '-')} is"):
        CollectConfig(**{name: value})


def test_a_negative_validate_size_exits_2(tmp_path, capsys):
    from autointerp.cli import main

    db = tmp_path / "x.duckdb"
    assert main(["collect", "--db", str(db), "--random-validate", "-2"]) == 2
    assert "--random-validate is -2" in capsys.readouterr().err
    assert not db.exists()


def test_the_reservoir_must_hold_the_validate_quota_too():
    CollectConfig(reservoir=90, validate_per_quantile=0)
    with pytest.raises(AutointerpError, match=r"\(4 explain \+ 5 test \+ 2 validate\) = 110"):
        CollectConfig(reservoir=100, validate_per_quantile=2)
    assert negative_capacity(CollectConfig(random_validate=20)) == negative_capacity(CollectConfig()) + 25


def test_without_a_validate_set_the_collect_identity_is_unchanged():
    # the identity every collect had before the validate split: old databases resume, reruns are skipped
    assert CollectConfig().result_hash() == "772a9e41c570270e"
    assert CollectConfig(validate_per_quantile=0, random_validate=0).result_hash() == "772a9e41c570270e"
    with_validate = {
        CollectConfig(validate_per_quantile=1).result_hash(),
        CollectConfig(random_validate=1).result_hash(),
    }
    assert len(with_validate) == 2 and "772a9e41c570270e" not in with_validate


@pytest.mark.parametrize("value", [1, 0, -3, True, "20"])
def test_min_activating_must_be_two_or_more(value):
    with pytest.raises(AutointerpError, match="--min-activating"):
        CollectConfig(min_activating=value)


# ----------------------------------------------------------------------------------------- the check


def test_rare_latents_with_at_least_the_minimum_are_ok():
    """Issue 14: latents with 101, 153, 205 and 233 activating sequences were too_few_examples."""
    counts = [12, 20, 25, 101, 153, 205, 233, 279]
    n_seq = 300
    acts = torch.zeros(n_seq, T, len(counts))
    g = torch.Generator().manual_seed(0)
    for lat, n in enumerate(counts):
        seqs = torch.randperm(n_seq, generator=g)[:n]
        pos = torch.randint(1, T, (n,), generator=g)
        acts[seqs, pos, lat] = torch.rand(n, generator=g) * 5 + 0.1
    tokens = torch.randint(3, 1000, (n_seq, T), generator=g)
    config = CollectConfig()
    negatives = negative_capacity(config)
    sizes = SamplerSizes(len(counts), T, W, OFFSET, config.top_k, config.reservoir, negatives, 12, config.seed)
    sampler = StreamingSampler(sizes, torch.device("cpu"))
    counted = torch.ones(n_seq, T, dtype=torch.bool)
    counted[:, 0] = False
    sampler.update(acts, tokens, counted, torch.arange(n_seq))
    sel = select_examples(sampler, sizes_of(config))
    stats = latent_statistics(sampler, sel, config)
    assert stats["n_active_contexts"].tolist() == counts
    assert stats["status"].tolist() == ["too_few_examples"] + ["ok"] * 7, stats["reason"]
    assert stats["reason"][0] == "12 activating contexts; --min-activating is 20"
    for lat, n in enumerate(counts[1:], start=1):
        test = int(((sel.latent == lat) & (sel.kind <= 1) & (sel.split == 1)).sum())
        explain = int(((sel.latent == lat) & (sel.kind <= 1) & (sel.split == 0)).sum())
        assert (test, explain) == ((50, 60) if n >= 110 else (test, n - test)), n
        assert test >= 0.4 * min(n, 110)


# ------------------------------------------------------------------------------------- a real small collect


@pytest.mark.slow
def test_a_collect_with_a_validate_set(collected_db, tmp_path):
    import duckdb

    from autointerp.collect.stage import collect
    from autointerp.store.splits import split_sizes as stored_split_sizes
    from autointerp.store.splits import validate_sizes

    from .conftest import small_config

    config = small_config(validate_per_quantile=1, random_validate=2)
    db = tmp_path / "validate.duckdb"
    collect(config, db, progress=False)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT DISTINCT split FROM examples ORDER BY 1").fetchall() == [
        ("explain",),
        ("test",),
        ("validate",),
    ]
    # Per latent the three sets share no source document, no context and no token position.
    for key in ("document_id", "context_id"):
        shared = con.execute(
            f"SELECT count(*) FROM (SELECT latent, {key} FROM examples GROUP BY ALL HAVING count(DISTINCT split) > 1)"
        ).fetchone()[0]
        assert shared == 0, key
    assert con.execute("SELECT count(*) FROM examples WHERE document_id IS NULL").fetchone()[0] == 0
    overlapping = con.execute(
        "SELECT count(*) FROM examples a JOIN examples b ON a.latent = b.latent AND a.split < b.split "
        "AND a.sequence_id = b.sequence_id AND a.start_pos < b.start_pos + len(b.token_ids) "
        "AND b.start_pos < a.start_pos + len(a.token_ids)"
    ).fetchone()[0]
    assert overlapping == 0
    # Every ok latent has all three sets; validate_sizes counts them.
    ok = [r[0] for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent").fetchall()]
    sizes = validate_sizes(con, ok)
    assert len(ok) > 100 and all(sizes[lat][0] >= 1 for lat in ok)
    counted = con.execute(
        "SELECT latent, count(*) FILTER (WHERE kind IN ('top', 'quantile')), count(*) FILTER (WHERE kind = 'random') "
        "FROM examples WHERE split = 'validate' GROUP BY latent"
    ).fetchall()
    assert {lat: (a, n) for lat, a, n in counted if lat in sizes} == {lat: sizes[lat] for lat in ok}
    assert stored_split_sizes(con, "validate", [10**6]) == {10**6: (0, 0)}
    # The test set of a latent at the full plan is the one a collect without a validate set picks.
    plan = full_plan(config.top_k, config.n_quantiles, config.explain_per_quantile, config.test_per_quantile, 1, 1)
    rows = "SELECT latent, context_id FROM {}.examples WHERE split = 'test' AND kind = 'quantile' AND latent IN ({})"
    full = (
        "SELECT latent FROM latents WHERE n_active_contexts >= " + str(plan) + " AND status = 'ok' "
        "AND latent NOT IN (SELECT latent FROM examples WHERE kind = 'top' AND max_activation < 0)"
    )
    con.close()
    both = duckdb.connect()
    both.execute(f"ATTACH '{db}' AS v (READ_ONLY)")
    both.execute(f"ATTACH '{collected_db}' AS o (READ_ONLY)")
    both.execute("USE v")
    with_validate = set(both.execute(rows.format("v", full)).fetchall())
    without = set(both.execute(rows.format("o", full)).fetchall())
    both.close()
    assert len(with_validate) > 100 and with_validate == without
    assert stored_split_sizes(duckdb.connect(str(collected_db), read_only=True), "validate", [0]) == {0: (0, 0)}
