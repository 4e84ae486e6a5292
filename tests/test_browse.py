"""The feature browser: its JSON API over real HTTP, its pages in headless Chromium (served and as a static
site from file://), and the ``autointerp browse`` command.

The database is the session's real collect, copied, with explanations, scores, per-context verdicts and
interventions added through the base tables as the explain and score stages would write them, plus
hostile text: a context whose tokens hold a script element and HTML entities, an explanation holding an
<img onerror>, a prompt and a completion holding markup. Every hostile string must reach the page as
text, exactly, and nothing of it may run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest

from autointerp.browse.render import visible_token
from autointerp.browse.server import make_server
from autointerp.browse.static import write_static
from autointerp.cli import main
from autointerp.store.db import connect

from .children import interrupted_at_end
from .conftest import query

pytestmark = pytest.mark.slow  # the database comes from a collect on the embedded model

PWN_TOKEN = "<script>window.__pwned=1</script>"
HOSTILE_TOKENS = [PWN_TOKEN, "&amp;", "&lt;b&gt;", ' say "hi"', "'"]
HOSTILE_EXPLANATION = """<img src=x onerror="window.__pwned=2"> tags & "quotes" 'too'"""
HOSTILE_PROMPT = 'The <b>bold</b> & "brave"'
HOSTILE_COMPLETION = "</td><script>window.__pwned=3</script> went &amp; came"
EXPLANATIONS = {
    1: "dates and years",
    2: "names of rivers",
    3: "rivers and lakes in Europe",
    4: "numbers like 100% and 50_50",
    5: "the word 'the'",
}
DETECTION = {0: 0.55, 1: 0.91, 2: 0.73, 3: 0.62, 4: 0.88}  # latent 5 is explained but not scored
FUZZING = {0: 0.60, 2: 0.80}
CHROMIUM_HELP = "headless Chromium is not installed: apt-get install -y chromium chromium-driver (CI installs it)"
STATIC_RANGE = "0-39"


# ---------------------------------------------------------------------------------------------- the database


def populate(path: Path) -> dict:
    """Add explain / score / intervention rows and hostile text; return what a page must show."""
    con = connect(path)
    ok = [
        r[0] for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 6").fetchall()
    ]
    assert ok == list(range(6)), ok  # the tests below name latents 0-5
    insert_expl = (
        "INSERT INTO explanation_rows (latent, config_hash, run_id, explainer, model, status, explanation, "
        "reason, answer, call_id, n_calls, prompt_tokens, completion_tokens, created_at) "
        "VALUES (?, ?, 'run-x', 'default', 'test-model', ?, ?, ?, NULL, NULL, 1, 10, 5, ?)"
    )
    con.execute(insert_expl, [0, "old", "explained", "an older explanation", None, "2024-01-01 00:00:00"])
    con.execute(insert_expl, [0, "cfgA", "explained", HOSTILE_EXPLANATION, None, "2024-02-01 00:00:00"])
    for latent, text in EXPLANATIONS.items():
        con.execute(insert_expl, [latent, "cfgA", "explained", text, None, "2024-02-01 00:00:00"])
    # a newer answer that could not be parsed does not replace latent 1's explanation
    con.execute(insert_expl, [1, "cfgB", "unparsed", None, "no [EXPLANATION]: line", "2024-03-01 00:00:00"])

    insert_score = (
        "INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, "
        "status, reason, n_examples, n_unscored, balanced_accuracy, accuracy, precision, recall, f1, auroc, "
        "quantile_recall, chance, n_calls, prompt_tokens, completion_tokens, fixed_prompt_tokens, "
        "created_at, score, correlation, detail) VALUES (?, ?, ?, 'judge', ?, ?, 'run-s', 'scored', NULL, "
        "4, 0, ?, ?, 0.5, 0.5, 0.5, NULL, NULL, '{\"score\": 0.5}', 1, 100, 10, 50, ?, ?, NULL, NULL)"
    )
    for scorer, values in (("detection", DETECTION), ("fuzzing", FUZZING)):
        for latent, value in values.items():
            con.execute(
                insert_score,
                [latent, f"cfgA/{latent}", scorer, f"{scorer}-cfg", "", value, value, "2024-02-02 00:00:00", value],
            )
    # latent 0's fuzzing score has a 95% interval: shown as "0.6 [0.4, 0.75], n=4"
    con.execute(
        "UPDATE score_rows SET ci_low = 0.4, ci_high = 0.75, ci_method = 'wilson_mover' "
        "WHERE latent = 0 AND scorer = 'fuzzing' AND control = ''"
    )
    # scores that must not show as latent 0's: of its older explanation, and the shuffled control
    con.execute(insert_score, [0, "old/0", "detection", "detection-cfg", "", 0.99, 0.99, "2024-03-01 00:00:00", 0.99])
    con.execute(
        insert_score, [0, "cfgA/3", "detection", "detection-cfg", "shuffled", 0.41, 0.41, "2024-02-02 00:00:00", 0.41]
    )

    # latent 0's contexts: hostile tokens in its strongest one, one negative activation (signed latents)
    top = con.execute(
        "SELECT context_id, tokens, activations FROM examples WHERE latent = 0 AND kind = 'top' ORDER BY rank LIMIT 1"
    ).fetchone()
    hostile_context, tokens, acts = top[0], list(top[1]), list(top[2])
    tokens[1 : 1 + len(HOSTILE_TOKENS)] = HOSTILE_TOKENS
    con.execute("UPDATE contexts SET tokens = ? WHERE context_id = ?", [tokens, hostile_context])
    acts[0] = -0.5 * max(acts)
    con.execute(
        "UPDATE latent_examples SET activations = ? WHERE latent = 0 AND context_id = ?", [acts, hostile_context]
    )

    # verdicts on latent 0's test set: detection right on all but the first, one fuzzing verdict
    test = con.execute(
        "SELECT context_id, kind, quantile FROM examples WHERE latent = 0 AND split = 'test' "
        "ORDER BY kind, quantile, rank"
    ).fetchall()
    verdicts = {}
    insert_verdict = (
        "INSERT INTO score_example_rows (run_id, latent, explanation_id, scorer, config_hash, control, "
        "context_id, variant, marked, quantile, label, prediction, probability, batch, call_id, reason) "
        "VALUES ('run-s', 0, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, 0, NULL, NULL)"
    )
    for i, (context_id, kind, quantile) in enumerate(test):
        label = kind != "random"
        prediction = (not label) if i == 0 else label
        probability = round(0.2 + 0.1 * i, 2)
        con.execute(
            insert_verdict,
            ["cfgA/0", "detection", "detection-cfg", "", context_id, "plain", quantile, label, prediction, probability],
        )
        verdicts[context_id] = ("detection", prediction == label, probability)
    # a verdict of the older explanation's score: must not show
    con.execute(
        insert_verdict, ["old/0", "detection", "detection-cfg", "", test[0][0], "plain", None, True, True, 0.99]
    )

    insert_intervention = (
        "INSERT INTO intervention_rows VALUES (0, 'steer-cfg', ?, ?, ?, ?, ?, ?, 1.0, 0.93, "
        "'run-i', '2024-02-03 00:00:00')"
    )
    completions = {
        (0, False): " there was a king.",
        (0, True): " there was a river, a river.",
        (1, False): " walked home.",
        (1, True): HOSTILE_COMPLETION,
    }
    prompts = ["Once upon a time", HOSTILE_PROMPT]
    for (index, steered), text in completions.items():
        con.execute(
            insert_intervention, [index * 2 + steered, index, prompts[index], steered, text, 4.5 if steered else 0.0]
        )
    con.close()
    return {
        "hostile_context": hostile_context,
        "hostile_tokens": tokens,
        "verdicts": verdicts,
        "completions": completions,
        "prompts": prompts,
    }


@pytest.fixture(scope="module")
def browse_db(collected_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("browse") / "browse.duckdb"
    shutil.copy(collected_db, path)
    facts = populate(path)
    return path, facts


@pytest.fixture(scope="module")
def server(browse_db):
    srv = make_server(browse_db[0], "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def static_site(browse_db, tmp_path_factory):
    return write_static(browse_db[0], tmp_path_factory.mktemp("static") / "site", latents=STATIC_RANGE, chunk_size=16)


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def get_json(url: str) -> tuple[int, dict]:
    status, headers, body = get(url)
    assert headers["Content-Type"].startswith("application/json")
    return status, json.loads(body)


# ------------------------------------------------------------------------------------------------ JSON API


def test_api_list_sorts_by_headline_score_of_the_latest_explanation(server, browse_db):
    status, body = get_json(server.url + "api/latents?sort=score:detection&order=desc&limit=7")
    assert status == 200 and body["scorers"] == ["detection", "fuzzing"]
    assert body["total"] == query(browse_db[0], "SELECT count(*) FROM latents")[0][0]
    shown = [(r["latent"], r["scores"].get("detection")) for r in body["rows"]]
    assert shown == sorted(DETECTION.items(), key=lambda kv: -kv[1]) + [(5, None), (6, None)]  # nulls last, by latent
    by_latent = {r["latent"]: r for r in body["rows"]}
    assert by_latent[0]["explanation"] == HOSTILE_EXPLANATION  # raw, not HTML-escaped: JSON is not HTML
    assert by_latent[1]["explanation"] == EXPLANATIONS[1]  # the newer unparsed answer does not replace it
    assert by_latent[0]["scores"] == {"detection": DETECTION[0], "fuzzing": FUZZING[0]}  # not 0.99, not the control
    assert by_latent[0]["intervals"] == {"detection": [None, None, 4], "fuzzing": [0.4, 0.75, 4]}


def test_api_list_pages_filters_and_searches(server, browse_db):
    db = browse_db[0]
    status, page2 = get_json(server.url + "api/latents?sort=frequency&order=desc&offset=100&limit=50")
    expected = [
        r[0]
        for r in query(db, "SELECT latent FROM latents ORDER BY frequency DESC NULLS LAST, latent LIMIT 50 OFFSET 100")
    ]
    assert status == 200 and [r["latent"] for r in page2["rows"]] == expected
    _, rivers = get_json(server.url + "api/latents?q=RIVERS")
    assert [r["latent"] for r in rivers["rows"]] == [2, 3] and rivers["total"] == 2
    _, two_words = get_json(server.url + "api/latents?q=rivers%20europe")
    assert [r["latent"] for r in two_words["rows"]] == [3]
    # LIKE wildcards are searched for as text ('_' is also in latent 0's window.__pwned)
    for literal, latents in (("%", [4]), ("_", [0, 4]), ("100%", [4]), ("50_50", [4]), ("1_0", [])):
        _, found = get_json(server.url + "api/latents?" + urllib.parse.urlencode({"q": literal}))
        assert [r["latent"] for r in found["rows"]] == latents, literal
    _, hostile = get_json(server.url + "api/latents?" + urllib.parse.urlencode({"q": "onerror="}))
    assert [r["explanation"] for r in hostile["rows"]] == [HOSTILE_EXPLANATION]
    _, few = get_json(server.url + "api/latents?status=too_few_examples&limit=1000")
    assert few["total"] == query(db, "SELECT count(*) FROM latents WHERE status = 'too_few_examples'")[0][0]
    assert {r["status"] for r in few["rows"]} == {"too_few_examples"}
    _, explained = get_json(server.url + "api/latents?explained=1")
    assert [r["latent"] for r in explained["rows"]] == [0, 1, 2, 3, 4, 5]
    _, nothing = get_json(server.url + "api/latents?q=zebra&offset=10")
    assert nothing["total"] == 0 and nothing["rows"] == []


@pytest.mark.parametrize(
    "params",
    [
        "sort=frequency;DROP%20TABLE%20latent_stats",
        "sort=l.latent",
        "sort=1",
        "sort=score:nonexistent",
        "sort=frequency&sort=latent",
        "order=sideways",
        "order=asc;--",
        "limit=100000",
        "limit=0",
        "offset=-1",
        "limit=ten",
        "offset=99999999999999999999",
        "status=alive",
        "explained=yes",
        "bogus=1",
        "q=%ff",
        "&".join(f"q{i}=1" for i in range(25)),
    ],
)
def test_api_rejects_what_is_not_whitelisted(server, browse_db, params):
    before = query(browse_db[0], "SELECT count(*), sum(frequency) FROM latents")
    status, body = get_json(server.url + "api/latents?" + params)
    assert status == 400 and body["error"] and body["expected"]
    assert query(browse_db[0], "SELECT count(*), sum(frequency) FROM latents") == before
    # the server still answers afterwards
    assert get_json(server.url + "api/latents?limit=1")[0] == 200


def test_api_latent_detail_and_routes(server, browse_db):
    facts = browse_db[1]
    status, d = get_json(server.url + "api/latents/0")
    assert status == 200 and d["explanation"]["text"] == HOSTILE_EXPLANATION
    context = next(c for c in d["contexts"] if c["context_id"] == facts["hostile_context"])
    assert context["tokens"] == facts["hostile_tokens"]
    assert {(s["scorer"], s["control"]): s["score"] for s in d["scores"]} == {
        ("detection", ""): DETECTION[0],
        ("detection", "shuffled"): 0.41,
        ("fuzzing", ""): FUZZING[0],
    }
    for path in (
        "api/latents/99999999",
        "latents/99999999.html",
        "latents/abc.html",
        "assets/..%2Fserver.py",
        "assets/server.py",
        "nothing",
    ):
        assert get(server.url + path)[0] == 404, path


def test_served_html_escapes_corpus_and_model_text(server):
    status, headers, body = get(server.url + "latents/0.html")
    html = body.decode()
    assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html and "<script>window" not in html
    assert "&amp;amp;" in html and "&amp;lt;b&amp;gt;" in html
    assert "&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;" in html and "<img" not in html
    assert "<td" in html and "</td><script>" not in html


# ------------------------------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip(CHROMIUM_HELP)
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    # The system driver, named explicitly: selenium-manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture(params=["served", "static"])
def site(request, server, static_site, browse_db):
    """(mode, URL of the list page, latents the list holds)."""
    db = browse_db[0]
    if request.param == "served":
        return "served", server.url, [r[0] for r in query(db, "SELECT latent FROM latents ORDER BY latent")]
    lo, hi = map(int, STATIC_RANGE.split("-"))
    return (
        "static",
        static_site.index.as_uri(),
        [r[0] for r in query(db, "SELECT latent FROM latents WHERE latent BETWEEN ? AND ? ORDER BY latent", [lo, hi])],
    )


def wait_for(driver, read, expected, timeout: float = 20):
    """Wait until ``read(driver) == expected``; then assert it (so a timeout shows what was there)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: read(d) == expected)
    except TimeoutException:
        pass
    assert read(driver) == expected


def shown(driver) -> list[int]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#latent-rows tr'), tr => Number(tr.dataset.latent))"
    )


def cells(driver, scorer: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#latent-rows td[data-scorer=\"' + arguments[0] + '\"]'), "
        "td => td.textContent)",
        scorer,
    )


def open_list(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.ready"), "1")


def assert_nothing_ran(driver) -> None:
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0


def test_list_loads_sorts_filters_and_searches(browser, site, browse_db, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    mode, url, latents = site
    open_list(browser, url)
    assert shown(browser) == latents[:100]
    assert cells(browser, "fuzzing")[0] == "0.600 [0.40, 0.75], n=4"  # latent 0's score with its interval
    assert browser.find_element(By.ID, "summary").text.startswith(f"{len(latents):,} latents match")
    assert browser.execute_script(
        "return Array.from(document.querySelectorAll('#header-row button'), b => b.dataset.sort)"
    )[2:4] == ["score:detection", "score:fuzzing"]
    browser.save_screenshot(str(screenshots / f"{mode}-list.png"))

    # sort by the detection score: descending first, missing scores last; again: ascending, still last
    by_score = [lat for lat, _ in sorted(DETECTION.items(), key=lambda kv: -kv[1])]
    unscored = [lat for lat in latents if lat not in DETECTION]
    browser.find_element(By.CSS_SELECTOR, 'button[data-sort="score:detection"]').click()
    wait_for(browser, shown, (by_score + unscored)[:100])
    assert cells(browser, "detection")[:6] == [f"{DETECTION[lat]:.3f}" for lat in by_score] + ["—"]
    assert (
        browser.find_element(By.CSS_SELECTOR, 'th[data-key="score:detection"]').get_attribute("aria-sort")
        == "descending"
    )
    browser.find_element(By.CSS_SELECTOR, 'button[data-sort="score:detection"]').click()
    wait_for(browser, shown, (by_score[::-1] + unscored)[:100])
    browser.save_screenshot(str(screenshots / f"{mode}-list-sorted.png"))

    # search narrows (words anywhere, any case; % and _ are plain text); sorting still applies
    search = browser.find_element(By.ID, "q")
    search.send_keys("RIVERS", Keys.ENTER)
    wait_for(browser, shown, [3, 2])  # ascending detection score: 0.62, 0.73
    search.clear()
    search.send_keys("100%", Keys.ENTER)
    wait_for(browser, shown, [4])
    search.clear()
    search.send_keys("onerror", Keys.ENTER)
    wait_for(browser, shown, [0])
    cell = browser.find_element(By.CSS_SELECTOR, '#latent-rows tr[data-latent="0"] td.explanation')
    assert cell.get_attribute("textContent") == HOSTILE_EXPLANATION
    assert_nothing_ran(browser)
    browser.save_screenshot(str(screenshots / f"{mode}-list-search.png"))
    search.clear()
    search.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: len(shown(d)), min(100, len(latents)))

    # filters: explained only, then a status
    browser.find_element(By.CSS_SELECTOR, 'button[data-sort="latent"]').click()
    browser.find_element(By.ID, "explained").click()
    wait_for(browser, shown, [0, 1, 2, 3, 4, 5])
    browser.find_element(By.ID, "explained").click()
    browser.find_element(By.CSS_SELECTOR, '#status option[value="too_few_examples"]').click()
    db_few = [
        r[0]
        for r in query(browse_db[0], "SELECT latent FROM latents WHERE status = 'too_few_examples' ORDER BY latent")
    ]
    wait_for(browser, shown, [lat for lat in db_few if lat in set(latents)][:100])
    assert set(
        browser.execute_script(
            "return Array.from(document.querySelectorAll('#latent-rows td.status'), td => td.textContent)"
        )
    ) <= {"too_few_examples"}


def test_latent_page_from_the_list(browser, site, browse_db, screenshots):
    from selenium.webdriver.common.by import By

    mode, url, _ = site
    db, facts = browse_db
    open_list(browser, url)
    browser.find_element(By.CSS_SELECTOR, '#latent-rows tr[data-latent="0"] a.latent-link').click()
    wait_for(browser, lambda d: d.current_url.split("#")[0].endswith("latents/0.html"), True)
    assert browser.find_element(By.ID, "title").text == "Latent 0"
    assert browser.find_element(By.ID, "explanation").get_attribute("textContent") == HOSTILE_EXPLANATION
    assert_nothing_ran(browser)

    # top and quantile contexts, as many as the database has
    counts = dict(query(db, "SELECT kind, count(*) FROM examples WHERE latent = 0 GROUP BY kind"))
    for section, kind in (("top-contexts", "top"), ("quantile-contexts", "quantile"), ("random-contexts", "random")):
        assert len(browser.find_elements(By.CSS_SELECTOR, f"#{section} .context")) == counts[kind]

    # every token of every context: its text, its activation on hover, its shade
    max_act = query(db, "SELECT max_activation FROM latents WHERE latent = 0")[0][0]
    rows = query(db, "SELECT context_id, tokens, activations FROM examples WHERE latent = 0")
    for context_id, tokens, acts in rows:
        spans = browser.execute_script(
            "return Array.from(document.querySelectorAll('.context[data-context-id=\"' + arguments[0] + '\"] .tok'), "
            "s => [s.textContent, s.title, getComputedStyle(s).backgroundColor, s.className])",
            str(context_id),
        )
        assert [s[0] for s in spans] == [visible_token(t) for t in tokens]
        for (_, title, color, cls), act in zip(spans, acts, strict=True):
            assert math.isclose(float(title), act, rel_tol=1e-3, abs_tol=1e-6)
            rgba = [float(x) for x in re.findall(r"[\d.]+", color)]
            alpha = rgba[3] if len(rgba) == 4 else 1.0
            assert math.isclose(alpha, min(abs(act) / max_act, 1.0), abs_tol=0.01), (title, color)
            if act < 0:
                assert "neg" in cls and rgba[2] > rgba[0]  # negative activations in blue
    hostile = browser.execute_script(
        "return Array.from(document.querySelectorAll('.context[data-context-id=\"' + arguments[0] + '\"] .tok'), "
        "s => s.textContent)",
        str(facts["hostile_context"]),
    )
    assert hostile[1 : 1 + len(HOSTILE_TOKENS)] == HOSTILE_TOKENS
    assert_nothing_ran(browser)

    # verdicts of the latest explanation's detection score, one per test context
    badges = browser.execute_script(
        "return Array.from(document.querySelectorAll('.verdict'), "
        "b => [b.closest('.context').dataset.contextId, b.dataset.scorer, b.textContent])"
    )
    assert len(badges) == len(facts["verdicts"])
    for context_id, scorer, text in badges:
        want_scorer, right, probability = facts["verdicts"][int(context_id)]
        assert scorer == want_scorer and text == f"{scorer} {'✓' if right else '✗'} p={probability:.2f}"

    # scores table and the intervention completions, hostile ones as text
    score_rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#scores tbody tr'), "
        "tr => [tr.dataset.scorer, tr.dataset.control, tr.cells[2].textContent])"
    )
    assert score_rows == [
        ["detection", "", "0.55"],
        ["detection", "shuffled", "0.41"],
        ["fuzzing", "", "0.6 [0.4, 0.75], n=4"],
    ]
    table = browser.execute_script(
        "return Array.from(document.querySelectorAll('#interventions tbody tr'), "
        "tr => [tr.querySelector('.prompt').textContent, tr.querySelector('.clean').textContent, "
        "tr.querySelector('.steered').textContent])"
    )
    completions = facts["completions"]
    assert table == [[facts["prompts"][i], completions[(i, False)], completions[(i, True)]] for i in (0, 1)]
    assert_nothing_ran(browser)
    browser.save_screenshot(str(screenshots / f"{mode}-latent-0.png"))
    browser.execute_script("document.getElementById('quantile-contexts').scrollIntoView()")
    browser.save_screenshot(str(screenshots / f"{mode}-latent-0-verdicts.png"))
    browser.execute_script("document.getElementById('interventions').scrollIntoView()")
    browser.save_screenshot(str(screenshots / f"{mode}-latent-0-interventions.png"))

    browser.find_element(By.ID, "back").click()
    wait_for(browser, lambda d: d.execute_script("return document.body.dataset.ready"), "1")
    assert shown(browser)[0] == 0


# ------------------------------------------------------------------------------------------------- command


def test_static_site_files(static_site, browse_db):
    site = static_site
    pages = sorted(int(p.stem) for p in (site.path / "latents").glob("*.html"))
    assert pages == list(range(40)) and site.n_latents == 40 and site.n_chunks == 3  # 16 + 16 + 8
    assets = sorted(p.name for p in (site.path / "assets").iterdir())
    assert assets == ["browser.css", "list.js"]
    chunk = (site.path / "data" / "latents-00000.js").read_text()
    assert "<" not in chunk and "\\u003cimg src=x onerror=" in chunk  # nothing in the data can close a tag


def test_command_static_and_its_errors(browse_db, tmp_path, capsys):
    db = browse_db[0]
    out = tmp_path / "site"
    assert main(["browse", "--db", str(db), "--static", str(out), "--latents", "3-5,7"]) == 0
    assert (out / "index.html").as_uri() in capsys.readouterr().out
    assert sorted(p.name for p in (out / "latents").iterdir()) == ["3.html", "4.html", "5.html", "7.html"]
    # an earlier site is replaced whole
    assert main(["browse", "--db", str(db), "--static", str(out), "--latents", "8"]) == 0
    assert sorted(p.name for p in (out / "latents").iterdir()) == ["8.html"]
    assert not list(tmp_path.glob(".site.*"))  # no temporary folder left behind

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    bad = [
        (["--static", str(foreign)], "did not write"),
        (["--static", str(tmp_path / "x"), "--latents", "9-3"], "increasing range"),
        (["--static", str(tmp_path / "y"), "--latents", "99999990-99999999"], "No latent"),
        (["--port", "70000"], "not a port"),
    ]
    for extra, message in bad:
        assert main(["browse", "--db", str(db)] + extra) == 2, extra
        assert message in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert main(["browse", "--db", str(tmp_path / "missing.duckdb")]) == 2
    assert "No database" in capsys.readouterr().err


def test_command_refuses_a_database_without_the_views(tmp_path, capsys):
    from autointerp.store.db import migrations

    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    con.execute(migrations()[0][2])  # the first schema only: no explanations, scores, ...
    con.close()
    before = old.read_bytes()
    assert main(["browse", "--db", str(old), "--static", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert "older autointerp" in err and "explanations.explanation" in err
    assert old.read_bytes() == before and not (tmp_path / "site").exists()


def test_command_serves_until_interrupted(browse_db):
    before = hashlib.sha256(browse_db[0].read_bytes()).hexdigest()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autointerp.cli", "browse", "--db", str(browse_db[0]), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    with interrupted_at_end(proc, timeout=30):  # the child is killed if it does not stop
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, line + proc.stderr.read()
        status, body = get_json(match.group(0) + "api/latents?limit=3&sort=latent")
        assert status == 200 and [r["latent"] for r in body["rows"]] == [0, 1, 2]
        # read-only: another reader can open the database while it is served
        assert query(browse_db[0], "SELECT count(*) FROM explanations")[0][0] == 8
    assert proc.returncode == 0
    assert hashlib.sha256(browse_db[0].read_bytes()).hexdigest() == before  # read-only: the file is untouched
