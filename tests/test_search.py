"""Search by meaning: planted explanations found first, incremental embedding, clear errors."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from autointerp.cli import main
from autointerp.errors import AutointerpError
from autointerp.models.sentence_encoder import SentenceEncoder
from autointerp.query.api import open_db
from autointerp.similarity.embeddings import embed_explanations
from autointerp.similarity.search import SearchIndex, search
from autointerp.store.db import connect
from tests import test_browse
from tests.conftest import query, with_explanations
from tests.test_browse import wait_for

browser = test_browse.browser  # the headless Chromium fixture, module-scoped here too
pytestmark = pytest.mark.slow  # collected_db runs a collect with the embedded model

PLANTED = [
    "the word 'the' at the start of a sentence",
    "closing parentheses in Python code",
    "names of European capital cities such as Paris and Berlin",
    "numbers written as digits, mostly years",
    "words about cooking, recipes and food ingredients",
    "negative emotions like anger and sadness",
]


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


class CountingEncoder(SentenceEncoder):
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self):
        super().__init__()
        self.texts = 0

    def embed(self, texts, cache=True):
        self.texts += len(texts)
        return super().embed(texts, cache)


@pytest.fixture(scope="module")
def planted_db(collected_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("search") / "planted.duckdb"
    latents = with_explanations(collected_db, path, PLANTED)
    con = connect(path)
    for control, score in (("", 0.875), ("shuffled", 0.5)):  # the control row is not the headline score
        con.execute(
            "INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, status, "
            "n_examples, n_unscored, chance, n_calls, prompt_tokens, completion_tokens, fixed_prompt_tokens, "
            "score, created_at) VALUES (?, ?, 'detection', 'judge', 'c', ?, 'r', 'scored', 10, 0, '{}', 1, 1, 1, "
            "1, ?, now())",
            [latents[2], f"imported/{latents[2]}", control, score],
        )
    con.close()
    return path, latents


def test_planted_explanation_first_for_a_paraphrase(planted_db, capsys):
    path, latents = planted_db
    assert main(["search", "--db", str(path), "French and German capitals", "-k", "3", "--json"]) == 0
    out, err = capsys.readouterr()
    found = json.loads(out)
    assert found[0]["latent"] == latents[2] and found[0]["similarity"] > found[1]["similarity"]
    assert f"embedded {len(PLANTED)} explanation(s)" in err
    assert set(found[0]) >= {"latent", "explanation", "similarity", "score", "frequency", "keyword_match"}
    assert found[0]["frequency"] is not None and found[0]["keyword_match"] is None
    assert found[0]["score"] == 0.875 and found[1]["score"] is None

    # the table, and the keyword boost: a match ranks before closer meanings without it
    assert main(["search", "--db", str(path), "French and German capitals", "-k", "2", "--keyword", "YEARS"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["latent", "similarity"] and "embedded" not in err  # nothing new to embed
    assert lines[2].split()[0] == str(latents[3]) and lines[3].split()[0] == str(latents[2])


def test_only_new_explanations_are_embedded(planted_db, tmp_path):
    path = tmp_path / "copy.duckdb"
    shutil.copy(planted_db[0], path)
    counting = CountingEncoder()
    con = connect(path)
    try:
        first = embed_explanations(con, counting, latest_only=True)  # the CLI test may have embedded them
        con.execute(
            "INSERT INTO explanation_rows VALUES (?, 'imported2', 'import-test', 'default', 'test', "
            "'explained', 'tokens inside HTML tags', NULL, NULL, NULL, 0, 0, 0, now())",
            [planted_db[1][0]],
        )
        before = counting.texts
        again = embed_explanations(con, counting, latest_only=True)
        assert (again.embedded, counting.texts - before) == (1, 1)
        assert again.reused == first.embedded + first.reused
        assert embed_explanations(con, counting, latest_only=True).embedded == 0 and counting.texts == before + 1
        found = search(con, "markup language elements", k=1, encoder=counting)
        assert found[0].latent == planted_db[1][0] and found[0].explanation == "tokens inside HTML tags"
    finally:
        con.close()


def test_read_only_api_search(planted_db, tmp_path, encoder):
    path = tmp_path / "fresh.duckdb"
    shutil.copy(planted_db[0], path)
    con = connect(path)
    con.execute("DELETE FROM explanation_embeddings")
    con.close()
    with open_db(path) as db:  # read-only: nothing stored to search with, and it says how to add it
        db._search_index = SearchIndex.load(db.con, encoder)  # reuse the module's encoder
        with pytest.warns(UserWarning, match=f"{len(PLANTED)} explanation.*--embed"):
            assert db.search("anything at all") == []
    assert query(path, "SELECT count(*) FROM explanation_embeddings") == [(0,)]
    with open_db(path, read_only=False) as db:  # writable: embeds first
        hits = db.search("sad and angry feelings", k=2)
    with open_db(path) as db, warnings.catch_warnings():
        warnings.simplefilter("error")
        again = db.search("sad and angry feelings", k=2)
        with pytest.raises(AutointerpError, match="empty"):
            db.search("   ")
    assert [h.latent for h in again] == [h.latent for h in hits] and hits[0].latent == planted_db[1][5]
    assert query(path, "SELECT count(*) FROM explanation_embeddings") == [(len(PLANTED),)]


def test_empty_query_and_database_without_explanations_exit_2(planted_db, collected_db, tmp_path, capsys):
    path = tmp_path / "q.duckdb"
    shutil.copy(planted_db[0], path)
    before = query(path, "SELECT count(*) FROM explanation_rows")
    for text in ("", "   "):
        assert main(["search", "--db", str(path), text]) == 2
        assert "search text is empty" in capsys.readouterr().err
    assert main(["search", "--db", str(path)]) == 2
    assert "No search text" in capsys.readouterr().err
    assert main(["search", "--db", str(path), "x", "-k", "0"]) == 2
    assert query(path, "SELECT count(*) FROM explanation_rows") == before

    bare = tmp_path / "bare.duckdb"
    shutil.copy(collected_db, bare)
    assert main(["search", "--db", str(bare), "numbers"]) == 2
    err = capsys.readouterr().err
    assert "no explanations to search" in err and "autointerp explain" in err and "import" in err


@pytest.fixture(scope="module")
def served(planted_db, tmp_path_factory, encoder):
    """A browse server over the planted database, with all but one latest explanation embedded. It loads
    its own query encoder at the first search, as a server does."""
    import threading

    from autointerp.browse.server import make_server

    path = tmp_path_factory.mktemp("served") / "served.duckdb"
    shutil.copy(planted_db[0], path)
    con = connect(path)
    embed_explanations(con, encoder, latest_only=True)
    con.execute(  # a newer explanation of latent 0 without an embedding: not searchable, and said so
        "INSERT INTO explanation_rows VALUES (?, 'late', 'import-test', 'default', 'test', "
        "'explained', 'a later explanation nobody embedded', NULL, NULL, NULL, 0, 0, 0, now())",
        [planted_db[1][0]],
    )
    con.close()
    srv = make_server(path, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_api_search_answers_hits_and_the_missing_note(served, planted_db):
    from tests.test_browse import get_json

    status, body = get_json(served.url + "api/search?q=" + "cooking%20and%20recipes" + "&k=3")
    assert status == 200 and body["hits"][0]["latent"] == planted_db[1][4] and len(body["hits"]) == 3
    assert body["hits"][0]["url"] == f"latents/{planted_db[1][4]}.html"
    assert body["missing"] == 1 and "--embed" in body["note"] and body["searched"] == len(PLANTED) - 1
    for bad in ("q=%20", "q=x&k=0", "q=x&k=101", "q=x&k=two", "q=x&sort=latent", "q=x&q=y"):
        status, body = get_json(served.url + "api/search?" + bad)
        assert status == 400 and body["error"], bad


def test_browser_search_by_meaning_box(browser, served, planted_db):
    from selenium.webdriver.common.by import By

    browser.get(served.url)
    wait_for(browser, lambda d: d.execute_script("return document.body.dataset.ready"), "1")
    box = browser.find_element(By.ID, "meaning-q")
    box.send_keys("a capital city in France or Germany")
    browser.find_element(By.ID, "meaning-go").click()
    wait_for(browser, lambda d: d.execute_script("return document.getElementById('meaning').dataset.ready"), "1")
    found = browser.execute_script(
        "return Array.from(document.querySelectorAll('#meaning-hits li'), li => Number(li.dataset.latent))"
    )
    assert found[0] == planted_db[1][2] and len(found) == len(PLANTED) - 1
    assert "1 explanation(s) have no embedding" in browser.find_element(By.ID, "meaning-note").text
    browser.find_element(By.CSS_SELECTOR, "#meaning-hits li a").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "title").text, f"Latent {planted_db[1][2]}")


def test_index_restricted_to_latent_ranges(encoder):
    from autointerp.similarity.embeddings import ExplanationVectors

    texts = ["cities in France", "verbs in the past tense", "prime numbers", "capital cities of Europe", "colours"]
    vectors = ExplanationVectors(
        latents=np.array([0, 3, 4, 7, 9]),
        config_hashes=["c"] * 5,
        explanations=texts,
        vectors=encoder.embed(texts),
        encoder=encoder.digest(),
    )
    index = SearchIndex(vectors, encoder)
    assert {int(index.latents[r]) for r, _, _ in index.query("Paris and Berlin", k=2)} == {0, 7}
    only = index.only([(3, 4), (9, 12)])
    assert list(only.latents) == [3, 4, 9] and only.explanations == [texts[1], texts[2], texts[4]]
    assert len(only.query("Paris and Berlin", k=5)) == 3
