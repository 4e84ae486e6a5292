"""autointerp compare: the matching core on synthetic dictionaries, and the command end to end on
copies of the session's collected database (one of them re-pointed at a permuted copy of the SAE)."""

from __future__ import annotations

import hashlib
import json
import shutil

import duckdb
import pytest
import torch

from autointerp.cli import main
from autointerp.compare.matching import match_decoders, matched_share, pw_mcc, random_matching
from autointerp.models.embedded import DEFAULT_SAE_DIR

from .conftest import query, with_explanations


def directions(n, d=32, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("exact_limit", [10**9, 0], ids=["hungarian", "sparse"])
def test_identical_dictionaries_match_as_the_identity(exact_limit):
    a = directions(200)
    matching = match_decoders(a, a.clone(), exact_limit=exact_limit)
    assert matching.method == ("hungarian" if exact_limit else "sparse")
    assert matching.latent_a.tolist() == list(range(200)) == matching.latent_b.tolist()
    assert pw_mcc(matching, 200, 200) == pytest.approx(1.0, abs=1e-6)
    assert matched_share(matching, 200, 200, 0.9) == 1.0


@pytest.mark.parametrize("exact_limit", [10**9, 0], ids=["hungarian", "sparse"])
def test_a_permuted_copy_is_recovered_exactly(exact_limit):
    a = directions(300, seed=1)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(2))
    matching = match_decoders(a, a[perm] * 3.0, exact_limit=exact_limit)  # scale does not change a direction
    assert (perm[matching.latent_b] == torch.as_tensor(matching.latent_a)).all()
    assert pw_mcc(matching, 300, 300) == pytest.approx(1.0, abs=1e-6)


def test_random_dictionaries_score_near_the_computed_baseline():
    a, b = directions(256, d=64, seed=3), directions(256, d=64, seed=4)
    value = pw_mcc(match_decoders(a, b), 256, 256)
    baseline = pw_mcc(random_matching(256, 256, 64, seed=9), 256, 256)
    assert 0.15 < baseline < 0.6  # the best of many random cosines is well above 0 in 64 dimensions
    assert value == pytest.approx(baseline, abs=0.03)


def test_sparse_matching_is_close_to_exact_and_one_to_one_on_unequal_sizes():
    a, b = directions(300, d=64, seed=5), directions(180, d=64, seed=6)
    exact = match_decoders(a, b)
    sparse = match_decoders(a, b, exact_limit=0)
    assert len(sparse) == 180 and len(set(sparse.latent_a.tolist())) == 180 == len(set(sparse.latent_b.tolist()))
    assert pw_mcc(sparse, 300, 180) <= pw_mcc(exact, 300, 180) + 1e-9
    assert pw_mcc(sparse, 300, 180) == pytest.approx(pw_mcc(exact, 300, 180), abs=0.01)


# ---- end to end -------------------------------------------------------------------------------------


def permuted_sae(folder, perm):
    """A copy of the shipped SAE whose latent i is the shipped latent perm[i]."""
    from safetensors.torch import load_file, save_file

    folder.mkdir()
    shutil.copy(DEFAULT_SAE_DIR / "cfg.json", folder / "cfg.json")
    w = load_file(str(DEFAULT_SAE_DIR / "sae_weights.safetensors"))
    w = {"W_enc": w["W_enc"][:, perm], "b_enc": w["b_enc"][perm], "W_dec": w["W_dec"][perm], "b_dec": w["b_dec"]}
    save_file({k: v.contiguous() for k, v in w.items()}, str(folder / "sae_weights.safetensors"))
    return folder


def repoint(db, sae_folder):
    """Make the collect run of ``db`` name ``sae_folder`` as its dictionary (as if it had collected it)."""
    from autointerp.collect.dictionary import files_sha256

    files = tuple(str(p) for p in sorted(sae_folder.iterdir()))
    con = duckdb.connect(str(db))
    run_id, config = con.execute("SELECT run_id, config FROM runs WHERE stage = 'collect'").fetchone()
    config = json.loads(config)
    config["sae"] = str(sae_folder)
    config["resolved"].update(sae_path=str(sae_folder), sae_sha256=files_sha256(files))
    config["resolved"].pop("sae_own_sha256", None)
    con.execute("UPDATE runs SET config = ? WHERE run_id = ?", [json.dumps(config), run_id])
    con.close()


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def permuted_pair(collected_db, tmp_path_factory):
    """(A: a copy of the collected db, B: a copy re-pointed at a permuted SAE, the permutation), both
    with explanations on their first latents (B's on the permuted indices of the same latents)."""
    tmp = tmp_path_factory.mktemp("compare")
    perm = torch.randperm(2304, generator=torch.Generator().manual_seed(7))
    texts = ["the word the", "numbers and digits", "closing brackets", "French words"]
    latents = with_explanations(collected_db, tmp / "a.duckdb", texts)
    shutil.copy(collected_db, tmp / "b.duckdb")
    inverse = torch.argsort(perm)  # B's latent inverse[i] is A's latent i
    con = duckdb.connect(str(tmp / "b.duckdb"))
    for latent, text in zip(latents, texts, strict=True):
        con.execute(
            "INSERT INTO explanation_rows VALUES (?, 'imported', 'import-test', 'default', 'test', "
            "'explained', ?, NULL, NULL, NULL, 0, 0, 0, now())",
            [int(inverse[latent]), text],
        )
    con.close()
    repoint(tmp / "b.duckdb", permuted_sae(tmp / "sae-permuted", perm))
    return tmp / "a.duckdb", tmp / "b.duckdb", perm, latents


@pytest.mark.slow
def test_compare_recovers_a_permuted_sae_end_to_end(permuted_pair, capsys):
    a, b, perm, latents = permuted_pair
    out = a.parent / "m.duckdb"
    assert main(["compare", "--db", str(a), "--db", str(b), "--out", str(out), "--tokens", "1024"]) == 0
    printed = capsys.readouterr().out
    assert "pw_mcc" in printed and "hungarian" in printed
    rows = query(out, "SELECT latent_a, latent_b, decoder_cos, activation_corr, explanation_sim FROM latent_matches")
    assert len(rows) == 2304
    assert all(perm[lb] == la for la, lb, *_ in rows)
    assert min(r[2] for r in rows) > 0.9999
    fired = [r[3] for r in rows if r[3] is not None]
    assert len(fired) > 100 and min(fired) > 0.999  # the same latent, read on the same tokens
    explained = {r[0]: r[4] for r in rows if r[4] is not None}
    assert sorted(explained) == sorted(latents) and min(explained.values()) > 0.999
    summary = dict(query(out, "SELECT measure, value FROM compare_summary"))
    baselines = dict(query(out, "SELECT measure, baseline FROM compare_summary"))
    assert summary["pw_mcc"] == pytest.approx(1.0, abs=1e-5) and baselines["pw_mcc"] < 0.3
    assert summary["matched_share_0.9"] == 1.0 and summary["activation_corr"] > 0.999
    assert {"matched_share_0.5", "matched_share_0.7", "decoder_vs_explanation_corr", "assignment"} <= set(summary)
    sides = query(out, "SELECT side, n_latents, d_model FROM compare_sources ORDER BY side")
    assert sides == [("a", 2304, 576), ("b", 2304, 576)]
    # an existing M is kept unless --overwrite
    before = digest(out)
    assert main(["compare", "--db", str(a), "--db", str(b), "--out", str(out), "--no-explanations"]) == 2
    assert "--overwrite" in capsys.readouterr().err and digest(out) == before


@pytest.mark.slow
def test_compare_refuses_bad_inputs_and_changes_nothing(permuted_pair, collected_db, tmp_path, capsys):
    a, b, _, _ = permuted_pair
    bare = tmp_path / "bare.duckdb"
    shutil.copy(collected_db, bare)  # collected, never explained
    other = tmp_path / "other.duckdb"
    shutil.copy(a, other)
    con = duckdb.connect(str(other))
    con.execute("UPDATE collections SET model = 'another/model'")
    con.close()
    before = {p: digest(p) for p in (a, b, bare, other)}
    out = tmp_path / "m.duckdb"
    cases = [
        ([a, a], "same file"),
        ([a, tmp_path / "missing.duckdb"], "No database"),
        ([a, other], "different subject models"),
        ([a, bare], "no explanations"),
    ]
    for (x, y), message in cases:
        assert main(["compare", "--db", str(x), "--db", str(y), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert {p: digest(p) for p in before} == before


def test_decoder_spaces_and_corpora_decide_which_measures_apply():
    from autointerp.compare.command import decoder_space
    from autointerp.compare.sources import Side, same_corpus
    from autointerp.models.dictionaries import LinearDictionary

    def dictionary(d_out, reads="output"):
        w = directions(8, d=4)
        return LinearDictionary(
            W_enc=w.T.clone(), b_enc=torch.zeros(8), W_dec=directions(8, d=d_out), b_dec=torch.zeros(d_out),
            activation="relu", reads=reads,
        )  # fmt: skip

    assert decoder_space(dictionary(4)) == decoder_space(dictionary(4))  # SAEs at any residual layer
    assert decoder_space(dictionary(4)) != decoder_space(dictionary(6))
    assert decoder_space(dictionary(4)) != decoder_space(dictionary(4, reads="input"))  # a transcoder
    corpus = {"dataset": "embedded", "dataset_config": "", "split": "train", "text_column": "text", "seq_len": 256}
    a = Side("a", None, None, corpus, 8, 0)
    b = Side("b", None, None, {**corpus, "dataset": "other.txt"}, 8, 0)
    assert same_corpus(a, Side("b", None, None, dict(corpus), 8, 0)) is None
    assert "dataset" in same_corpus(a, b)
