"""`autointerp collect` with dictionaries other than the embedded SAELens one: a sparsify release folder
and the model's MLP neurons (raw and top-k, signed), checked against an independent recomputation."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from autointerp.cli import main
from autointerp.corpus import SequencePacker, open_corpus, texts_of
from autointerp.models import embedded

WIDTH, D_SAE, K = 576, 256, 8  # the embedded model's residual width; a small sparsify SAE
SMALL = dict(
    tokens=1024,
    seq_len=128,
    batch_size=8,
    top_k=3,
    n_quantiles=2,
    explain_per_quantile=1,
    test_per_quantile=1,
    reservoir=8,
    random_explain=2,
    random_test=2,
    dtype="float32",
)
N_SEQ = SMALL["tokens"] // SMALL["seq_len"]
WINDOW = 32


def collect_args(db, *extra) -> list[str]:
    args = ["collect", "--db", str(db), "--quiet"]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return args + list(extra)


def write_sparsify(folder, seed: int, d_in: int = WIDTH, k: int = K, transcode: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    w = {
        "encoder.weight": torch.randn(D_SAE, d_in, generator=g) / d_in**0.5,
        "encoder.bias": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, d_in, generator=g) / d_in**0.5,
        "b_dec": torch.randn(d_in, generator=g) * 0.1,
    }
    folder.mkdir(parents=True)
    save_file(w, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(
        json.dumps({"d_in": d_in, "num_latents": D_SAE, "k": k, "activation": "topk", "transcode": transcode})
    )
    return w


@pytest.fixture(scope="module")
def reference():
    """The corpus' first sequences through the full model (no early stop): the output of layer 14 and
    the input of its MLP, and which positions count."""
    model, tokenizer = embedded.load_smollm2(torch.float32)
    packer = SequencePacker(tokenizer, SMALL["seq_len"])
    sequences = []
    for seq in packer.sequences(texts_of(open_corpus("embedded"), "text")):
        sequences.append(seq)
        if len(sequences) == N_SEQ:
            break
    ids = torch.tensor(np.stack(sequences))
    seen = {}
    mlp = model.model.layers[14].mlp
    handle = mlp.register_forward_hook(lambda module, args, output: seen.update(mlp_in=args[0]))
    try:
        with torch.no_grad():
            # every layer runs (the LM head is left out: it is not needed and costs the most)
            hidden = model.model(input_ids=ids, output_hidden_states=True).hidden_states[15]  # output of layers[14]
    finally:
        handle.remove()
    counted = ~torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    counted[:, 0] = False
    return {"ids": ids, "hidden": hidden, "mlp_in": seen["mlp_in"], "mlp": mlp, "counted": counted}


def check_against(db, expected: torch.Tensor, ids: torch.Tensor, counted: torch.Tensor) -> duckdb.DuckDBPyConnection:
    """Stored statistics and example windows equal ``expected`` [N_SEQ, T, latents] (uncounted zeroed)."""
    expected = expected * counted.unsqueeze(-1)
    con = duckdb.connect(str(db), read_only=True)
    n_firing, max_act, n_tokens = (
        np.array(c)
        for c in zip(
            *con.execute("SELECT n_firing, max_activation, n_tokens FROM latents ORDER BY latent").fetchall(),
            strict=True,
        )
    )
    assert len(n_firing) == expected.shape[-1] and (n_tokens == int(counted.sum())).all()
    np.testing.assert_array_equal(n_firing, (expected != 0).sum((0, 1)).numpy())
    np.testing.assert_allclose(max_act, expected.abs().amax((0, 1)).numpy(), rtol=1e-4, atol=1e-5)
    rows = con.execute(
        "SELECT latent, sequence_id, start_pos, token_ids, activations, max_activation, kind "
        "FROM examples WHERE latent < 40"
    ).fetchall()
    assert rows
    for latent, seq, start, token_ids, acts, peak, kind in rows:
        assert token_ids == ids[seq, start : start + WINDOW].tolist()
        np.testing.assert_allclose(acts, expected[seq, start : start + WINDOW, latent].numpy(), rtol=1e-4, atol=1e-5)
        if kind != "random":  # the signed activation of largest magnitude of the sequence
            strongest = expected[seq, :, latent]
            assert peak == pytest.approx(float(strongest[strongest.abs().argmax()]), rel=1e-4, abs=1e-5)
    return con


@pytest.mark.slow
def test_sparsify_release_folder(tmp_path, capsys, reference):
    release = tmp_path / "release"
    write_sparsify(release / "layers.13", seed=1)
    w = write_sparsify(release / "layers.14", seed=2)
    db = tmp_path / "sparsify.duckdb"
    # no --hookpoint: sparsify's 'layers.14' is resolved to the model's module model.layers.14
    assert main(collect_args(db, "--sae", str(release), "--sae-hookpoint", "layers.14")) == 0
    pre = (reference["hidden"] - w["b_dec"]) @ w["encoder.weight"].T.contiguous() + w["encoder.bias"]
    top = pre.topk(K, dim=-1)
    expected = torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
    con = check_against(db, expected, reference["ids"], reference["counted"])
    assert con.execute("SELECT DISTINCT hookpoint FROM latents").fetchall() == [("model.layers.14",)]
    resolved = json.loads(con.execute("SELECT config FROM runs").fetchone()[0])["resolved"]
    assert (resolved["format"], resolved["reads"], resolved["signed"]) == ("sparsify", "output", False)
    assert sorted(resolved["sae_files"]) == ["cfg.json", "sae.safetensors"]
    assert con.execute("SELECT min(max_activation) FROM examples WHERE kind = 'top'").fetchone()[0] > 0
    con.close()

    # the result's identity covers the dictionary's configuration, not only its weights
    assert main(collect_args(db, "--sae", str(release), "--sae-hookpoint", "layers.14")) == 0
    assert "already complete" in capsys.readouterr().out
    cfg = json.loads((release / "layers.14" / "cfg.json").read_text())
    (release / "layers.14" / "cfg.json").write_text(json.dumps({**cfg, "k": K + 1}))
    assert main(collect_args(db, "--sae", str(release), "--sae-hookpoint", "layers.14")) == 2
    assert "another configuration" in capsys.readouterr().err
    # a release folder needs its hookpoint picked
    assert main(collect_args(tmp_path / "b.duckdb", "--sae", str(release))) == 2
    err = capsys.readouterr().err
    assert "layers.13, layers.14" in err and "hookpoint" in err


@pytest.mark.slow
@pytest.mark.parametrize("k", [None, 32])
def test_mlp_neuron_baseline(tmp_path, reference, k):
    spec = "neurons:model.layers.14.mlp" + (f":topk={k}" if k else "")
    db = tmp_path / "neurons.duckdb"
    assert main(collect_args(db, "--sae", spec)) == 0
    mlp, x = reference["mlp"], reference["mlp_in"]
    with torch.no_grad():  # the neurons from the MLP's formula: act(gate(x)) * up(x)
        neurons = mlp.act_fn(torch.nn.functional.linear(x, mlp.gate_proj.weight)) * torch.nn.functional.linear(
            x, mlp.up_proj.weight
        )
    if k:
        kept = neurons.abs().topk(k, dim=-1).indices
        neurons = torch.zeros_like(neurons).scatter_(-1, kept, neurons.gather(-1, kept))
    con = check_against(db, neurons, reference["ids"], reference["counted"])
    assert con.execute("SELECT DISTINCT hookpoint FROM latents").fetchall() == [("model.layers.14.mlp.down_proj",)]
    n_tokens, total = con.execute("SELECT any_value(n_tokens), sum(n_firing) FROM latents").fetchone()
    assert total == n_tokens * (k or 1536)  # top-k: exactly k per token; raw: every neuron everywhere
    # signed: top contexts of both signs, the negative side marked by its negative max_activation
    sides = dict(
        con.execute("SELECT max_activation < 0, count(*) FROM examples WHERE kind = 'top' GROUP BY ALL").fetchall()
    )
    assert sides[True] > 0 and sides[False] > 0
    ranks = con.execute(
        "SELECT max(rank) FROM examples WHERE kind = 'top' GROUP BY latent, max_activation < 0"
    ).fetchall()
    assert max(r[0] for r in ranks) == SMALL["top_k"] - 1
    resolved = json.loads(con.execute("SELECT config FROM runs").fetchone()[0])["resolved"]
    assert (resolved["reads"], resolved["signed"], resolved["sae_path"]) == ("input", True, spec)


@pytest.mark.slow
def test_input_reading_dictionary_of_the_wrong_width(tmp_path, capsys):
    write_sparsify(tmp_path / "layers.14.mlp", seed=3, d_in=100, transcode=True)
    assert main(collect_args(tmp_path / "a.duckdb", "--sae", str(tmp_path / "layers.14.mlp"))) == 2
    err = capsys.readouterr().err
    assert "size 100" in err and "input of model.layers.14.mlp" in err and "size 576" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--sae", "neurons:"], "not a neuron baseline"),
        (["--sae", "neurons:model.layers.14.mlp:top=3"], "not a neuron baseline"),
        (["--sae", "neurons:model.layers.14.mlp:topk=0"], "not a neuron baseline"),
        (["--sae", "neurons:model.layers.14.mlp", "--hookpoint", "model.layers.14"], "leave --hookpoint out"),
    ],
)
def test_neuron_spec_errors(tmp_path, capsys, extra, message):
    assert main(collect_args(tmp_path / "a.duckdb", *extra)) == 2
    assert message in capsys.readouterr().err
