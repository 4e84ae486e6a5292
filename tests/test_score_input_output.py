"""Arad et al.'s input and output scores (score/input_output, score/scorers/input_output.py).

The numeric cores against brute force; the output side on the embedded model with planted decoder rows
(a LinearDictionary built from the embedded SAE, with rows we choose), transcoders and MLP neurons; and
the two scorers end to end through `autointerp score`.

SmolLM2's (tied) unembedding is anisotropic: every row shares a large common component, so the lens of
a bare row ranks tokens such as '<filename>' first. Planted rows are therefore built from the centred
unembedding (each row minus the vocabulary mean), which is what "promotes this token" means here.
"""

from __future__ import annotations

import random

import pytest
import torch

from autointerp.config import ScoreConfig
from autointerp.errors import AutointerpError
from autointerp.score.input_output.metrics import input_hits, output_terms, peak_token_ids, random_directions

from .conftest import query, with_explanations

DAYS = [" Monday", " Tuesday", " Wednesday", " Thursday", " Friday", " Saturday", " Sunday"]
MONTHS = [" January", " February", " March", " April", " June", " July", " August"]


# -- numeric cores (no model) --


def test_output_terms_match_a_sort():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(6, 50, generator=gen) * 3, dim=-1)
    representative = torch.stack([torch.randperm(50, generator=gen)[:5] for _ in range(6)])
    rank_term, prob_term = output_terms(probs, representative)
    for row in range(6):
        order = probs[row].argsort(descending=True).tolist()
        ranks = [order.index(t) for t in representative[row].tolist()]
        assert rank_term[row].item() == pytest.approx(1 - min(ranks) / 50)
        assert prob_term[row].item() == pytest.approx(probs[row, representative[row]].max().item())


def test_peaks_and_hits():
    records = [([5, 6, 7], [0.0, 2.0, 1.0]), ([8, 9], [3.0, 3.0]), ([1], [0.5])]
    assert peak_token_ids(records) == [6, 8, 1]  # equal maxima: the first
    assert input_hits([6, 8, 1, 6], [6, 1, 99]) == 3


def test_random_directions_are_seeded_per_latent_and_keep_the_norm():
    rows = torch.randn(3, 16) * torch.tensor([[1.0], [2.0], [5.0]])
    one = random_directions(rows, [4, 7, 9], seed=22)
    assert torch.allclose(one.norm(dim=-1), rows.norm(dim=-1))
    # latent 7's direction does not depend on which latents are drawn with it
    alone = random_directions(rows[1:2], [7], seed=22)
    assert torch.allclose(alone[0], one[1])
    assert not torch.allclose(random_directions(rows, [4, 7, 9], seed=23), one)


def test_explanation_controls_are_refused():
    with pytest.raises(AutointerpError, match="do not read the explanation"):
        ScoreConfig(scorers="detection,output_score", control="shuffled")
    with pytest.raises(AutointerpError, match="input-min-examples"):
        ScoreConfig(scorers="input_score", input_min_examples=0)
    with pytest.raises(AutointerpError, match="output-alpha"):
        ScoreConfig(scorers="output_score", output_alpha=0)


# -- the output side on the embedded model --


@pytest.fixture(scope="module")
def subject():
    from autointerp.models.subject import load_subject_model

    return load_subject_model("embedded", "", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def centred(subject):
    from autointerp.models.logit_lens import unembedding_of

    weight = unembedding_of(subject).weight
    return weight - weight.mean(0)


@pytest.fixture(scope="module")
def sae():
    from autointerp.models.dictionaries import load_dictionary
    from autointerp.models.embedded import DEFAULT_HOOKPOINT, DEFAULT_SAE_DIR

    dictionary = load_dictionary(DEFAULT_SAE_DIR)
    dictionary.hookpoint = DEFAULT_HOOKPOINT
    return dictionary


def token_id(subject, word: str) -> int:
    ids = subject.tokenizer(word, add_special_tokens=False).input_ids
    assert len(ids) == 1, word
    return ids[0]


def planted_sae(sae, rows: dict[int, torch.Tensor]):
    """The embedded SAE with decoder rows replaced (unit norm, as the SAE's own)."""
    from autointerp.models.dictionaries import LinearDictionary

    W_dec = sae.W_dec.clone()
    for latent, row in rows.items():
        W_dec[latent] = row / row.norm()
    return LinearDictionary(
        W_enc=sae.W_enc,
        b_enc=sae.b_enc,
        W_dec=W_dec,
        b_dec=sae.b_dec,
        activation=sae.activation,
        k=sae.k,
        threshold=sae.threshold,
        input_bias=sae.input_bias,
        hookpoint=sae.hookpoint,
    )


@pytest.mark.slow
def test_promoting_direction_beats_random_directions(subject, centred, sae):
    from autointerp.score.input_output.sides import OutputSides

    friday = token_id(subject, " Friday")
    sides = OutputSides(subject, planted_sae(sae, {0: centred[friday]}), alpha=10.0, seed=22)
    assert sides.reason is None and sides.strength > 0
    side = sides.compute([0])[0]
    assert side.representative[0] == friday
    assert side.output["score"] > side.random_output["score"]  # the chance level stored with the score
    assert side.output["rank_term"] == 1.0 and side.output["prob_term"] > 0.1
    # and far above what random directions of the same norm typically reach
    row = sides.dictionary.decoder_directions()[0]
    _, terms = sides.score_directions(random_directions(row[None].repeat(16, 1), list(range(16)), seed=5))
    assert side.output["score"] > 100 * (terms[0] * terms[1]).median().item()


@pytest.mark.slow
def test_list_latent_has_a_high_input_score_and_a_shuffled_one_low(subject, centred, sae):
    from autointerp.score.input_output.sides import OutputSides

    days = [token_id(subject, w) for w in DAYS]
    months = [token_id(subject, w) for w in MONTHS]
    rows = {3: centred[days].mean(0), 4: centred[months].mean(0)}
    sides = OutputSides(subject, planted_sae(sae, rows), alpha=10.0, seed=22).compute([3, 4])
    rng = random.Random(0)
    # records we control: each peaks (activation 5) on a day, among filler tokens that barely fire
    filler = [token_id(subject, w) for w in (" the", " of", " and", " in")]
    records = []
    for i in range(20):
        ids = [rng.choice(filler) for _ in range(6)]
        ids[i % 6] = days[i % len(days)]
        records.append((ids, [5.0 if j == i % 6 else 0.1 for j in range(6)]))
    peaks = peak_token_ids(records)
    assert set(peaks) == set(days)
    own = input_hits(peaks, sides[3].representative) / len(peaks)
    shuffled = input_hits(peaks, sides[4].representative) / len(peaks)  # the days' records, the months' latent
    chance = input_hits(peaks, sides[3].random_representative) / len(peaks)
    assert own >= 0.9
    assert shuffled <= 0.2 and chance <= 0.2


@pytest.mark.slow
def test_transcoder_and_neurons(subject):
    from autointerp.models.dictionaries import LinearDictionary, mlp_neurons
    from autointerp.score.input_output.sides import OutputSides

    gen = torch.Generator().manual_seed(0)
    transcoder = LinearDictionary(
        W_enc=torch.randn(576, 32, generator=gen) * 0.05,
        b_enc=torch.zeros(32),
        W_dec=torch.randn(32, 576, generator=gen),
        b_dec=torch.zeros(576),
        activation="relu",
        hookpoint="model.layers.3.mlp",
        hookpoint_out="model.layers.3.mlp",
        reads="input",
    )
    for dictionary in (transcoder, mlp_neurons(subject, "model.layers.3.mlp")):
        sides = OutputSides(subject, dictionary, alpha=10.0, seed=22)
        assert sides.reason is None and sides.strength > 0, dictionary.describe()
        out = sides.compute([0, 5])
        for side in out.values():
            assert len(side.representative) == 20 and len(set(side.representative)) == 20
            assert 0 <= side.output["score"] <= 1 and 0 <= side.random_output["score"] <= 1
        assert out[0].representative != out[5].representative
        assert sides.forward_passes == 1  # two latents and two random directions, one batched forward
    # without where it writes, the reason is kept for every latent instead of a meaningless ranking
    transcoder.hookpoint_out = ""
    unwritten = OutputSides(subject, transcoder, alpha=10.0, seed=22)
    assert "writes" in unwritten.compute([1])[1].reason


@pytest.mark.slow
def test_the_edit_touches_the_last_position_only(subject, sae):
    from autointerp.models.steering import adding_at_last_position
    from autointerp.score.input_output.sides import OutputSides

    ids = subject.tokenizer("From my experience,", return_tensors="pt").input_ids.repeat(2, 1)
    vectors = torch.zeros(2, 576)
    vectors[1, 0] = 50.0
    with torch.inference_mode():
        clean = subject.model(input_ids=ids).logits
        with adding_at_last_position(subject, "model.layers.5", vectors):
            edited = subject.model(input_ids=ids).logits
    assert torch.allclose(edited[0], clean[0], atol=1e-5)  # a zero vector changes nothing
    assert torch.allclose(edited[1, :-1], clean[1, :-1], atol=1e-5)
    assert not torch.allclose(edited[1, -1], clean[1, -1], atol=1e-2)
    # the scorer's batched step after the shared KV cache of the prefix gives the same logits
    sides = OutputSides(subject, sae, alpha=10.0, seed=22)
    vectors = 400 * sae.W_dec[[0, 7, 1000]]
    with torch.inference_mode(), adding_at_last_position(subject, "model.layers.14", vectors):
        full = subject.model(input_ids=ids[:1].expand(3, -1)).logits[:, -1]
    assert torch.allclose(sides.edited_logits(vectors), full, atol=1e-3)


# -- end to end --


@pytest.mark.slow
def test_score_stores_input_and_output_scores(collected_db, tmp_path):
    from autointerp.cli import main

    db = tmp_path / "io.duckdb"
    latents = with_explanations(collected_db, db, ["rivers", "numbers", "dates"])
    args = ["score", "--db", str(db), "--scorers", "input_score,output_score", "--quiet"]
    # the fixture's collect keeps 7 activating examples per latent: below the spec's minimum of 10
    assert main([*args, "--input-min-examples", "5"]) == 0
    rows = query(
        db,
        "SELECT latent, scorer, status, score, CAST(chance->>'score' AS DOUBLE), ci_method, n_examples, "
        "CAST(detail->>'analytic_chance' AS DOUBLE) FROM scores ORDER BY latent, scorer",
    )
    assert [(r[0], r[1]) for r in rows] == [(lat, s) for lat in latents for s in ("input_score", "output_score")]
    for latent, scorer, status, score, chance, ci, n, analytic in rows:
        assert status == "scored" and 0 <= score <= 1 and chance is not None and 0 <= chance <= 1, latent
        if scorer == "input_score":
            assert ci == "wilson" and 5 <= n <= 7 and analytic == pytest.approx(20 / 49152)
        else:
            assert ci is None and n == 1
    # an explanation control of an explanation-blind scorer is refused, nothing stored changes
    before = query(db, "SELECT count(*) FROM score_rows")
    assert main([*args, "--control", "shuffled"]) == 2
    assert query(db, "SELECT count(*) FROM score_rows") == before
