"""collect with a Hugging Face model from a local folder (not the embedded one) and a parquet corpus."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from autointerp.cli import main
from autointerp.corpus import SequencePacker, open_corpus, texts_of
from autointerp.models import embedded
from autointerp.models.dictionaries import LinearDictionary
from autointerp.models.dictionaries.saelens import load_saelens, save_saelens
from autointerp.models.subject import load_subject_model

pytestmark = pytest.mark.slow
WIDTH = 64


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A randomly initialised 3-layer GPT-2 with the embedded tokenizer, saved as a local folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tokenizer = embedded.load_smollm2(torch.float32)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=3, n_embd=WIDTH, n_head=4, vocab_size=len(tokenizer), n_positions=256)
    model = GPT2LMHeadModel(config)
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_forward_stops_at_the_hookpoint(tiny_gpt2):
    subject = load_subject_model(str(tiny_gpt2), "transformer.h.1", dtype="float32")
    calls = []
    subject.model.transformer.h[2].register_forward_hook(lambda *a: calls.append("h.2"))
    subject.model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head"))
    out = subject.read(torch.tensor([[5, 6, 7, 8]]))
    assert out.shape == (1, 4, WIDTH) and calls == []
    full = subject.model.transformer(torch.tensor([[5, 6, 7, 8]]), output_hidden_states=True)
    torch.testing.assert_close(out, full.hidden_states[2])


def test_reading_a_module_input_stops_before_it(tiny_gpt2):
    subject = load_subject_model(str(tiny_gpt2), "transformer.h.1.mlp.c_proj", dtype="float32", reads="input")
    calls, seen = [], {}
    c_proj = subject.model.transformer.h[1].mlp.c_proj
    c_proj.register_forward_hook(lambda *a: calls.append("c_proj"))
    subject.model.transformer.h[2].register_forward_hook(lambda *a: calls.append("h.2"))
    ids = torch.tensor([[5, 6, 7, 8]])
    out = subject.read(ids)
    assert out.shape == (1, 4, 4 * WIDTH) and calls == [] and subject.read_width() == 4 * WIDTH
    c_proj.register_forward_hook(lambda module, args, output: seen.update(x=args[0]))
    with torch.no_grad():  # a full pass, not read: the hook lets it through
        subject.model(ids)
    torch.testing.assert_close(out, seen["x"])
    subject.attach("transformer.h.1", "output")  # moves the hook: now the block's output
    assert subject.read(ids).shape == (1, 4, WIDTH)


def test_collect_with_a_local_model_and_parquet(tiny_gpt2, tmp_path):
    g = torch.Generator().manual_seed(3)
    sae_dir = tmp_path / "sae"
    save_saelens(
        LinearDictionary(
            W_enc=torch.randn(WIDTH, 48, generator=g),
            b_enc=torch.zeros(48),
            W_dec=torch.randn(48, WIDTH, generator=g),
            b_dec=torch.zeros(WIDTH),
            activation="relu",
            hookpoint="transformer.h.1",
        ),
        sae_dir,
    )
    corpus = tmp_path / "corpus.parquet"
    texts = [f"Document {i} talks about rivers, mountains and the number {i * 7}." for i in range(400)]
    pq.write_table(pa.table({"content": texts, "id": list(range(400))}), corpus)
    db = tmp_path / "gpt2.duckdb"
    args = [
        "collect",
        "--db",
        str(db),
        "--quiet",
        "--model",
        str(tiny_gpt2),
        "--sae",
        str(sae_dir),
        "--dataset",
        str(corpus),
        "--text-column",
        "content",
        "--tokens",
        "4096",
        "--seq-len",
        "128",
        "--window",
        "16",
        "--peak-offset",
        "12",
        "--dtype",
        "float32",
        "--top-k",
        "2",
        "--n-quantiles",
        "2",
        "--explain-per-quantile",
        "1",
        "--test-per-quantile",
        "1",
        "--reservoir",
        "6",
        "--random-explain",
        "1",
        "--random-test",
        "1",
    ]
    assert main(args) == 0  # hookpoint taken from the SAE's hook name
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT DISTINCT hookpoint FROM latents").fetchall() == [("transformer.h.1",)]
    assert con.execute("SELECT count(*) FROM latents").fetchone()[0] == 48
    rows = con.execute(
        "SELECT latent, sequence_id, start_pos, token_ids, activations FROM examples "
        "WHERE kind = 'top' ORDER BY latent LIMIT 5"
    ).fetchall()
    assert rows
    subject = load_subject_model(str(tiny_gpt2), "transformer.h.1", dtype="float32")
    sae = load_saelens(sae_dir)
    packer = SequencePacker(subject.tokenizer, 128)
    sequences = list(packer.sequences(texts_of(open_corpus(str(corpus), text_column="content"), "content")))
    for latent, seq, start, token_ids, acts in rows:
        ids = torch.tensor(np.stack([sequences[seq]]))
        with torch.no_grad():  # the full model's hidden states, without the hook
            hidden = subject.model.transformer(ids, output_hidden_states=True).hidden_states[2]
        expected = sae.encode(hidden)[0, start : start + 16, latent]
        special = set(subject.tokenizer.all_special_ids)
        for i in range(16):  # the first position and special tokens (document separators) never count
            if start + i == 0 or int(ids[0, start + i]) in special:
                expected[i] = 0
        np.testing.assert_allclose(acts, expected.numpy(), rtol=1e-4, atol=1e-4)
        assert token_ids == ids[0, start : start + 16].tolist()
