"""The planted dictionary: its file, each rule family, density and fidelity, bad input, a real collect."""

from __future__ import annotations

import json
import math

import duckdb
import pytest
import torch

from autointerp.cli import main
from autointerp.errors import AutointerpError
from autointerp.models.dictionaries import load_dictionary
from autointerp.models.dictionaries.planted import PlantedDictionary, calibrate
from autointerp.models.dictionaries.planted_rules import Vocabulary, compile_rule
from autointerp.models.dictionaries.planted_spec import parse_planted, read_planted_file

from .conftest import SMALL

# a small vocabulary; ``encode`` takes the longest token at each point (a real greedy tokenizer)
STRINGS = ["<s>", "the", " the", " cat", " Cat", " dog", " do", "g", "\n", "12", " 7", ".", " The", ")", " war"]
STRINGS += [" world", " a", " hot", "dog", " ]", "x", " ", "ca", "t", "c", "a", "o", "d", "w", "r", "h", "e", "T", "C"]
STRINGS += ["l", " big", "D", "W", "H"]


def greedy(text: str) -> list[int]:
    ids, i = [], 0
    while i < len(text):
        best = max((s for s in STRINGS if s and text.startswith(s, i)), key=len)
        ids.append(STRINGS.index(best))
        i += len(best)
    return ids


VOCAB = Vocabulary(STRINGS, greedy, "greedy")


def ids_of(*tokens: str) -> torch.Tensor:
    return torch.tensor([[STRINGS.index(t) for t in tokens]])


def positions(rule: dict, *tokens: str, semantic=None) -> list[int]:
    return compile_rule(rule, VOCAB, semantic)(ids_of(*tokens))[0].nonzero().flatten().tolist()


def latent(rule: dict, density=0.01, fidelity=1.0, **extra) -> dict:
    return {"description": "d", "rule": rule, "density": density, "fidelity": fidelity, **extra}


# --- each family on constructed token sequences ------------------------------------------------------
def test_word_list_fires_on_the_last_token_of_each_variant():
    rule = {"family": "word_list", "words": ["cat", "dog"]}
    assert positions(rule, "<s>", " cat", " the", " Cat", " do", "g", " hot", "dog", " dog") == [1, 3, 7, 8]
    # a word of several tokens (" hot" + "dog") fires on its last token only, and only as a whole
    assert positions({"family": "word_list", "words": ["hotdog"]}, " hot", "dog", " a", "dog", " hot") == [1]


def test_gated_word_fires_only_after_its_context_within_k():
    rule = {"family": "gated", "words": ["war"], "context_words": ["world"], "within": 2}
    assert positions(rule, " war", " world", " war", " a", " war", " a", " a", " war") == [2]  # 4 is 3 after
    assert positions(rule, " war", " world", " a", " war", " a", " a", " war") == [3]
    assert positions(rule, " world", " world", " a") == []  # the context alone never fires


@pytest.mark.parametrize(
    ("kind", "tokens", "expected"),
    [
        ("after_newline", ["the", "\n", " cat", "\n", "\n", " a"], [2, 5]),
        ("digits", ["12", " the", " 7", "x", "."], [0, 2]),
        ("capitalised_after_period", [" cat", ".", " The", " The", ".", " Cat", " a"], [2, 5]),
        ("closing_bracket", [")", " ]", "x", " the"], [0, 1]),
    ],
)
def test_structural_rules(kind, tokens, expected):
    assert positions({"family": "structural", "kind": kind}, *tokens) == expected


def test_semantic_rule_is_its_vocabulary_class():
    calls = []

    def animals(concept, threshold):
        calls.append((concept, threshold))
        return VOCAB.lookup([STRINGS.index(" cat"), STRINGS.index(" dog")])

    rule = {"family": "semantic", "concept": "animals", "threshold": 0.4}
    assert positions(rule, " cat", " the", " dog", " war", semantic=animals) == [0, 2]
    assert calls == [("animals", 0.4)]


# --- density and fidelity -----------------------------------------------------------------------------
def bound(spec_latents: list[dict], batches: list[torch.Tensor], seed=3) -> PlantedDictionary:
    planted = PlantedDictionary(parse_planted({"seed": seed, "latents": spec_latents}))
    return planted.bind(VOCAB, [0], True, lambda: iter(batches))


def binomial_ok(k: int, n: int, p: float, z: float = 4.0) -> bool:
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


def random_batches(n_batches=8, batch=64, seq=128, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1, len(STRINGS), (batch, seq), generator=g)
        ids[:, 0] = 0
        out.append(ids)
    return out


@pytest.mark.parametrize("fidelity", [1.0, 0.8, 0.5, 0.2, 0.0])
def test_density_and_fidelity_within_sampling_error(fidelity):
    batches = random_batches()
    rule = {"family": "word_list", "words": ["cat"]}  # " cat", " Cat": 2 of ~36 tokens
    planted = bound([latent(rule, density=0.02, fidelity=fidelity)], batches)
    fired = follows = counted = 0
    for ids in batches:
        acts = planted.encode_tokens(torch.zeros(*ids.shape, 0), ids)[..., 0]
        match = planted.matches(ids)[..., 0]
        counted += int(planted.counted(ids).sum())
        fired += int((acts > 0).sum())
        follows += int(((acts > 0) & match).sum())
        assert not (acts[:, 0] > 0).any()  # position 0 (BOS) never fires
    assert binomial_ok(fired, counted, 0.02)
    assert binomial_ok(follows, fired, fidelity)
    assert planted.rows()[0]["density_reached"]


def test_a_rule_too_rare_for_its_density_says_so(caplog):
    batches = random_batches(2)
    planted = bound([latent({"family": "word_list", "words": ["cat"]}, density=0.5)], batches)
    with caplog.at_level("WARNING"):
        row = planted.rows()[0]
    assert not row["density_reached"] and row["expected_density"] < 0.1
    assert "below density x fidelity" in caplog.text


def test_activations_depend_on_the_tokens_only_not_the_batch():
    batches = random_batches(1)
    planted = bound([latent({"family": "structural", "kind": "digits"}, density=0.05, fidelity=0.5)], batches)
    whole = planted.activations(batches[0])
    parts = torch.cat([planted.activations(batches[0][i : i + 5]) for i in range(0, 64, 5)])
    assert torch.equal(whole, parts) and (whole > 0).any()


def test_magnitudes_follow_the_stated_distribution():
    batches = random_batches(4)
    magnitude = {"distribution": "lognormal", "mu": 1.0, "sigma": 0.25}
    planted = bound([latent({"family": "word_list", "words": ["the"]}, density=0.3, magnitude=magnitude)], batches)
    values = torch.cat([planted.activations(b)[..., 0].flatten() for b in batches])
    logs = values[values > 0].log()
    assert len(logs) > 1000
    assert abs(float(logs.mean()) - 1.0) < 0.03 and abs(float(logs.std()) - 0.25) < 0.03


def test_calibration_arithmetic():
    planted = parse_planted({"latents": [latent({"family": "structural", "kind": "digits"}, 0.01, 0.5)]})
    row = calibrate(planted, 10_000, [200])["latents"][0]
    assert row["p_rule"] == pytest.approx(0.01 * 0.5 * 10_000 / 200)
    assert row["p_noise"] == pytest.approx(0.5 * 0.01 * 10_000 / 9_800)
    assert row["expected_density"] == pytest.approx(0.01)


def test_no_decoder_directions():
    planted = load_dictionary("planted:data/planted_example.json")
    with pytest.raises(AutointerpError, match="no decoder direction"):
        planted.decoder_directions()


# --- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rule": {"family": "regex", "pattern": "x"}}, "unknown rule"),
        ({"rule": {"family": "structural", "kind": "emoji"}}, "unknown structural rule"),
        ({"density": 0.0}, r"outside \(0, 1\)"),
        ({"density": 1.0}, r"outside \(0, 1\)"),
        ({"density": "often"}, "density is 'often'"),
        ({"fidelity": 1.5}, r"outside \[0, 1\]"),
        ({"fidelity": -0.1}, r"outside \[0, 1\]"),
        ({"magnitude": {"distribution": "gamma"}}, "not a known distribution"),
        ({"description": ""}, "no description"),
        ({"colour": "red"}, "unknown keys"),
    ],
)
def test_bad_latents_are_refused_clearly(change, message):
    item = {**latent({"family": "word_list", "words": ["cat"]}), **change}
    with pytest.raises(AutointerpError, match=message) as info:
        parse_planted({"latents": [item]})
    assert "docs/planted.md" in str(info.value)


def test_a_file_that_does_not_parse(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"latents": [')
    with pytest.raises(AutointerpError, match="not valid JSON"):
        read_planted_file(bad)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("latents = [")
    with pytest.raises(AutointerpError, match="not valid TOML"):
        read_planted_file(bad_toml)


def test_toml_reads_like_json(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('seed = 2\n[[latents]]\ndescription = "digits"\ndensity = 0.01\n'
                    '[latents.rule]\nfamily = "structural"\nkind = "digits"\n')  # fmt: skip
    assert read_planted_file(path).latents[0].rule == {"family": "structural", "kind": "digits"}


def test_the_shipped_example_parses_and_spans_every_family():
    example = read_planted_file("data/planted_example.json")
    assert {s.family for s in example.latents} == {"word_list", "gated", "structural", "semantic"}


# --- real collects (slow) -----------------------------------------------------------------------------
def small_args(db, *extra) -> list[str]:
    args = ["collect", "--db", str(db), "--quiet"]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return args + list(extra)


PLANTED = [
    latent({"family": "word_list", "words": ["the", "of"]}, density=0.02, fidelity=1.0),
    latent({"family": "structural", "kind": "digits"}, density=0.005, fidelity=0.5),
    latent({"family": "structural", "kind": "after_newline"}, density=0.002, fidelity=0.8),
    latent({"family": "gated", "words": ["of"], "context_words": ["the"], "within": 8}, density=0.001),
    latent({"family": "word_list", "words": ["zygote"]}, density=0.01),  # too rare: says so
]


def rows(db, sql):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_planted_latents_fire_at_their_target_density_in_a_real_collect(tmp_path):
    file = tmp_path / "planted.json"
    file.write_text(json.dumps({"seed": 5, "latents": PLANTED}))
    db = tmp_path / "p.duckdb"
    assert main(small_args(db, "--sae", f"planted:{file}", "--tokens", "40960")) == 0
    got = rows(
        db,
        "SELECT p.latent, p.rule_density, p.target_density, p.expected_density, p.density_reached, "
        "p.achieved_density, s.n_firing, s.n_tokens, p.fidelity FROM planted_latents p "
        "JOIN latent_stats s USING (run_id, latent) ORDER BY latent",
    )
    assert [r[0] for r in got] == list(range(len(PLANTED)))
    for _, _, target, expected, reached, achieved, n_firing, n_tokens, _ in got:
        assert achieved == n_firing / n_tokens
        if reached:
            assert expected == pytest.approx(target) and binomial_ok(n_firing, n_tokens, target)
        else:  # fires on every match (and its noise share): the expected density, within sampling error
            assert expected < target and binomial_ok(n_firing, n_tokens, expected)
    rule_density = {
        r[0]: rows(db, f"SELECT rule_density FROM planted_latents WHERE latent = {r[0]}")[0][0] for r in got
    }
    assert [r[4] for r in got] == [rule_density[r[0]] >= r[2] * r[8] for r in got]
    assert got[0][4] and got[1][4] and not got[4][4]  # "the"/"of" and digits are common; "zygote" is not


@pytest.mark.slow
def test_planted_appended_after_the_embedded_sae_and_refused_by_steering(tmp_path):
    file = tmp_path / "planted.json"
    file.write_text(json.dumps({"latents": PLANTED[:2]}))
    db = tmp_path / "a.duckdb"
    assert main(small_args(db, "--planted", str(file))) == 0
    n_latents = rows(db, "SELECT n_latents FROM collections")[0][0]
    assert n_latents == 2304 + 2
    assert [r[0] for r in rows(db, "SELECT latent FROM planted_latents ORDER BY latent")] == [2304, 2305]
    con = duckdb.connect(str(db))
    try:
        from autointerp.score.intervention.store import PLANTED_REASON, SteeringStore, planted_latents

        run_id = rows_con(con, "SELECT run_id FROM runs WHERE stage = 'collect'")[0][0]
        assert planted_latents(con, run_id) == {2304, 2305}
        store = SteeringStore.__new__(SteeringStore)  # only what _steering reads for a planted latent
        store.planted, store.hash = {2304}, "h"
        store.config = type("C", (), {"target_kl": 1.0, "kl_tolerance": 0.1})()
        import asyncio

        steering = asyncio.run(store._steering(2304))
        assert not steering.reached and steering.unreached_reason() == PLANTED_REASON
    finally:
        con.close()


def rows_con(con, sql):
    return con.execute(sql).fetchall()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"latents": [latent({"family": "telepathy"})]}), "unknown rule"),
        (json.dumps({"latents": [latent({"family": "structural", "kind": "digits"}, density=2)]}), "outside"),
        (json.dumps({"latents": [latent({"family": "structural", "kind": "digits"}, fidelity=7)]}), "outside"),
    ],
)
def test_bad_planted_file_exits_2_and_keeps_the_database(tmp_path, capsys, content, message):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"latents": PLANTED[:1]}))
    db = tmp_path / "kept.duckdb"
    assert main(small_args(db, "--sae", f"planted:{good}", "--tokens", "2048")) == 0
    before = rows(db, "SELECT count(*), sum(hash(latent, rule, achieved_density)) FROM planted_latents")
    stats = rows(db, "SELECT sum(hash(latent, n_firing)) FROM latent_stats")
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    for args in (["--sae", f"planted:{bad}"], ["--planted", str(bad)]):
        assert main(small_args(db, *args, "--tokens", "2048", "--overwrite")) == 2
        err = capsys.readouterr().err
        assert message in err and "docs/planted.md" in err
    assert rows(db, "SELECT count(*), sum(hash(latent, rule, achieved_density)) FROM planted_latents") == before
    assert rows(db, "SELECT sum(hash(latent, n_firing)) FROM latent_stats") == stats
    assert rows(db, "SELECT count(*) FROM runs WHERE status != 'complete'") == [(0,)]


def test_one_planted_file_at_a_time():
    from autointerp.collect.dictionary import request
    from autointerp.config import CollectConfig

    config = CollectConfig(sae="planted:data/planted_example.json", planted="data/planted_example.json")
    with pytest.raises(AutointerpError, match="one planted file"):
        request(config)


@pytest.mark.slow
def test_semantic_class_of_the_real_vocabulary():
    """The first call embeds the vocabulary (minutes on a CPU, then cached in $AUTOINTERP_CACHE)."""
    from autointerp.models.dictionaries.planted_semantic import SemanticClasses
    from autointerp.models.subject import load_subject_model

    tokenizer = load_subject_model("embedded", "", "cpu", "float32").tokenizer
    vocab = Vocabulary.of(tokenizer)
    animals = SemanticClasses(vocab)("animals", 0.5)
    ids = {s: tokenizer(s, add_special_tokens=False)["input_ids"] for s in (" dog", " horses", " the", " table")}
    assert all(len(v) == 1 for v in ids.values())
    assert animals[ids[" dog"][0]] and animals[ids[" horses"][0]]
    assert not animals[ids[" the"][0]] and not animals[ids[" table"][0]]
    assert 20 < int(animals.sum()) < 2000
