"""Hard negatives (kind 'hard'): a small collect with them on, checked against the collect's own model
and dictionary, the sentence encoder and the split rule; detection_hard and detection on it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from autointerp.cli import main
from autointerp.collect.replay import WindowRequest, replay_windows
from autointerp.collect.setup import setup
from autointerp.config import CollectConfig, ExplainConfig, ScoreConfig
from autointerp.errors import AutointerpError
from autointerp.explain.stage import explain
from autointerp.models.embedded import DEFAULT_SAE_DIR
from autointerp.score.stage import score

from .answering_backend import AnsweringBackend
from .conftest import SMALL, query
from .openai_server import ModelServer

HARD = dict(hard_negatives=4, hard_pool=64)
N_LATENTS = 96  # a slice of the embedded SAE: every latent is embedded, so fewer keep the test fast


def small_sae(folder: Path) -> Path:
    """The embedded SAE's first ``N_LATENTS`` latents as a SAELens TopK SAE (k = 2, so they stay sparse)."""
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(DEFAULT_SAE_DIR / "sae_weights.safetensors"))
    cfg = json.loads((DEFAULT_SAE_DIR / "cfg.json").read_text())
    cfg = {**{k: cfg[k] for k in ("architecture", "d_in", "dtype", "apply_b_dec_to_input", "metadata")}}
    cfg.update(d_sae=N_LATENTS, k=2, normalize_activations="none")
    sliced = {"W_enc": weights["W_enc"][:, :N_LATENTS], "b_enc": weights["b_enc"][:N_LATENTS]}
    sliced.update(W_dec=weights["W_dec"][:N_LATENTS], b_dec=weights["b_dec"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: np.ascontiguousarray(v) for k, v in sliced.items()}, str(folder / "sae_weights.safetensors"))
    return folder


@pytest.fixture(scope="module")
def hard_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hard")
    config = {**SMALL, "sae": str(small_sae(root / "sae"))}
    path = root / "hard.duckdb"
    args = ["collect", "--db", str(path), "--quiet"]
    for key, value in {**config, **HARD}.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    assert main(args) == 0
    return path, config


@pytest.fixture(scope="module")
def hard_db(hard_setup):
    return hard_setup[0]


def hard_rows(db) -> list[tuple]:
    return query(
        db,
        "SELECT latent, split, context_id, sequence_id, start_pos, activations, similarity, hard_by, document_id "
        "FROM examples WHERE kind = 'hard' ORDER BY latent, split, rank",
    )


def test_hard_negatives_are_stored_with_their_similarity(hard_db):
    rows = hard_rows(hard_db)
    assert rows, "the small collect found no hard negatives"
    assert {r[7] for r in rows} == {"meaning", "neighbours"}
    assert all(r[6] is not None and -1 <= r[6] <= 1 for r in rows)
    per_latent = query(
        hard_db, "SELECT max(n) FROM (SELECT latent, count(*) n FROM examples WHERE kind = 'hard' GROUP BY 1)"
    )
    assert per_latent[0][0] <= HARD["hard_negatives"]
    others = query(
        hard_db,
        "SELECT count(*) FROM examples WHERE kind <> 'hard' AND (similarity IS NOT NULL OR hard_by IS NOT NULL)",
    )
    assert others == [(0,)]
    # a hard negative is never another example of the same latent
    dupes = query(
        hard_db, "SELECT count(*) FROM (SELECT latent, context_id FROM examples GROUP BY 1, 2 HAVING count(*) > 1)"
    )
    assert dupes == [(0,)]


def test_hard_negatives_are_truly_non_activating(hard_setup):
    hard_db, collect_config = hard_setup
    rows = hard_rows(hard_db)
    assert all(max(abs(a) for a in r[5]) == 0 for r in rows)  # as stored
    # recomputed with the collect's model and dictionary, full sequence context, by the replay path
    config = CollectConfig(**collect_config)
    loaded = setup(config)
    request = WindowRequest(
        sequence=np.array([r[3] for r in rows], dtype=np.int64),
        start=np.array([r[4] for r in rows], dtype=np.int64),
        latent=np.array([r[0] for r in rows], dtype=np.int64),
        with_activations=np.ones(len(rows), dtype=bool),
        window=config.window,
    )
    tokens, activations, _ = replay_windows(loaded, request)
    assert np.abs(activations).max() == 0
    stored = query(hard_db, "SELECT token_ids FROM examples WHERE kind = 'hard' ORDER BY latent, split, rank")
    assert tokens.tolist() == [list(r[0]) for r in stored]


def test_hard_negatives_look_more_like_the_positives_than_random_ones(hard_db):
    from autointerp.models.sentence_encoder import SentenceEncoder

    rows = query(
        hard_db,
        "SELECT latent, kind, array_to_string(tokens, '') FROM examples "
        "WHERE (kind IN ('top', 'quantile') AND split = 'explain') OR kind = 'random' OR hard_by = 'meaning'",
    )
    encoder = SentenceEncoder()
    vectors = encoder.embed([r[2] for r in rows])
    hard, random = [], []
    latents = {r[0] for r in rows if r[1] == "hard"}
    for lat in latents:
        mine = [i for i, r in enumerate(rows) if r[0] == lat]
        positive = vectors[[i for i in mine if rows[i][1] in ("top", "quantile")]].mean(axis=0)
        positive /= np.linalg.norm(positive)
        hard += [float(vectors[i] @ positive) for i in mine if rows[i][1] == "hard"]
        random += [float(vectors[i] @ positive) for i in mine if rows[i][1] == "random"]
    assert hard and random
    assert np.mean(hard) > np.mean(random) + 0.05


def test_hard_negatives_keep_each_document_to_one_split(hard_db):
    rows = query(hard_db, "SELECT latent, split, document_id FROM examples")
    splits: dict[tuple[int, int], set[str]] = {}
    for lat, split, doc in rows:
        splits.setdefault((lat, doc), set()).add(split)
    assert all(len(s) == 1 for s in splits.values())
    assert {r[1] for r in hard_rows(hard_db)} == {"explain", "test"}


def test_detection_hard_is_its_own_score_and_detection_ignores_hard_rows(hard_db, tmp_path):
    import shutil

    db = tmp_path / "scored.duckdb"
    shutil.copy(hard_db, db)
    with_hard = [r[0] for r in query(db, "SELECT DISTINCT latent FROM examples WHERE kind = 'hard' AND split = 'test'")]
    ok = {r[0] for r in query(db, "SELECT latent FROM latents WHERE status = 'ok'")}
    without = sorted(ok - set(with_hard))[:1]
    latents = sorted(set(with_hard) & ok)[:2] + without
    with ModelServer(AnsweringBackend()) as server:
        common = dict(backend="openai", model="scripted", base_url=server.base_url)
        asyncio.run(explain(ExplainConfig(**common, latents=",".join(map(str, latents))), db, progress=False))
        config = ScoreConfig(**common, scorers="detection,detection_hard", batch_size=4)
        asyncio.run(score(config, db, progress=False))
    scores = {
        (r[0], r[1]): r[2:]
        for r in query(
            db, "SELECT latent, scorer, status, CAST(chance->>'score' AS DOUBLE), n_examples, reason FROM scores"
        )
    }
    assert any(scores[(lat, "detection_hard")][0] == "scored" for lat in latents)
    for lat in latents:
        n_positive = query(
            db,
            "SELECT count(*) FROM examples WHERE latent = ? AND split = 'test' AND kind IN ('top', 'quantile')",
            [lat],
        )[0][0]
        n_hard = query(
            db, "SELECT count(*) FROM examples WHERE latent = ? AND split = 'test' AND kind = 'hard'", [lat]
        )[0][0]
        status, chance, n, reason = scores[(lat, "detection_hard")]
        if n_hard:
            assert status == "scored" and chance == 0.5 and n == n_positive + n_hard
        else:
            assert status == "unscored" and "hard negatives" in reason
        # detection's samples are its test set without the hard rows
        shown = {
            r[0]
            for r in query(
                db,
                "SELECT context_id FROM score_examples WHERE latent = ? AND scorer = 'detection'",
                [lat],
            )
        }
        expected = {
            r[0]
            for r in query(
                db, "SELECT context_id FROM examples WHERE latent = ? AND split = 'test' AND kind <> 'hard'", [lat]
            )
        }
        assert shown == expected


def test_bad_hard_negative_options_are_refused():
    with pytest.raises(AutointerpError, match="--hard-by"):
        CollectConfig(hard_negatives=4, hard_by="meaning,colour")
    with pytest.raises(AutointerpError, match="--hard-negatives"):
        CollectConfig(hard_negatives=-1)
    with pytest.raises(AutointerpError, match="--hard-pool"):
        CollectConfig(hard_pool=0)
    assert (
        CollectConfig(**SMALL).result_hash() == dataclasses.replace(CollectConfig(**SMALL), hard_pool=9).result_hash()
    )
    assert main(["collect", "--db", "/tmp/never.duckdb", "--hard-by", "shape"]) == 2


def test_contrastive_explainer_is_shown_hard_negatives_where_the_latent_has_them():
    from autointerp.explain.prompt import Example, choose_examples

    positives = [Example("top", None, i, [" river"], [1.0]) for i in range(3)]
    random = [Example("random", None, i, [" market"], [0.0]) for i in range(3)]
    hard = [Example("hard", None, i, [" stream"], [0.0]) for i in range(2)]
    contrastive = ExplainConfig(explainer="contrastive", n_negatives=3, examples="top", n_examples=3)
    shown, negatives = choose_examples(positives + random + hard, contrastive)
    assert shown == positives and negatives == hard
    assert choose_examples(positives + random, contrastive)[1] == random
    shown, negatives = choose_examples(positives + random + hard, ExplainConfig(examples="top", n_examples=5))
    assert shown == positives and negatives == []  # the default explainer is shown no negatives
