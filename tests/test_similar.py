"""Similar latents within one SAE: the stored decoder neighbours, the view ``similar_latents``, the
``autointerp similar`` command on an older database, and the browser's two "Similar latents" panels
(this SAE, and a compared SAE read from a comparison file written here with the agreed tables).
"""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request

import duckdb
import pytest
import torch

from autointerp.browse.server import make_server
from autointerp.cli import main
from autointerp.errors import AutointerpError
from autointerp.models import embedded
from autointerp.models.dictionaries import load_dictionary
from autointerp.similarity.embeddings import embed_explanations
from autointerp.store.db import connect

from .conftest import query

pytestmark = pytest.mark.slow  # the database comes from a collect on the embedded model

K = 10
BROAD = "punctuation marks"
NARROW = ["commas", "question marks at the end of questions"]  # each >= 0.4 to BROAD under MiniLM
UNRELATED = "names of rivers in Europe"  # < 0.1 to BROAD
DUPLICATE = ['the word "the"', 'the definite article "the"']  # 0.80 under MiniLM


def explain(con, latent: int, text: str) -> None:
    con.execute(
        "INSERT INTO explanation_rows VALUES (?, 'planted', 'similar-test', 'default', 'test', "
        "'explained', ?, NULL, NULL, NULL, 0, 0, 0, now())",
        [latent, text],
    )


@pytest.fixture(scope="module")
def planted_db(collected_db, tmp_path_factory):
    """The collect with a planted near-duplicate pair and a planted broad latent over two narrower ones:
    their decoder cosines raised in decoder_neighbours, their explanations added and embedded."""
    path = tmp_path_factory.mktemp("similar") / "planted.duckdb"
    shutil.copy(collected_db, path)
    con = connect(path)
    try:
        dup, dup_other = con.execute(
            "SELECT latent, neighbour FROM decoder_neighbours WHERE rank = 0 LIMIT 1"
        ).fetchone()
        # the broad latent: the most frequent one whose three nearest neighbours fire less often than it
        broad, narrow_a, narrow_b, unrelated = con.execute(
            """
            SELECT n.latent, list(n.neighbour ORDER BY n.rank)[1], list(n.neighbour ORDER BY n.rank)[2],
                   list(n.neighbour ORDER BY n.rank)[3]
            FROM decoder_neighbours n
            JOIN latent_stats a ON a.latent = n.latent JOIN latent_stats b ON b.latent = n.neighbour
            WHERE n.rank < 3 AND n.latent NOT IN (?, ?) AND n.neighbour NOT IN (?, ?)
            GROUP BY n.latent, a.frequency HAVING bool_and(b.frequency < a.frequency)
            ORDER BY a.frequency DESC LIMIT 1
            """,
            [dup, dup_other, dup, dup_other],
        ).fetchone()
        con.execute(
            "UPDATE decoder_neighbours SET decoder_cos = 0.9 WHERE latent = ? AND neighbour = ?", [dup, dup_other]
        )
        con.execute("UPDATE decoder_neighbours SET decoder_cos = 0.4 WHERE latent = ? AND rank < 3", [broad])
        for latent, text in zip(
            [dup, dup_other, broad, narrow_a, narrow_b, unrelated], [*DUPLICATE, BROAD, *NARROW, UNRELATED], strict=True
        ):
            explain(con, latent, text)
        embed_explanations(con)
    finally:
        con.close()
    return path, {"dup": (dup, dup_other), "broad": broad, "narrow": (narrow_a, narrow_b), "unrelated": unrelated}


def test_neighbours_are_the_true_top_k(collected_db):
    """The stored rows are each latent's k nearest other latents by decoder cosine, as a dense matrix says."""
    directions = load_dictionary(embedded.DEFAULT_SAE_DIR).decoder_directions().float()
    unit = directions / directions.norm(dim=1, keepdim=True)
    dense = unit @ unit.T
    dense.fill_diagonal_(-float("inf"))
    expected = dense.topk(K, dim=1)
    rows = query(
        collected_db, "SELECT latent, rank, neighbour, decoder_cos FROM decoder_neighbours ORDER BY latent, rank"
    )
    assert len(rows) == directions.shape[0] * K
    stored = torch.tensor([r[2] for r in rows]).reshape(-1, K)
    cosines = torch.tensor([r[3] for r in rows], dtype=torch.float32).reshape(-1, K)
    assert torch.equal(stored, expected.indices)
    assert torch.allclose(cosines, expected.values, atol=1e-5)
    assert not bool((stored == torch.arange(stored.shape[0])[:, None]).any())  # never itself


def test_view_classifies_planted_near_duplicate_and_split(planted_db):
    path, facts = planted_db
    rows = query(
        path,
        "SELECT latent, other, relation, decoder_cos, explanation_sim, frequency, other_frequency FROM similar_latents",
    )
    by_pair = {(r[0], r[1]): r for r in rows}
    dup, dup_other = facts["dup"]
    assert by_pair[(dup, dup_other)][2] == "near_duplicate"
    assert by_pair[(dup, dup_other)][4] == pytest.approx(0.80, abs=0.02)
    broad = facts["broad"]
    for narrow in facts["narrow"]:
        row = by_pair[(broad, narrow)]
        assert row[2] == "split_candidate" and row[4] >= 0.4 and row[6] < row[5]
    assert by_pair[(broad, facts["unrelated"])][2] == "neighbour"  # its explanation is far from the broad one
    # no explanation on either side: no similarity, a plain neighbour
    unexplained = [r for r in rows if r[0] not in (dup, broad)][0]
    assert unexplained[4] is None and unexplained[2] == "neighbour"
    counts = dict(query(path, "SELECT relation, count(*) FROM similar_latents GROUP BY relation"))
    assert counts == {"near_duplicate": 1, "split_candidate": 2, "neighbour": len(rows) - 3}


def test_similar_command_upgrades_an_older_database(collected_db, tmp_path, capsys):
    path = tmp_path / "old.duckdb"
    shutil.copy(collected_db, path)
    # a database collected before neighbours existed: migration 0016 gave it the table, but no rows
    # (rolling the schema back instead would also undo later migrations, which cannot run twice)
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM decoder_neighbours")
    n_latents = con.execute("SELECT count(*) FROM latents").fetchone()[0]
    latent = con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 1").fetchone()[0]
    explain(con, latent, "names of rivers")
    con.close()

    assert main(["similar", "--db", str(path), "--k", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "decoder neighbours: the 3 nearest latents" in out and "1 embedded" in out
    assert query(path, "SELECT count(*), max(rank) FROM decoder_neighbours") == [(n_latents * 3, 2)]
    assert query(path, "SELECT count(*) FROM explanation_embeddings") == [(1,)]
    assert query(path, "SELECT count(*) FROM similar_latents") == [(n_latents * 3,)]

    assert main(["similar", "--db", str(tmp_path / "missing.duckdb")]) == 2
    assert "No database at" in capsys.readouterr().err
    assert main(["similar", "--db", str(path), "--k", "0"]) == 2


# ------------------------------------------------------------------------------------------------ the browser


def comparison_file(path, a, b, matches: list[tuple[int, int, float, float, float]]) -> None:
    """A comparison file as `autointerp compare` writes it (the agreed tables of both helpers)."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE compare_sources (side VARCHAR, path VARCHAR, collect_run VARCHAR, model VARCHAR, "
        "hookpoint VARCHAR, n_latents INTEGER, d_model INTEGER)"
    )
    con.execute("INSERT INTO compare_sources VALUES ('a', ?, 'r', 'embedded', 'h', 2304, 576)", [str(a)])
    con.execute("INSERT INTO compare_sources VALUES ('b', ?, 'r', 'embedded', 'h', 2304, 576)", [str(b)])
    con.execute(
        "CREATE TABLE latent_matches (latent_a INTEGER, latent_b INTEGER, decoder_cos DOUBLE, "
        "activation_corr DOUBLE, explanation_sim DOUBLE)"
    )
    if matches:
        con.executemany("INSERT INTO latent_matches VALUES (?, ?, ?, ?, ?)", matches)
    con.execute("CREATE TABLE compare_summary (measure VARCHAR, value DOUBLE, n BIGINT, baseline DOUBLE, note VARCHAR)")
    con.execute("INSERT INTO compare_summary VALUES ('pw_mcc', 0.61, 2304, 0.12, NULL)")
    con.close()


@pytest.fixture(scope="module")
def compared(planted_db, collected_db, tmp_path_factory):
    """(planted db, the other SAE's db, comparison file): the planted broad latent matched to latent 7 of
    the other database, whose explanation is OTHER."""
    folder = tmp_path_factory.mktemp("compared")
    other = folder / "other.duckdb"
    shutil.copy(collected_db, other)
    con = connect(other)
    explain(con, 7, "OTHER: punctuation in prose")
    con.close()
    broad = planted_db[1]["broad"]
    matches = folder / "m.duckdb"
    comparison_file(matches, planted_db[0], other, [(broad, 7, 0.93, 0.81, 0.66), (broad + 1, 9, 0.5, None, None)])
    return planted_db[0], other, matches


def test_matches_file_must_include_the_browsed_database(compared, collected_db, tmp_path):
    db, other, _ = compared
    stranger = tmp_path / "m.duckdb"
    comparison_file(stranger, other, collected_db, [])
    with pytest.raises(AutointerpError, match="is neither"):
        make_server(db, matches=stranger)
    with pytest.raises(AutointerpError, match="No comparison file"):
        make_server(db, matches=tmp_path / "none.duckdb")


def test_browser_shows_similar_latents_in_both_saes(compared, planted_db):
    db, other, matches = compared
    broad = planted_db[1]["broad"]
    srv = make_server(db, "127.0.0.1", 0, matches=matches)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(f"{srv.url}api/latents/{broad}", timeout=30) as resp:
            d = json.loads(resp.read())
        assert [s["relation"] for s in d["similar"]].count("split_candidate") == 2
        assert d["matches"] == [
            {
                "other": 7,
                "decoder_cos": 0.93,
                "activation_corr": 0.81,
                "explanation_sim": 0.66,
                "explanation": "OTHER: punctuation in prose",
            }
        ]
        chromium_shows_both_panels(f"{srv.url}latents/{broad}.html", planted_db[1])
    finally:
        srv.shutdown()
        srv.server_close()


def chromium_shows_both_panels(url: str, facts: dict) -> None:
    chromium, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless Chromium is not installed: apt-get install -y chromium chromium-driver (CI installs it)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.get(url)
        rows = driver.execute_script(
            "return Array.from(document.querySelectorAll('#similar-latents tr.similar-row'), "
            "tr => [Number(tr.dataset.latent), tr.dataset.relation, tr.cells[4].textContent])"
        )
        assert len(rows) == K
        split = {r[0]: r[2] for r in rows if r[1] == "split_candidate"}
        assert split == dict(zip(facts["narrow"], NARROW, strict=True))
        match = driver.execute_script(
            "const tr = document.querySelector('#matched-latents tr.match-row');"
            "return [Number(tr.dataset.latent), Array.from(tr.cells, c => c.textContent)]"
        )
        assert match == [7, ["7", "0.93", "0.81", "0.66", "OTHER: punctuation in prose"]]
        link = driver.find_element("css selector", f'#similar-latents a[href="{facts["narrow"][0]}.html"]')
        link.click()
        assert driver.find_element("id", "title").text == f"Latent {facts['narrow'][0]}"
    finally:
        driver.quit()
