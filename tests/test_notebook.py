"""notebooks/paper_figures.ipynb executed with nbclient on real databases: one filled by SQL with a
spread of scores (its numbers are checked against SQL on the base tables), one filled by the real
explain and score stages on the embedded model, and a collect-only one with no score at all."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from scipy import stats

from autointerp.store.db import connect

from .conftest import query

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "paper_figures.ipynb"
FIGURES = [
    "scores_histogram",
    "quantile_recall",
    "scorer_agreement",
    "score_vs_frequency",
    "shuffled_control",
    "coverage",
    "input_vs_output",
]


def execute(db: Path, figures: Path, monkeypatch) -> nbformat.NotebookNode:
    """Run the notebook in a fresh kernel on ``db``, writing into ``figures``; the executed notebook."""
    monkeypatch.setenv("AUTOINTERP_DB", str(db))
    monkeypatch.setenv("AUTOINTERP_FIGURES", str(figures))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(figures.parent)}}
    ).execute()
    return nb


def outputs(nb) -> tuple[str, int]:
    """All text the executed notebook printed, and how many PNG images it shows."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
            images += "image/png" in out.get("data", {})
    return "\n".join(text), images


def check_figures(figures: Path, nb) -> str:
    for name in FIGURES:
        data = (figures / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, name
    text, images = outputs(nb)
    assert images == len(FIGURES)  # each figure is also shown
    return text


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected_summary(db: Path) -> pd.DataFrame:
    """The summary table computed straight from the base table, the latest row per (latent, scorer, control);
    the cue probes (``cue:*``) have their own table."""
    rows = query(
        db,
        """
        SELECT latent, scorer, control, arg_max_null(score, created_at) AS score,
               arg_max_null(CAST(chance->>'score' AS DOUBLE), created_at) AS chance
        FROM score_rows WHERE scorer NOT LIKE 'cue:%' GROUP BY latent, scorer, control""",
    )
    df = pd.DataFrame(rows, columns=["latent", "scorer", "control", "score", "chance"])
    out = {}
    for scorer, g in df.groupby("scorer"):
        own, ctrl = g[g.control == ""], g[g.control == "shuffled"]
        scored = own[own.score.notna()]
        pairs = scored.merge(ctrl[ctrl.score.notna()], on="latent", suffixes=("", "_c"))
        out[scorer] = {
            "n_scored": len(scored),
            "n_unscored": int(own.score.isna().sum()),
            "mean_score": scored.score.mean(),
            "chance": scored.chance.mean(),
            "control_mean": ctrl.score.dropna().mean(),
            "n_pairs": len(pairs),
            "gap": (pairs.score - pairs.score_c).mean(),
        }
    return pd.DataFrame.from_dict(out, orient="index")


def assert_summary_matches(db: Path, figures: Path) -> pd.DataFrame:
    got = pd.read_csv(figures / "summary.csv", index_col="scorer")
    want = expected_summary(db)
    assert sorted(got.index) == sorted(want.index)
    for column in want.columns:
        np.testing.assert_allclose(
            got.loc[want.index, column].to_numpy(float),
            want[column].to_numpy(float),
            rtol=1e-9,
            equal_nan=True,
            err_msg=column,
        )
    return got


# --- a database with a spread of scores, written by SQL -----------------------------------------------


def fill_scores(db: Path) -> None:
    """Explanations and scores for 40 latents: detection (5 unscored, one older duplicate row) and
    embedding (30 latents), both with a shuffled control; fuzzing with one row; simulation unscored only."""
    rng = np.random.default_rng(7)
    con = connect(db)
    try:
        latents = [
            r[0]
            for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 40").fetchall()
        ]
        for latent in latents:
            con.execute(
                "INSERT INTO explanation_rows (latent, config_hash, run_id, explainer, model, status, "
                "explanation, n_calls, prompt_tokens, completion_tokens, created_at) VALUES "
                "(?, 'synthetic', 'fill', 'default', 'test', 'explained', ?, 0, 0, 0, now())",
                [latent, f"explanation {latent}"],
            )
        quality = rng.uniform(0, 1, len(latents))

        def add(latent, scorer, control, score, recall=None, chance=0.5, config="c1", when="2024-01-02"):
            status = "scored" if score is not None else "unscored"
            con.execute(
                "INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, status, "
                "reason, n_examples, n_unscored, score, balanced_accuracy, quantile_recall, chance, n_calls, "
                "prompt_tokens, completion_tokens, fixed_prompt_tokens, created_at) "
                "VALUES (?, ?, ?, 'test', ?, ?, 'fill', ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, ?)",
                [
                    latent,
                    f"synthetic/{latent}",
                    scorer,
                    config,
                    control,
                    status,
                    None if score is not None else "no batch answer could be read",
                    10 if score is not None else 0,
                    0 if score is not None else 10,
                    score,
                    score,
                    None if recall is None else json.dumps(recall),
                    json.dumps({"score": chance, "balanced_accuracy": chance}),
                    when,
                ],
            )

        for i, latent in enumerate(latents):
            q = quality[i]
            if i < 5:
                add(latent, "detection", "", None)
            else:
                recall = {
                    str(k): (None if (i + k) % 11 == 0 else float(np.clip(q + 0.1 * k - 0.2, 0, 1))) for k in range(5)
                }
                add(latent, "detection", "", 0.5 + 0.5 * q, recall)
            add(latent, "detection", "shuffled", float(np.clip(0.5 + rng.normal(0, 0.05), 0, 1)))
            if i < 30:
                add(
                    latent,
                    "embedding",
                    "",
                    float(np.clip(0.5 + 0.4 * q + rng.normal(0, 0.1), 0, 1)),
                    {"0": float(q), "1": float(q)},
                )
                add(latent, "embedding", "shuffled", float(np.clip(0.5 + rng.normal(0, 0.1), 0, 1)))
        # An older row of another configuration, which the notebook must not use.
        add(latents[10], "detection", "", 0.01, {"0": 0.0}, config="c0", when="2023-01-01")
        add(latents[0], "fuzzing", "", 0.8, {"0": 1.0})
        for latent in latents[:3]:
            add(latent, "simulation", "", None, chance=0.0)
        # Arad et al.'s scores for 20 latents, input against output as in their scatter; one output score of 0
        for i, latent in enumerate(latents[:20]):
            q = quality[i]
            add(latent, "input_score", "", float(q), chance=4e-4)
            add(latent, "output_score", "", 0.0 if i == 7 else float(10 ** (-6 + 5 * (1 - q))), chance=1e-6)
    finally:
        con.close()


@pytest.fixture(scope="module")
def varied(collected_db, tmp_path_factory):
    """(db, figures, executed notebook) for the SQL-filled database."""
    root = tmp_path_factory.mktemp("varied")
    db = root / "varied.duckdb"
    shutil.copy(collected_db, db)
    fill_scores(db)
    before = digest(db)
    with pytest.MonkeyPatch.context() as mp:
        nb = execute(db, root / "figures", mp)
    assert digest(db) == before  # opened read-only: the file is untouched
    return db, root / "figures", nb


def test_varied_data_figures_and_notes(varied):
    _, figures, nb = varied
    text = check_figures(figures, nb)
    assert "no data for simulation" in text  # a scorer with only unscored rows is named, not a crash
    assert "1 older rows" in text  # the older duplicate was set aside


def test_varied_data_summary_matches_sql(varied):
    db, figures, _ = varied
    got = assert_summary_matches(db, figures)
    # What the filled data says, independently of any formula.
    assert got.loc["detection", ["n_scored", "n_unscored", "n_pairs"]].tolist() == [35, 5, 35]
    assert got.loc["embedding", ["n_scored", "n_unscored", "n_pairs"]].tolist() == [30, 0, 30]
    assert got.loc["fuzzing", ["n_scored", "n_unscored", "n_pairs"]].tolist() == [1, 0, 0]
    assert got.loc["fuzzing", "mean_score"] == 0.8 and np.isnan(got.loc["fuzzing", "gap"])
    assert got.loc["simulation", ["n_scored", "n_unscored"]].tolist() == [0, 3]
    assert np.isnan(got.loc["simulation", "mean_score"])
    for scorer in ("detection", "embedding"):
        low, gap, high = got.loc[scorer, ["gap_low", "gap", "gap_high"]]
        assert low < gap < high and got.loc[scorer, "chance"] == 0.5
    assert got.loc["detection", "gap"] > 0.1  # real explanations beat the control in the filled data


def test_varied_data_coverage_and_weighted_means(varied):
    db, figures, _ = varied
    got = pd.read_csv(figures / "coverage.csv")
    live = query(
        db,
        "SELECT decade, count(*) FROM latent_coverage WHERE live GROUP BY decade_order, decade ORDER BY decade_order",
    )
    assert list(zip(got.decade, got.live, strict=True)) == live
    # shares by hand: explained and detection-scored latents among each decade's live latents
    for decade, n_live in live:
        in_decade = f"latent IN (SELECT latent FROM latent_coverage WHERE decade = '{decade}')"
        row = got[got.decade == decade].iloc[0]
        explained = query(db, f"SELECT count(DISTINCT latent) FROM explanation_rows WHERE {in_decade}")[0][0]
        scored = query(
            db,
            "SELECT count(DISTINCT latent) FROM score_rows WHERE scorer = 'detection' AND status = 'scored' "
            f"AND control = '' AND {in_decade}",
        )[0][0]
        assert row.explained == pytest.approx(explained / n_live) and row.scored_detection == pytest.approx(
            scored / n_live
        )
    summary = pd.read_csv(figures / "summary.csv", index_col="scorer")
    # every scored row of the filled data rests on n = 10 contexts: weighting changes nothing
    assert summary.loc["detection", "median_n"] == 10
    assert summary.loc["detection", "weighted_mean_score"] == pytest.approx(summary.loc["detection", "mean_score"])


def test_varied_data_input_against_output(varied):
    db, figures, nb = varied
    got = pd.read_csv(figures / "input_output.csv")
    want = query(
        db,
        "SELECT latent, max(score) FILTER (WHERE scorer = 'input_score'), "
        "max(score) FILTER (WHERE scorer = 'output_score') FROM score_rows "
        "WHERE scorer IN ('input_score', 'output_score') GROUP BY latent ORDER BY latent",
    )
    assert list(zip(got.latent, got.input_score, got.output_score, strict=True)) == want and len(want) == 20
    assert set(got.output_chance) == {1e-6} and set(got.input_chance) == {4e-4}
    text, _ = outputs(nb)
    assert "no latent with both" not in text  # drawn, not a note


def test_varied_data_agreement_is_spearman(varied):
    db, figures, _ = varied
    table = pd.read_csv(figures / "agreement.csv")
    cell = table[(table.scorer_a == "detection") & (table.scorer_b == "embedding")].iloc[0]
    pairs = query(
        db,
        """
        SELECT d.score, e.score FROM score_rows d JOIN score_rows e USING (latent)
        WHERE d.scorer = 'detection' AND e.scorer = 'embedding' AND d.control = '' AND e.control = ''
          AND d.config_hash = 'c1' AND d.score IS NOT NULL AND e.score IS NOT NULL""",
    )
    assert cell.n_latents == len(pairs) == 25
    assert cell.spearman == pytest.approx(stats.spearmanr(*zip(*pairs, strict=True))[0], abs=1e-12)
    # fuzzing has one latent: shared counts are reported, the correlation is not
    fuzz = table[(table.scorer_a == "fuzzing") & (table.scorer_b == "embedding")].iloc[0]
    assert fuzz.n_latents == 1 and np.isnan(fuzz.spearman)


# --- the real stages --------------------------------------------------------------------------------


def test_real_stages(collected_db, tmp_path, monkeypatch):
    """explain (embedded SmolLM2) -> score embedding, its shuffled control, and detection -> notebook."""
    from autointerp.cli import main

    db = tmp_path / "stages.duckdb"
    shutil.copy(collected_db, db)
    latents = ",".join(
        str(r[0]) for r in query(db, "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 2")
    )
    base = ["--db", str(db), "--quiet", "--latents", latents]
    assert main(["explain", *base, "--max-tokens", "60"]) in (0, 1)
    explained = query(db, "SELECT count(*) FROM explanations WHERE status = 'explained'")[0][0]
    if explained:
        assert main(["score", *base, "--scorers", "embedding"]) == 0
        assert main(["score", *base, "--scorers", "detection", "--max-tokens", "16"]) == 0
    if explained >= 2:
        assert main(["score", *base, "--scorers", "embedding", "--control", "shuffled"]) == 0
    nb = execute(db, tmp_path / "figures", monkeypatch)
    text = check_figures(tmp_path / "figures", nb)
    got = assert_summary_matches(db, tmp_path / "figures")
    n_scores = query(db, "SELECT count(*) FROM scores WHERE control = '' AND scorer NOT LIKE 'cue:%'")[0][0]
    assert got[["n_scored", "n_unscored"]].to_numpy().sum() == n_scores
    if explained >= 2:  # every explained latent has an embedding score and its shuffled control
        assert got.loc["embedding", ["n_scored", "n_pairs"]].tolist() == [explained, explained]
    if not explained:
        assert "no scores" in text


# --- edge cases -------------------------------------------------------------------------------------


def test_collect_only_database_gives_notes_not_errors(collected_db, tmp_path, monkeypatch):
    nb = execute(collected_db, tmp_path / "figures", monkeypatch)
    text = check_figures(tmp_path / "figures", nb)
    assert "no scores in" in text and "no latent with both an input and an output score" in text
    assert "(h) skipped: no comparison file" in text
    assert pd.read_csv(tmp_path / "figures" / "summary.csv").empty


def test_comparison_figure_on_a_tiny_comparison_file(collected_db, tmp_path, monkeypatch):
    """Figure (h) from a comparison file written with the agreed tables of `autointerp compare`."""
    import duckdb

    matches = tmp_path / "m.duckdb"
    con = duckdb.connect(str(matches))
    con.execute("CREATE TABLE compare_sources (side VARCHAR, path VARCHAR)")
    con.execute("INSERT INTO compare_sources VALUES ('a', 'a.duckdb'), ('b', 'b.duckdb')")
    con.execute(
        "CREATE TABLE latent_matches (latent_a INTEGER, latent_b INTEGER, decoder_cos DOUBLE, "
        "activation_corr DOUBLE, explanation_sim DOUBLE)"
    )
    rows = [(i, 10 + i, 0.3 + 0.06 * i, 0.5, 0.2 + 0.05 * i) for i in range(10)] + [(20, 30, 0.95, None, None)]
    con.executemany("INSERT INTO latent_matches VALUES (?, ?, ?, ?, ?)", rows)
    con.execute("CREATE TABLE compare_summary (measure VARCHAR, value DOUBLE, n BIGINT, baseline DOUBLE, note VARCHAR)")
    con.execute(
        "INSERT INTO compare_summary VALUES ('pw_mcc', 0.61, 11, 0.12, NULL), ('matched_share_0.5', 0.4, 11, NULL, "
        "NULL), ('matched_share_0.7', 0.2, 11, NULL, NULL), ('matched_share_0.9', 0.05, 11, NULL, NULL)"
    )
    con.close()
    monkeypatch.setenv("AUTOINTERP_MATCHES", str(matches))
    nb = execute(collected_db, tmp_path / "figures", monkeypatch)
    text, images = outputs(nb)
    assert "(h) skipped" not in text and images == len(FIGURES) + 1
    data = (tmp_path / "figures" / "matched_pairs.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    table = pd.read_csv(tmp_path / "figures" / "matched_pairs.csv")
    assert len(table) == len(rows) and table.explanation_sim.isna().sum() == 1


def test_missing_database_says_which_variable_to_set(tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError) as info:
        execute(tmp_path / "nowhere.duckdb", tmp_path / "figures", monkeypatch)
    assert "No database at" in str(info.value) and "AUTOINTERP_DB" in str(info.value)
    assert not (tmp_path / "nowhere.duckdb").exists()


def test_notebook_is_built_from_its_source_and_has_no_outputs():
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import build_notebook
    finally:
        sys.path.remove(str(NOTEBOOKS))
    assert NOTEBOOK.read_text() == build_notebook.build()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    first = code[0].source
    assert 'os.environ.get("AUTOINTERP_DB", "demo.duckdb")' in first
    assert 'os.environ.get("AUTOINTERP_FIGURES", "figures/")' in first
    assert os.path.basename(build_notebook.SOURCE) == "paper_figures.py"


# --- explain strategies (figure h) ------------------------------------------------------------------

STRATEGY_QUALITY = {"single": 0.6, "best_of_k": 0.7, "refined": 0.75}


def fill_strategies(db: Path) -> dict[str, list[float]]:
    """Explanations of 12 latents by each of three strategies, detection and fuzzing scores with intervals,
    and the chosen candidates' validation scores (each 0.1 above its test score); the test scores by strategy."""
    rng = np.random.default_rng(3)
    con = connect(db)
    tests: dict[str, list[float]] = {s: [] for s in STRATEGY_QUALITY}
    try:
        con.execute(
            "INSERT INTO runs (run_id, stage, config, config_hash, status, started_at) VALUES "
            "('explain-k', 'explain', '{\"candidates\": 4, \"select_by\": \"detection\"}', 'k', 'complete', now())"
        )
        latents = [
            r[0]
            for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 12").fetchall()
        ]
        for strategy, quality in STRATEGY_QUALITY.items():
            for latent in latents:
                con.execute(
                    "INSERT INTO explanation_rows (latent, config_hash, run_id, explainer, model, status, explanation, "
                    "n_calls, prompt_tokens, completion_tokens, created_at) VALUES "
                    "(?, ?, 'explain-k', 'default', 'test', 'explained', 'x', 1, 0, 0, now())",
                    [latent, strategy],
                )
                for scorer in ("detection", "fuzzing"):
                    score = float(np.clip(quality + rng.normal(0, 0.08), 0, 1))
                    if scorer == "detection":
                        tests[strategy].append(score)
                    con.execute(
                        "INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, "
                        "status, n_examples, n_unscored, score, balanced_accuracy, chance, n_calls, prompt_tokens, "
                        "completion_tokens, fixed_prompt_tokens, ci_low, ci_high, ci_method, created_at) VALUES "
                        "(?, ?, ?, 'test', 'c1', '', 'fill', 'scored', 20, 0, ?, ?, '{\"score\": 0.5}', 0, 0, 0, 0, "
                        "?, ?, 'wilson', now())",
                        [latent, f"{strategy}/{latent}", scorer, score, score, score - 0.1, score + 0.1],
                    )
                    if scorer == "detection" and strategy != "single":
                        con.execute(
                            "INSERT INTO explanation_candidates (latent, config_hash, round, candidate, run_id, "
                            "status, explanation, validation_score, validation_n, kept, chosen, created_at) VALUES "
                            "(?, ?, ?, 0, 'explain-k', 'explained', 'x', ?, 10, true, true, now())",
                            # the chosen candidate makes the selection: a refinement round > 0 is 'refined'
                            [latent, strategy, int(strategy == "refined"), score + 0.1],
                        )
    finally:
        con.close()
    return tests


def strategy_cells(nb) -> nbformat.NotebookNode:
    """The notebook's setup cells and figure (i) alone (the other figures are tested above)."""
    cells = nb.cells
    start = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## (a)"))
    h = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## (i)"))
    nb.cells = cells[:start] + cells[h : h + 2]
    return nb


def test_strategy_figure_and_validation_drop(collected_db, tmp_path, monkeypatch):
    migrations = (Path(__file__).resolve().parents[1] / "autointerp" / "store" / "migrations").iterdir()
    if not any("explanation_candidates" in m.name for m in migrations):  # until branch select is merged
        pytest.skip("needs explanation_candidates and scores.selection (best-of-k, refine)")
    db = tmp_path / "strategies.duckdb"
    shutil.copy(collected_db, db)
    tests = fill_strategies(db)
    monkeypatch.setenv("AUTOINTERP_DB", str(db))
    monkeypatch.setenv("AUTOINTERP_FIGURES", str(tmp_path / "figures"))
    nb = strategy_cells(nbformat.read(NOTEBOOK, as_version=4))
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "figures" / "strategies.png").read_bytes().startswith(b"\x89PNG")
    got = pd.read_csv(tmp_path / "figures" / "strategies.csv").set_index(["scorer", "strategy"])
    for strategy, scores in tests.items():
        row = got.loc[("detection", strategy)]
        assert row.n_latents == 12 and row["mean"] == pytest.approx(np.mean(scores))
        half = stats.t.ppf(0.975, 11) * np.std(scores, ddof=1) / np.sqrt(12)
        assert row.t_high - row["mean"] == pytest.approx(half)
    drop = pd.read_csv(tmp_path / "figures" / "validation_drop.csv")
    assert len(drop) == 24 and set(drop.selection) == {"best_of_k", "refined"}
    assert (drop.validation_score - drop.test_score).to_numpy() == pytest.approx(0.1)


def test_one_strategy_gives_a_note(varied):
    _, figures, nb = varied
    assert "(i) skipped" in outputs(nb)[0] and not (figures / "strategies.png").exists()
