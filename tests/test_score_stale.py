"""Scores that must not be reused or made: explanations and scores of an earlier collect after
``collect --overwrite`` (issue 15 item 3), and imported explanations of latents without a full test set
(item 4). The LLM answers come from the scripted backend behind the real test server: these tests check
which rows are made and skipped, not what the numbers are."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil

import pytest

from autointerp.cli import main
from autointerp.config import ExplainConfig, ScoreConfig
from autointerp.errors import AutointerpError
from autointerp.explain.stage import explain
from autointerp.score.stage import score

from .answering_backend import AnsweringBackend
from .conftest import SMALL, query, with_explanations
from .openai_server import ModelServer
from .test_interop_import import delphi_folder, import_hash

pytestmark = pytest.mark.slow  # the databases come from a collect on the embedded model


def collect_again(db, **changes) -> None:
    settings = {**SMALL, **changes}
    args = ["collect", "--db", str(db), "--overwrite", "--quiet"]
    for key, value in settings.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    assert main(args) == 0


def explain_hashes(db) -> set[str]:
    return {r[0] for r in query(db, "SELECT DISTINCT config_hash FROM explanations WHERE config_hash <> 'imported'")}


def test_collect_overwrite_leaves_nothing_to_reuse(collected_db, tmp_path):
    db = tmp_path / "overwrite.duckdb"
    imported = with_explanations(collected_db, db, ["names of rivers", "dates and years"])
    latents = [r[0] for r in query(db, "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 3")]
    with ModelServer(AnsweringBackend()) as server:
        common = dict(backend="openai", model="scripted", base_url=server.base_url)
        explain_config = ExplainConfig(**common, latents=",".join(map(str, latents)), n_examples=3)
        score_config = ScoreConfig(**common, scorers="detection", batch_size=2)

        def run_score(explanations: str = ""):
            config = dataclasses.replace(score_config, explanations=explanations)
            return asyncio.run(score(config, db, progress=False))

        assert asyncio.run(explain(explain_config, db, progress=False)).explained == 3
        (first_hash,) = explain_hashes(db)
        first = run_score(first_hash)
        assert first.scored + first.unscored == 3 and first.skipped_done == 0
        assert run_score(first_hash).skipped_done == 3  # nothing changed: everything is done

        collect_again(db, seed=5)  # another setting: other examples and test sets
        ok = {r[0] for r in query(db, "SELECT latent FROM latents WHERE status = 'ok'")}
        after = run_score()  # the earlier explain's explanations are stale; the imported ones are scored anew
        assert after.skipped_done == 0 and after.scored + after.unscored == len(set(imported) & ok)
        with pytest.raises(AutointerpError, match="current collect"):
            asyncio.run(score(ScoreConfig(**common, scorers="detection", explanations=first_hash), db, progress=False))
        again = asyncio.run(explain(explain_config, db, progress=False))
        assert again.skipped_done == 0 and again.todo == len(set(latents) & ok)
        (second_hash,) = explain_hashes(db) - {first_hash}
        # the new explanations and the imported ones of the same latents: two explainer configurations,
        # which one score run must not blend
        with pytest.raises(AutointerpError, match="explainer configurations"):
            run_score()
        scored = run_score(second_hash)
        assert scored.skipped_done == 0 and scored.scored + scored.unscored == again.todo
        new_ids = {
            r[0] for r in query(db, "SELECT DISTINCT explanation_id FROM scores WHERE run_id = ?", [scored.run_id])
        }
        assert new_ids and all(i.startswith(second_hash + "/") for i in new_ids)

        # The same setting again: --overwrite asks for the results to be replaced, and the corpus behind the
        # same path may have changed, so nothing is reused either (the collect's run id is the identity).
        collect_again(db, seed=5)
        assert asyncio.run(explain(explain_config, db, progress=False)).skipped_done == 0
        (third_hash,) = explain_hashes(db) - {first_hash, second_hash}
        assert run_score(third_hash).skipped_done == 0


def test_imported_explanations_of_latents_not_ok_are_not_scored_and_are_labelled(collected_db, tmp_path, capsys):
    db = tmp_path / "import.duckdb"
    shutil.copy(collected_db, db)
    ok = [r[0] for r in query(db, "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 2")]
    not_ok = [r[0] for r in query(db, "SELECT latent FROM latents WHERE status <> 'ok' ORDER BY latent LIMIT 2")]
    assert len(ok) == 2 and not_ok, "the small collect should leave some latents without a full test set"
    folder = delphi_folder(tmp_path, {lat: f"explanation {lat}" for lat in ok + not_ok})
    assert main(["import", "--db", str(db), "--from", "delphi", "--path", str(folder)]) == 0
    chash = import_hash(capsys.readouterr().out)
    assert main(["score", "--db", str(db), "--explanations", chash, "--scorers", "embedding", "--quiet"]) == 0
    rows = query(db, "SELECT latent, explanation_id, detail FROM scores ORDER BY latent")
    assert [r[0] for r in rows] == ok  # not the latents without a test set
    assert all(r[1].startswith("import-") and json.loads(r[2])["imported"] is True for r in rows)


def test_another_embedding_model_in_a_folder_of_the_same_name_is_scored_anew(collected_db, tmp_path):
    from autointerp.score.embedding import default_model_path

    db = tmp_path / "embedding.duckdb"
    with_explanations(collected_db, db, ["names of rivers", "dates and years"])
    folders = [tmp_path / name / "model" for name in ("a", "b")]
    for folder in folders:
        shutil.copytree(default_model_path(), folder)
    weights = folders[1] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # another model: one bit of one weight differs
    weights.write_bytes(bytes(data))
    results = [
        asyncio.run(score(ScoreConfig(scorers="embedding", embedding_model=str(f)), db, progress=False))
        for f in folders + folders[:1]
    ]
    assert [(r.scored, r.skipped_done) for r in results] == [(2, 0), (2, 0), (0, 2)]
    assert len({r[0] for r in query(db, "SELECT config_hash FROM scores WHERE scorer = 'embedding'")}) == 2
