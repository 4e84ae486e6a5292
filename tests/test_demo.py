"""``autointerp demo``: option checking, the latent choice and the summary's arithmetic, then the whole
demo on a tiny setting of the embedded default (collect -> explain -> score -> summary), its resume, and
its browser served over real HTTP until SIGINT."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import urllib.request

import duckdb
import pytest

from autointerp.cli import main
from autointerp.config import CollectConfig, ScoreConfig
from autointerp.demo import command, report, settings
from autointerp.demo.choose import choose_latents, spread
from autointerp.errors import AutointerpError
from autointerp.store.db import connect

from .children import interrupted_at_end
from .conftest import SMALL, query

# The conftest's tiny collect, and scorer settings that keep each scorer to one short prompt.
TINY = [
    "--tokens",
    str(SMALL["tokens"]),
    "--latents",
    "3",
    "--quiet",
    "--explain",
    "max_tokens=40",
    "--score",
    "fuzz_random=2",
    "--score",
    "fuzz_misplaced=2",
]
for _key, _value in SMALL.items():
    if _key != "tokens":
        TINY += ["--collect", f"{_key}={_value}"]
SCORERS = ["detection", "fuzzing", "embedding"]


# -- no model needed ---------------------------------------------------------------------------------


def test_spread_takes_distinct_evenly_spaced_positions():
    assert spread(3, 8) == [0, 1, 2]
    assert spread(10, 2) == [2, 7]
    for count, n in [(2280, 8), (100, 99), (7, 3), (1000, 1)]:
        picks = spread(count, n)
        assert len(set(picks)) == n and all(0 <= p < count for p in picks)
        gaps = [b - a for a, b in itertools.pairwise(picks)]
        assert not gaps or max(gaps) - min(gaps) <= 1  # evenly spaced up to rounding


def test_choose_latents_spreads_over_frequency_and_is_deterministic():
    con = duckdb.connect()
    con.execute("CREATE TABLE latents (latent INTEGER, frequency DOUBLE, status VARCHAR)")
    rng = random.Random(0)
    rows = [(i, rng.random(), "ok" if i % 5 else "too_few_examples") for i in range(200)]
    con.executemany("INSERT INTO latents VALUES (?, ?, ?)", rows)
    picked = choose_latents(con, 8)
    assert picked == choose_latents(con, 8) == sorted(picked)
    by_frequency = [lat for f, lat in sorted((f, lat) for lat, f, s in rows if s == "ok")]
    ranks = sorted(by_frequency.index(lat) for lat in picked)
    assert ranks == [int((i + 0.5) * len(by_frequency) / 8) for i in range(8)]  # rare to frequent, evenly
    assert choose_latents(con, 500) == sorted(by_frequency)
    con.execute("UPDATE latents SET status = 'dead'")
    with pytest.raises(AutointerpError, match="no explainable latent"):
        choose_latents(con, 8)
    con.close()


def test_mean_and_half_width_match_statistics():
    rng = random.Random(1)
    for n in (2, 3, 10):
        values = [rng.random() for _ in range(n)]
        mean, half = report.mean_and_half_width(values)
        assert mean == pytest.approx(statistics.fmean(values))
        assert half == pytest.approx(2 * statistics.stdev(values) / math.sqrt(n))
    assert report.mean_and_half_width([]) == (None, None)
    assert report.mean_and_half_width([0.7]) == (0.7, None)


def test_verdict_says_at_chance_unless_chance_is_outside_the_band():
    assert report.verdict(0.8, 0.1, 0.5, 8) == "above chance"
    assert report.verdict(0.3, 0.1, 0.5, 8) == "below chance"
    assert report.verdict(0.55, 0.1, 0.5, 8) == "at chance"
    assert report.verdict(0.9, 0.0, 0.5, 2) == "2 latents: too few to tell"
    assert report.verdict(None, None, 0.5, 0) == "not scored"


def test_scorer_line_counts_and_averages_only_scored_rows():
    chance = json.dumps({"score": 0.5})
    rows = [
        (1, "scored", 0.8, chance),
        (2, "scored", 0.6, chance),
        (3, "unscored", None, chance),
        (4, "scored", 0.7, chance),
    ]
    controls = [  # control_gaps rows: (latent, control, real score, control score)
        (1, "shuffled", 0.8, 0.5),
        (2, "shuffled", 0.6, 0.6),
        (3, "shuffled", 0.1, 0.9),  # latent 3's real score is unscored in `rows`: no pair
        (1, "empty", 0.8, 0.45),
        (2, "empty", 0.6, 0.55),
    ]
    line = report.scorer_line("detection", 6, rows, controls)
    assert (line.scored, line.unscored, line.not_run) == (3, 1, 2)
    assert line.mean == pytest.approx(0.7) and line.chance == 0.5
    assert line.n_control == 2 and line.control_mean == pytest.approx(0.55)
    # the gap pairs each latent with its own control: latents 1 (+0.3) and 2 (0.0), bootstrap interval
    assert line.gap.gap == pytest.approx(0.15) and line.gap.n == 2
    assert line.gap.low == pytest.approx(0.0) and line.gap.high == pytest.approx(0.3)
    assert line.n_empty == 2 and line.empty_mean == pytest.approx(0.5)


def test_intervention_headline_is_the_gap_over_the_shuffled_control():
    chance = json.dumps({"score": 0.5})
    rows = [(lat, "scored", 0.6 + 0.01 * lat, chance) for lat in range(5)]
    controls = [(lat, "shuffled", 0.6 + 0.01 * lat, 0.55) for lat in range(5)]
    lines = [
        report.scorer_line("intervention", 5, rows, controls),
        report.scorer_line("intervention_choice", 5, rows, []),
        report.scorer_line("detection", 5, rows, controls),
    ]
    text = "\n".join(report.headline(lines))
    assert "gap over the shuffled control" in text
    assert "intervention: +0.070 [" in text and "n=5 latents" in text
    assert "intervention_choice: no shuffled control yet" in text and "detection" not in text
    table = report.render(report.Summary(list(range(5)), dict.fromkeys(report_statuses(), 0), lines), [])
    assert "gap [95% CI]" in table and "empty control" in table and "Intervention headline" in table


def report_statuses() -> list[str]:
    return ["explained", "unparsed", "failed", "not explained"]


def test_scorer_line_weights_by_sample_size():
    chance = json.dumps({"score": 0.5})
    rows = [(1, "scored", 0.9, chance), (2, "scored", 0.5, chance), (3, "unscored", None, chance)]
    line = report.scorer_line("detection", 3, rows, [], {1: 100, 2: 10, 3: 0})
    assert line.mean == pytest.approx(0.7)  # each latent once
    assert line.weighted_mean == pytest.approx((0.9 * 100 + 0.5 * 10) / 110)
    assert line.n_range == (10, 100)
    assert report.scorer_line("detection", 3, rows, []).weighted_mean is None  # no sizes: no weighted mean


def test_list_view_sorts_by_a_scorer_only_when_there_is_one():
    assert command.list_view("fuzzing") == "#explained=1&sort=score:fuzzing&order=desc"
    assert command.list_view("") == "#explained=1"


def test_overrides_are_typed_by_the_stage_config():
    assert settings.parse_overrides(
        "collect", CollectConfig, ["n_quantiles=2", "top-k=3", "exclude_first_position=no", "dtype=float32"]
    ) == {"n_quantiles": 2, "top_k": 3, "exclude_first_position": False, "dtype": "float32"}
    assert settings.parse_overrides("score", ScoreConfig, ["temperature=0.5"]) == {"temperature": 0.5}
    for items, message in [
        (["nosuch=1"], "no field 'nosuch'"),
        (["tokens=5"], "set by the demo itself"),
        (["n_quantiles"], "not KEY=VALUE"),
        (["n_quantiles=two"], "not an int"),
    ]:
        with pytest.raises(AutointerpError, match=message):
            settings.parse_overrides("collect", CollectConfig, items)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--latents", "0"], "--latents 0"),
        (["--port", "70000"], "--port 70000"),
        (["--tokens", "0"], "--tokens is 0"),
        (["--scorers", "detection,bogus"], "unknown scorer bogus"),
        (["--control-scorers", "fuzz"], "unknown scorer fuzz"),
        (["--collect", "n_quantiles=x"], "not an int"),
        (["--score", "control=shuffled"], "set by the demo itself"),
        (["--explain", "explainer=poetic"], "--explainer 'poetic' is not known"),
        (["--collect", "reservoir=2"], "--reservoir 2 cannot fill"),
    ],
)
def test_bad_options_exit_2_before_anything_is_written(tmp_path, capsys, options, message):
    db = tmp_path / "demo.duckdb"
    assert main(["demo", "--db", str(db), "--no-browse", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "autointerp demo: error:" in err
    assert not db.exists()


# -- the demo on the embedded model --------------------------------------------------------------------


def _table_line(output: str, scorer: str) -> list[str]:
    match = re.search(rf"^{scorer}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)", output, flags=re.MULTILINE)
    assert match, output
    return list(match.groups())


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo run once on a tiny setting: (db, its stdout, the latents it chose)."""
    db = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "autointerp.cli", "demo", "--db", str(db), "--no-browse", *TINY],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    chosen = re.search(r"demo latents \(spread over firing frequencies\): ([\d,]+)", proc.stdout)
    assert chosen, proc.stdout
    return db, proc.stdout, [int(x) for x in chosen.group(1).split(",")]


@pytest.mark.slow
def test_demo_runs_every_stage_and_prints_an_honest_summary(demo_run):
    db, out, latents = demo_run
    assert len(latents) == 3 and latents == sorted(latents)
    con = connect(db, read_only=True)
    try:
        assert choose_latents(con, 3) == latents  # the choice the rerun will make
    finally:
        con.close()
    stats = query(
        db, "SELECT status, frequency FROM latents WHERE latent IN (SELECT unnest(?)) ORDER BY frequency", [latents]
    )
    assert all(s == "ok" for s, _ in stats) and stats[0][1] < stats[-1][1]
    for stage in ("[1/3] collect", "[2/3] explain", "[3/3] score"):
        assert stage in out
    # one explanation row per chosen latent, and only for them
    expl = dict(query(db, "SELECT latent, status FROM explanations"))
    assert sorted(expl) == latents and set(expl.values()) <= {"explained", "unparsed"}
    explained = sorted(lat for lat, s in expl.items() if s == "explained")
    assert explained, "the embedded model explained none of the demo latents"
    assert f"{len(explained)} explained, {len(latents) - len(explained)} unparsed" in out
    # every scorer scored every explained latent, and the embedding scorer's shuffled control ran
    rows = query(db, "SELECT scorer, control, latent, status, score FROM scores ORDER BY ALL")
    for scorer in SCORERS:
        real = [r for r in rows if r[0] == scorer and r[1] == ""]
        assert sorted(r[2] for r in real) == explained
        scored = [r[4] for r in real if r[3] == "scored"]
        n, unscored, not_run, mean = _table_line(out, scorer)
        assert (int(n), int(unscored), int(not_run)) == (len(scored), len(real) - len(scored), len(latents) - len(real))
        if scored:  # the printed mean is the mean of the stored scores
            assert float(mean) == pytest.approx(statistics.fmean(scored), abs=5e-4)
    controls = [r for r in rows if r[1] == "shuffled"]
    if len(explained) >= 2:
        assert {r[0] for r in controls} == {"embedding"} and sorted(r[2] for r in controls) == explained
        assert "shuffled control" in out
        empty = sorted(r[2] for r in rows if r[1] == "empty")
        assert empty == explained and "empty control" in out
    assert query(db, "SELECT count(*) FROM score_examples")[0][0] > 0
    assert "Top latents by detection score" in out and "chance" in out
    # the output side: Arad et al.'s scores of every explained latent, summarised against their chance
    for scorer in settings.OUTPUT_SIDE_SCORERS:
        assert sorted(r[2] for r in rows if r[0] == scorer and r[1] == "") == explained
    output = [r for r in rows if r[0] == "output_score" and r[1] == "" and r[3] == "scored"]
    assert "Output side (Arad et al." in out
    if output:
        assert "output score: geometric mean" in out and f"n={len(output)} latents" in out
        assert "Top steering candidates by output score" in out
        best = query(
            db,
            "SELECT latent FROM steering_candidates WHERE latent IN (SELECT unnest(?)) ORDER BY candidate_rank LIMIT 1",
            [latents],
        )[0][0]
        candidates = out.split("Top steering candidates by output score")[1].splitlines()
        assert candidates[3].split()[0] == str(best)  # after the heading, the header and the rule
    assert "135M-parameter model" in out and "weak explainer" in out
    assert re.search(r"Demo done in [\d.]+ min", out)
    assert f"autointerp browse --db {db}" in out


@pytest.mark.slow
def test_demo_prints_the_coverage_of_its_database(demo_run):
    db, out, _ = demo_run
    assert "Coverage per decade of firing frequency" in out
    total = next(line for line in out.splitlines() if line.startswith("all "))
    latents, live, ok, explained = query(
        db,
        "SELECT count(*), count(*) FILTER (WHERE live), count(*) FILTER (WHERE status = 'ok'), "
        "count(*) FILTER (WHERE explained) FROM latent_coverage",
    )[0]
    assert total.split()[1:5] == [str(latents), str(live), str(ok), str(explained)]
    assert "n-weighted" in out and "n/latent" in out


@pytest.mark.slow
def test_rerun_resumes_without_calling_the_llm_again(demo_run):
    db, first, latents = demo_run
    calls = query(db, "SELECT count(*) FROM llm_calls")[0][0]
    scores = query(db, "SELECT count(*) FROM scores")[0][0]
    proc = subprocess.run(
        [sys.executable, "-m", "autointerp.cli", "demo", "--db", str(db), "--no-browse", *TINY],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "already collected" in out
    assert f"demo latents (spread over firing frequencies): {','.join(map(str, latents))}" in out
    assert f"{len(latents)} already done" in out
    assert query(db, "SELECT count(*) FROM llm_calls")[0][0] == calls
    assert query(db, "SELECT count(*) FROM scores")[0][0] == scores
    assert query(db, "SELECT count(*) FROM runs WHERE stage = 'collect'")[0][0] == 1
    for scorer in SCORERS:
        assert _table_line(out, scorer) == _table_line(first, scorer)


@pytest.mark.slow
def test_other_collect_settings_on_the_same_db_are_refused(demo_run, capsys):
    db, _, _ = demo_run
    before = query(db, "SELECT count(*) FROM runs")[0][0]
    assert main(["demo", "--db", str(db), "--no-browse", *TINY, "--collect", "seed=23"]) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "pass another --db" in err
    assert query(db, "SELECT count(*) FROM runs")[0][0] == before


@pytest.mark.slow
def test_demo_serves_the_browser_until_interrupted(demo_run):
    db, _, _ = demo_run
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autointerp.cli", "demo", "--db", str(db), "--port", "0", *TINY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    with interrupted_at_end(proc, timeout=60):  # the child is killed if it does not stop
        url = None
        for line in proc.stdout:
            match = re.search(r"Browser: (http://127\.0\.0\.1:\d+/)#explained=1&sort=score:detection&order=desc ", line)
            if match:
                url = match.group(1)
                break
        assert url, proc.stderr.read()
        with urllib.request.urlopen(url + "api/latents?explained=1&sort=latent&limit=50", timeout=30) as response:
            body = json.load(response)
        explained = [
            r[0] for r in query(db, "SELECT latent FROM explanations WHERE status = 'explained' ORDER BY latent")
        ]
        assert [r["latent"] for r in body["rows"]] == explained
        assert all(set(r["scores"]) >= set(SCORERS) for r in body["rows"])
    assert proc.returncode == 0


def test_output_side_compares_with_chance_on_a_log_scale_and_classes_latents():
    from autointerp.demo.output_side import gather_output_side, log_ratio, render_output_side

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE latent_summary (latent INTEGER, input_score DOUBLE, input_score_ci_low DOUBLE, "
        "input_score_chance DOUBLE, output_score DOUBLE, output_score_chance DOUBLE)"
    )
    rows = [  # latent, input, its interval's low end, chance, output, chance
        (1, 0.5, 0.3, 1e-3, 0.2, 1e-5),  # both an output and an input latent
        (2, 0.0, 0.0, 1e-3, 0.05, 1e-6),  # output
        (3, 0.4, 0.2, 1e-3, 2e-6, 1e-6),  # input (output only 2x its random direction's)
        (4, 0.0, 0.0, 1e-3, 1e-6, 1e-6),  # neither
        (5, None, None, None, None, None),  # not scored
    ]
    con.executemany("INSERT INTO latent_summary VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute(
        "CREATE TABLE steering_candidates AS SELECT 1 AS candidate_rank, 1 AS latent, 0.2 AS output_score, "
        "1e-5 AS output_score_chance, 0.5 AS input_score, [' river', ' lake'] AS promoted_tokens, "
        "NULL::VARCHAR AS lens_note, 'rivers' AS explanation"
    )
    side = gather_output_side(con, [1, 2, 3, 4, 5])
    assert (side.n_classified, side.n_output, side.n_input, side.n_both) == (4, 2, 2, 1)
    text = render_output_side(side)
    ratios = [log_ratio(r[4], r[5]) for r in rows[:4]]
    assert f"log10(score / chance) {statistics.fmean(ratios):+.2f}" in text
    assert "2 output latents" in text and "2 input latents" in text and "1 both, 1 neither" in text
    assert "' river' ' lake'" in text and "rivers" in text and "n=4 latents" in text
    assert "no input or output score" in render_output_side(gather_output_side(con, [5]))
    con.close()


@pytest.mark.slow
def test_demo_summary_says_what_each_explain_strategy_spent(demo_run):
    db, out, _ = demo_run
    calls, latents = query(db, "SELECT sum(calls), sum(latents) FROM llm_costs WHERE strategy = 'single'")[0]
    line = next(ln for ln in out.splitlines() if ln.startswith("Explain strategy single:"))
    assert f"{calls / latents:.1f} calls" in line and f"over {latents} latents" in line
