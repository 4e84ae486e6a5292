"""The browser's output side (issue 16 item 5): a latent page shows the promoted and suppressed tokens of the
logit lens with their values (as text: a token may hold markup), the note where the lens does not apply,
the input and output scores; the list sorts by output score; the JSON API carries the tokens.

The database is the session's collect, copied, with lens rows and input/output scores planted as their
writers store them (tests/output_side.py). Chromium drives the served page and the static site."""

from __future__ import annotations

import shutil
import threading

import pytest

from autointerp.browse.render import visible_token
from autointerp.browse.server import make_server
from autointerp.browse.static import write_static
from autointerp.store.db import connect

from .output_side import plant_lens, plant_score
from .test_browse import assert_nothing_ran, browser, get, get_json, open_list, shown, wait_for  # noqa: F401

pytestmark = pytest.mark.slow  # the database comes from a collect on the embedded model

PWN_TOKEN = "<script>window.__pwned=4</script>"
PROMOTED = [(11, PWN_TOKEN, 7.5), (12, " river", 6.25), (13, "&amp;", 5.0), (14, "\n", 4.0)]
SUPPRESSED = [(21, " <b>not</b>", -6.5), (22, " the", -3.0)]
NOTE = "the dictionary writes to model.layers.3.mlp.act_fn, which does not reach the residual stream <i>"
OUTPUT = {0: 0.2, 1: 0.5, 2: 4e-6}  # latent 3 has the note and no scores


@pytest.fixture(scope="module")
def lens_db(collected_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("browse-output") / "lens.duckdb"
    shutil.copy(collected_db, path)
    con = connect(path)
    con.execute(
        "INSERT INTO explanation_rows (latent, config_hash, run_id, explainer, model, status, explanation, n_calls, "
        "prompt_tokens, completion_tokens, created_at) VALUES (0, 'cfgA', 'run-x', 'default', 'm', 'explained', "
        "'rivers', 1, 1, 1, now())"
    )
    plant_lens(con, 0, promoted=PROMOTED, suppressed=SUPPRESSED)
    plant_lens(con, 3, note=NOTE)
    for latent, value in OUTPUT.items():
        # stored under an older explanation: still shown, the score does not depend on it
        plant_score(con, latent, f"older/{latent}", "output_score", value, 1e-6)
        plant_score(con, latent, f"older/{latent}", "input_score", 0.1 * latent, 2e-4)
    con.close()
    return path


@pytest.fixture(scope="module")
def lens_server(lens_db):
    srv = make_server(lens_db, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_api_sorts_by_output_score_and_carries_the_logit_tokens(lens_server):
    status, body = get_json(lens_server.url + "api/latents?sort=score:output_score&order=desc&limit=4")
    assert status == 200 and body["scorers"] == ["input_score", "output_score"]
    assert [r["latent"] for r in body["rows"]][:3] == [1, 0, 2]
    assert body["rows"][0]["scores"] == {"input_score": 0.1, "output_score": 0.5}
    _, page = get_json(lens_server.url + "api/latents/0")
    lens = page["logits"]
    assert [(t["token_id"], t["token"], t["value"]) for t in lens["promoted"]] == PROMOTED
    assert [(t["token_id"], t["token"], t["value"]) for t in lens["suppressed"]] == SUPPRESSED
    assert [t["rank"] for t in lens["promoted"]] == [0, 1, 2, 3] and lens["note"] is None
    _, noted = get_json(lens_server.url + "api/latents/3")
    assert noted["logits"] == {"promoted": [], "suppressed": [], "note": NOTE}


def test_served_page_escapes_the_tokens(lens_server):
    html = get(lens_server.url + "latents/0.html")[2].decode()
    assert "&lt;script&gt;window.__pwned=4&lt;/script&gt;" in html and "<script>window" not in html
    assert "&amp;amp;" in html and "&lt;b&gt;not&lt;/b&gt;" in html
    assert "&lt;i&gt;" in get(lens_server.url + "latents/3.html")[2].decode()


@pytest.fixture(params=["served", "static"])
def lens_site(request, lens_server, lens_db, tmp_path_factory):
    """(mode, URL of the list page, URL of latent 0's page, of latent 3's)."""
    if request.param == "served":
        base = lens_server.url
        return "served", base, base + "latents/0.html", base + "latents/3.html"
    site = write_static(lens_db, tmp_path_factory.mktemp("static-lens") / "site", latents="0-9")
    folder = site.index.parent
    return (
        "static",
        site.index.as_uri(),
        (folder / "latents" / "0.html").as_uri(),
        (folder / "latents" / "3.html").as_uri(),
    )


def test_latent_page_shows_promoted_and_suppressed_tokens_as_text(browser, lens_site):  # noqa: F811
    from selenium.webdriver.common.by import By

    mode, list_url, page0, page3 = lens_site
    browser.get(page0)
    read = "return Array.from(document.querySelectorAll(arguments[0]), x => x.textContent)"
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#promoted-tokens li")), len(PROMOTED))
    tokens = browser.execute_script(read, "#promoted-tokens .logit-token")
    assert tokens == [visible_token(t) for _, t, _ in PROMOTED]  # the script tag as text, the newline as ↵
    assert browser.execute_script(read, "#promoted-tokens .logit-value") == ["7.5", "6.25", "5", "4"]
    assert browser.execute_script(read, "#suppressed-tokens .logit-token") == [t for _, t, _ in SUPPRESSED]
    headline = browser.execute_script(read, "#output-scores .headline .value")
    assert headline == ["0.2", "0"]  # output score 0.2; latent 0's input score 0.1 * 0
    assert_nothing_ran(browser)
    assert browser.execute_script("return document.querySelectorAll('#output b:not(.value), #output i').length") == 0
    browser.get(page3)
    wait_for(browser, lambda d: d.find_element(By.ID, "lens-note").text, "Logit lens: " + NOTE)
    assert browser.find_elements(By.CSS_SELECTOR, "#promoted-tokens li") == []

    # the list sorts by output score, tiny ones in exponent notation
    open_list(browser, list_url)
    browser.find_element(By.CSS_SELECTOR, 'button[data-sort="score:output_score"]').click()
    wait_for(browser, lambda d: shown(d)[:3], [1, 0, 2])
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('#latent-rows td[data-scorer=\"output_score\"]'), "
        "td => td.textContent)"
    )
    assert cells[:3] == ["0.500", "0.200", "4.00e-6"], mode
