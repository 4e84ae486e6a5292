"""``autointerp import``: explanations from a delphi results folder (written here in delphi's layout) and
from Neuronpedia exports (ours, and files shaped like Neuronpedia's bulk exports), then scored here."""

from __future__ import annotations

import gzip
import json
import re
import shutil

import duckdb
import pytest

from autointerp.cli import main

from .conftest import query

DELPHI = {
    0: "mentions of rivers and streams",
    1: "the definite article “the”",
    2: "years and dates",
    5: "units of measurement",
    9: "Explanation could not be parsed.",
}
TABLES = ("explanation_rows", "runs", "score_rows", "score_example_rows")


@pytest.fixture
def db(collected_db, tmp_path):
    path = tmp_path / "import.duckdb"
    shutil.copy(collected_db, path)
    return path


def counts(db) -> dict[str, int]:
    return {t: query(db, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def delphi_folder(root, explanations: dict[int, str], module: str = "layers.14"):
    """A results folder as delphi's __main__ writes it: run_config.json, explanations/<module>_latent<N>.txt
    holding orjson.dumps(explanation) (a compact UTF-8 JSON string), scores/<scorer>/<same name>.txt."""
    base = root / "results" / "smollm-run"
    (base / "explanations").mkdir(parents=True, exist_ok=True)
    (base / "scores" / "detection").mkdir(parents=True, exist_ok=True)
    (base / "run_config.json").write_text(
        json.dumps(
            {
                "model": "HuggingFaceTB/SmolLM2-135M",
                "hookpoints": [module],
                "explainer_model": "hugging-quants/Llama-3.3-70B-AWQ",
            },
            indent=4,
        )
    )
    for latent, text in explanations.items():
        name = f"{module}_latent{latent}.txt"
        (base / "explanations" / name).write_bytes(json.dumps(text, ensure_ascii=False).encode())
        (base / "scores" / "detection" / name).write_bytes(
            json.dumps(
                [
                    {
                        "str_tokens": ["a"],
                        "activating": True,
                        "prediction": True,
                        "probability": None,
                        "correct": True,
                        "activations": [1.0],
                        "distance": 1,
                    }
                ]
            ).encode()
        )
    return base


def import_hash(output: str) -> str:
    return re.search(r"config_hash: (import-[0-9a-f]{16})", output)[1]


@pytest.mark.slow
def test_delphi_folder_is_imported_then_scored(db, tmp_path, capsys):
    folder = delphi_folder(tmp_path, DELPHI)
    assert main(["import", "--db", str(db), "--from", "delphi", "--path", str(folder)]) == 0
    chash = import_hash(capsys.readouterr().out)
    rows = query(
        db,
        "SELECT latent, explanation, explainer, model, status, reason, n_calls, prompt_tokens, run_id "
        "FROM explanations WHERE config_hash = ? ORDER BY latent",
        [chash],
    )
    assert [(r[0], r[1]) for r in rows] == [(k, None if k == 9 else v) for k, v in sorted(DELPHI.items())]
    assert {(r[2], r[3], r[6], r[7]) for r in rows} == {("import:delphi", "hugging-quants/Llama-3.3-70B-AWQ", 0, 0)}
    assert [r[4] for r in rows] == ["explained"] * 4 + ["unparsed"] and "could not parse" in rows[-1][5]
    assert query(db, "SELECT stage, status, config_hash FROM runs WHERE run_id = ?", [rows[0][8]]) == [
        ("import", "complete", chash)
    ]

    before = counts(db)
    assert main(["import", "--db", str(db), "--from", "delphi", "--path", str(folder / "explanations")]) == 0
    assert "already imported" in capsys.readouterr().out and counts(db) == before

    assert main(["score", "--db", str(db), "--explanations", chash, "--scorers", "embedding", "--quiet"]) == 0
    scores = query(db, "SELECT latent, explanation_id, scorer, status, n_examples, score FROM scores ORDER BY latent")
    assert [(r[0], r[1], r[2]) for r in scores] == [(k, f"{chash}/{k}", "embedding") for k in (0, 1, 2, 5)]
    assert all(r[3] == "scored" and r[4] > 0 and 0 <= r[5] <= 1 for r in scores)
    assert query(db, "SELECT count(*) FROM score_examples WHERE explanation_id LIKE ?", [chash + "/%"])[0][0] > 0


@pytest.mark.slow
def test_bad_delphi_folders_leave_the_database_unchanged(db, tmp_path, capsys):
    before = counts(db)

    def fails(path, *extra, says):
        assert main(["import", "--db", str(db), "--from", "delphi", "--path", str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert re.search(says, err), err
        assert counts(db) == before

    fails(tmp_path / "missing", says="No file or folder")
    folder = delphi_folder(tmp_path / "ok", {1: "fine"})
    assert main(["import", "--db", str(tmp_path / "none.duckdb"), "--from", "delphi", "--path", str(folder)]) == 2
    assert "No database at" in capsys.readouterr().err and not (tmp_path / "none.duckdb").exists()
    fails(tmp_path, says="not a delphi results folder")
    two = delphi_folder(tmp_path / "two", {1: "a"}, "layers.14")
    delphi_folder(tmp_path / "two", {2: "b"}, "layers.20")
    fails(two, says=r"2 modules: layers\.14, layers\.20")
    fails(two, "--module", "layers.3", says=r"one of: layers\.14, layers\.20")
    bad = delphi_folder(tmp_path / "bad", {1: "fine", 2: "also fine"})
    (bad / "explanations" / "layers.14_latent3.txt").write_text("mentions of rivers")  # not JSON
    fails(bad, says=r"layers\.14_latent3\.txt is not valid JSON")
    (bad / "explanations" / "layers.14_latent3.txt").write_text('{"explanation": "x"}')
    fails(bad, says=r"layers\.14_latent3\.txt holds a JSON dict")
    (bad / "explanations" / "layers.14_latent3.txt").unlink()
    (bad / "explanations" / "notes.txt").write_text('"x"')
    fails(bad, says=r"notes\.txt is not named")
    (bad / "explanations" / "notes.txt").unlink()
    n_latents = query(db, "SELECT count(*) FROM latents")[0][0]
    (bad / "explanations" / f"layers.14_latent{n_latents}.txt").write_text('"out of range"')
    fails(bad, says=rf"1 latents .* outside this database's dictionary of {n_latents} latents")

    assert main(["import", "--db", str(db), "--from", "delphi", "--path", str(bad), "--skip-unknown-latents"]) == 0
    out = capsys.readouterr().out
    assert "imported 2 explanations" in out and "1 latents outside the dictionary skipped" in out
    assert query(db, "SELECT count(*) FROM explanations WHERE config_hash = ?", [import_hash(out)]) == [(2,)]

    # another module than the database's hookpoint (model.layers.14) is imported with a warning
    assert main(["import", "--db", str(db), "--from", "delphi", "--path", str(two), "--module", "layers.20"]) == 0
    assert "layers.20 does not name this database's hookpoint model.layers.14" in capsys.readouterr().out


@pytest.mark.slow
def test_our_neuronpedia_export_round_trips(db, tmp_path, capsys):
    con = duckdb.connect(str(db))
    texts = {3: "rivers", 4: "Köln and Zürich", 8: "the end of a sentence."}
    for latent, text in texts.items():
        con.execute(
            "INSERT INTO explanation_rows VALUES (?, 'cfgabc', 'explain-test', 'cot', 'gpt-test', "
            "'explained', ?, NULL, NULL, NULL, 1, 10, 5, now())",
            [latent, text],
        )
    con.close()
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
                "14-res-x",
                "--gzip",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    target = tmp_path / "fresh.duckdb"
    shutil.copy(db, target)
    duckdb.connect(str(target)).execute("DELETE FROM explanation_rows").close()
    capsys.readouterr()
    # the whole export folder: features and activations beside the explanations are not read as explanations
    assert main(["import", "--db", str(target), "--from", "neuronpedia", "--path", str(out)]) == 0
    output = capsys.readouterr().out
    assert "Note" not in output  # source 14-res-x matches model.layers.14
    rows = query(
        target,
        "SELECT latent, explanation, explainer, model, status FROM explanations WHERE config_hash = ? ORDER BY latent",
        [import_hash(output)],
    )
    assert rows == [(k, v, "import:neuronpedia", "gpt-test", "explained") for k, v in sorted(texts.items())]


def neuronpedia_record(model_id, layer, index, description, model="gpt-4o-mini", type_name="oai_token-act-pair"):
    """An Explanation row as Neuronpedia's export-data.py writes it (index is a string)."""
    return {
        "id": f"cm{index:022d}",
        "modelId": model_id,
        "layer": layer,
        "index": str(index),
        "authorId": "clsxqq2xd0000vvp2k5itlhqj",
        "description": description,
        "embedding": None,
        "typeName": type_name,
        "explanationModelName": model,
        "umap_x": None,
        "umap_y": None,
        "umap_cluster": None,
        "umap_log_feature_sparsity": None,
    }


def write_batch(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))


@pytest.mark.slow
def test_neuronpedia_bulk_export_files(db, tmp_path, capsys):
    root = tmp_path / "exports" / "smollm2-135m"
    write_batch(
        root / "14-res-np" / "explanations" / "batch-0.jsonl.gz",
        [
            neuronpedia_record("smollm2-135m", "14-res-np", 10, "commas"),
            neuronpedia_record("smollm2-135m", "14-res-np", 11, "opening brackets"),
            neuronpedia_record(
                "smollm2-135m",
                "14-res-np",
                10,
                "punctuation",
                model="claude-3-7-sonnet-20250219",
                type_name="eleuther_acts_top20",
            ),
        ],
    )
    write_batch(
        root / "14-res-np" / "explanations" / "batch-1.jsonl.gz",
        [neuronpedia_record("smollm2-135m", "14-res-np", 12, "numbers", model="claude-3-7-sonnet-20250219")],
    )
    write_batch(
        root / "20-res-np" / "explanations" / "batch-0.jsonl.gz",
        [neuronpedia_record("smollm2-135m", "20-res-np", 1, "elsewhere")],
    )
    (root / "14-res-np" / "activations").mkdir()
    (root / "14-res-np" / "activations" / "batch-0.jsonl.gz").write_bytes(b"not read")
    before = counts(db)
    assert main(["import", "--db", str(db), "--from", "neuronpedia", "--path", str(tmp_path / "exports")]) == 2
    assert "2 sources: smollm2-135m/14-res-np, smollm2-135m/20-res-np" in capsys.readouterr().err
    assert counts(db) == before

    assert (
        main(
            [
                "import",
                "--db",
                str(db),
                "--from",
                "neuronpedia",
                "--path",
                str(tmp_path / "exports"),
                "--module",
                "14-res-np",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1 further explanations" in out and "choose one with --model" in out
    assert query(
        db,
        "SELECT latent, explanation, model FROM explanations WHERE config_hash = ? ORDER BY latent",
        [import_hash(out)],
    ) == [
        (10, "commas", "gpt-4o-mini"),
        (11, "opening brackets", "gpt-4o-mini"),
        (12, "numbers", "claude-3-7-sonnet-20250219"),
    ]

    assert (
        main(
            [
                "import",
                "--db",
                str(db),
                "--from",
                "neuronpedia",
                "--path",
                str(root / "14-res-np"),
                "--model",
                "claude-3-7-sonnet-20250219",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert query(
        db, "SELECT latent, explanation FROM explanations WHERE config_hash = ? ORDER BY latent", [import_hash(out)]
    ) == [(10, "punctuation"), (12, "numbers")]

    # the former export API's answer: a .json object with an "explanations" list
    api = tmp_path / "api.json"
    api.write_text(json.dumps({"explanations": [neuronpedia_record("smollm2-135m", "14-res-np", 7, "quotes")]}))
    assert main(["import", "--db", str(db), "--from", "neuronpedia", "--path", str(api)]) == 0
    assert "imported 1 explanations" in capsys.readouterr().out


@pytest.mark.slow
def test_bad_neuronpedia_files_leave_the_database_unchanged(db, tmp_path, capsys):
    before = counts(db)

    def fails(path, says):
        assert main(["import", "--db", str(db), "--from", "neuronpedia", "--path", str(path)]) == 2
        err = capsys.readouterr().err
        assert re.search(says, err), err
        assert counts(db) == before

    good = json.dumps(neuronpedia_record("m", "14-res-np", 1, "fine"))
    file = tmp_path / "explanations.jsonl"
    file.write_text(good + "\n{not json\n")
    fails(file, r"explanations\.jsonl:2 is not valid JSON")
    file.write_text(good + "\n" + json.dumps({"index": "2", "tokens": ["a"], "values": [1.0]}) + "\n")
    fails(file, r"explanations\.jsonl:2 is not a Neuronpedia explanation record")
    file.write_text(json.dumps(neuronpedia_record("m", "14-res-np", 1, "fine") | {"index": "x1"}) + "\n")
    fails(file, r"index 'x1' is not a latent index")
    file.write_text(good + "\n" + json.dumps(neuronpedia_record("m", "14-res-np", 10**7, "too far")) + "\n")
    fails(file, r"1 latents .* outside this database's dictionary")
    gz = tmp_path / "batch-0.jsonl.gz"
    gz.write_bytes(b"plain text, not gzip")
    fails(gz, r"Cannot read .*batch-0\.jsonl\.gz")
    fails(tmp_path / "nothing-here", "No file or folder")
