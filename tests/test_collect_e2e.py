"""End to end: `autointerp collect` on the embedded default into a real DuckDB file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from autointerp.corpus import SequencePacker, open_corpus, texts_of
from autointerp.models import embedded

from .conftest import SMALL

pytestmark = pytest.mark.slow
DOCS = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


def documented_columns(view: str) -> list[str]:
    text = DOCS.read_text()
    section = text.split(f"## `{view}`")[1].split("\n## ")[0]
    return re.findall(r"^\| `(\w+)` \|", section, flags=re.M)


@pytest.mark.parametrize("view", ["latents", "examples"])
def test_views_have_exactly_the_documented_columns(collected_db, view):
    con = duckdb.connect(str(collected_db), read_only=True)
    columns = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]
    assert columns == documented_columns(view)


def test_every_latent_has_a_row_and_a_status(collected_db):
    con = duckdb.connect(str(collected_db), read_only=True)
    d_sae = json.loads((embedded.DEFAULT_SAE_DIR / "cfg.json").read_text())["d_sae"]
    rows = con.execute("SELECT latent, status, reason, n_firing FROM latents ORDER BY latent").fetchall()
    assert [r[0] for r in rows] == list(range(d_sae))
    statuses = {r[1] for r in rows}
    assert statuses <= {"ok", "too_few_examples", "dead"} and "ok" in statuses
    for latent, status, reason, n_firing in rows:
        assert (reason is None) == (status == "ok"), latent
        assert (status == "dead") == (n_firing == 0), latent
    # Counted tokens: every position but the first of each sequence and special tokens.
    n_tokens = con.execute("SELECT DISTINCT n_tokens FROM latents").fetchall()
    assert len(n_tokens) == 1 and 0 < n_tokens[0][0] < SMALL["tokens"]


def test_run_config_and_run_ids(collected_db):
    con = duckdb.connect(str(collected_db), read_only=True)
    run_id, config, status = con.execute("SELECT run_id, config, status FROM runs WHERE stage='collect'").fetchone()
    assert status == "complete"
    config = json.loads(config)
    assert config["tokens"] == SMALL["tokens"] and config["hookpoint"] == embedded.DEFAULT_HOOKPOINT
    for table in ("contexts", "latent_examples", "latent_stats", "collections"):
        assert con.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall() == [(run_id,)], table


def test_explain_and_test_sets_are_disjoint_and_complete(collected_db):
    con = duckdb.connect(str(collected_db), read_only=True)
    overlap = con.execute("""
        SELECT count(*) FROM examples a JOIN examples b
          ON a.latent = b.latent AND a.sequence_id = b.sequence_id AND a.split = 'explain' AND b.split = 'test'
         AND a.start_pos < b.start_pos + 32 AND b.start_pos < a.start_pos + 32""").fetchone()[0]
    assert overlap == 0
    counts = con.execute("""
        SELECT l.latent, count(*) FILTER (e.split = 'test' AND e.kind = 'quantile'),
               count(*) FILTER (e.split = 'test' AND e.kind = 'random'),
               count(*) FILTER (e.split = 'explain' AND e.kind = 'quantile')
        FROM latents l JOIN examples e USING (latent) WHERE l.status = 'ok' GROUP BY l.latent""").fetchall()
    assert counts
    for latent, test_q, test_r, explain_q in counts:
        # the full plan gives 2 test quantile contexts; a context whose source document already holds one of
        # the latent's explain contexts is passed over (document-level split), which can leave one
        assert 1 <= test_q <= 2 and test_r == 2 and explain_q <= 2, latent
    assert sum(test_q == 2 for _, test_q, _, _ in counts) >= 0.8 * len(counts)


def test_contexts_are_stored_once(collected_db):
    con = duckdb.connect(str(collected_db), read_only=True)
    n, distinct = con.execute("SELECT count(*), count(DISTINCT context_id) FROM contexts").fetchone()
    assert n == distinct
    shared = con.execute(
        "SELECT count(*) FROM (SELECT context_id FROM examples GROUP BY context_id HAVING count(DISTINCT latent) > 1)"
    ).fetchone()[0]
    assert shared > 0  # several latents point at one stored context


def test_stored_activations_equal_a_recomputation(collected_db):
    """Rebuild the sequences from the corpus, run the full model (all hidden states, no hook) and the
    SAE's formula from its weight file, and compare with what collect stored."""
    con = duckdb.connect(str(collected_db), read_only=True)
    rows = con.execute("""
        SELECT latent, sequence_id, start_pos, token_ids, activations, max_activation, kind FROM examples
        WHERE latent IN (SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 4)
        ORDER BY latent, kind, rank""").fetchall()
    assert rows
    model, tokenizer = embedded.load_smollm2(torch.float32)
    packer = SequencePacker(tokenizer, SMALL["seq_len"])
    sequences = []
    for seq in packer.sequences(texts_of(open_corpus("embedded"), "text")):
        sequences.append(seq)
        if len(sequences) == SMALL["tokens"] // SMALL["seq_len"]:
            break
    w = load_file(str(embedded.DEFAULT_SAE_DIR / "sae_weights.safetensors"))
    k = json.loads((embedded.DEFAULT_SAE_DIR / "cfg.json").read_text())["k"]
    needed = sorted({r[1] for r in rows})
    ids = torch.tensor(np.stack([sequences[i] for i in needed]))
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[15]  # output of layers[14]
        pre = (hidden - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
        thresh = pre.topk(k, dim=-1).values[..., -1:]
        latents = torch.where(pre >= thresh, torch.relu(pre), torch.zeros(()))
    special = set(tokenizer.all_special_ids)
    for latent, seq, start, token_ids, acts, max_act, kind in rows:
        row = needed.index(seq)
        assert token_ids == ids[row, start : start + 32].tolist()
        expected = latents[row, start : start + 32, latent].clone()
        for i in range(32):  # the first position and special tokens never count
            if start + i == 0 or token_ids[i] in special:
                expected[i] = 0
        np.testing.assert_allclose(acts, expected.numpy(), rtol=1e-3, atol=1e-3)
        if kind != "random":
            assert max_act == pytest.approx(max(acts), rel=1e-5)
            assert max_act > 0
