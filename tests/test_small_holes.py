"""Smaller holes of careless or hostile input (issue 13, item 11): each a clear refusal, nothing changed."""

from __future__ import annotations

import http.client
import shutil
import threading

import pytest
import torch

from autointerp.browse import jsonout, render
from autointerp.browse.server import make_server
from autointerp.cli import main
from autointerp.models.dictionaries.linear import LinearDictionary
from autointerp.models.dictionaries.load import load_dictionary
from autointerp.models.dictionaries.saelens import save_saelens

from .test_interop_import import counts, delphi_folder


def test_explain_and_score_on_a_missing_db_create_nothing(tmp_path, capsys):
    missing = tmp_path / "typo.duckdb"
    for stage in ("explain", "score"):
        assert main([stage, "--db", str(missing), "--quiet"]) == 2
        assert "No database at" in capsys.readouterr().err
        assert not missing.exists() and not list(tmp_path.iterdir())


def test_cfg_json_d_in_must_match_the_weights(tmp_path):
    folder = tmp_path / "sae"
    g = torch.Generator().manual_seed(0)
    sae = LinearDictionary(
        W_enc=torch.randn(16, 32, generator=g),
        b_enc=torch.zeros(32),
        W_dec=torch.randn(32, 16, generator=g),
        b_dec=torch.zeros(16),
        activation="relu",
    )
    save_saelens(sae, folder)
    assert load_dictionary(folder).d_in == 16
    for key, value in (("d_in", 24), ("d_sae", 31)):
        save_saelens(sae, folder, extra_cfg={key: value})
        with pytest.raises(Exception, match=f"{key}") as caught:
            load_dictionary(folder)
        assert type(caught.value).__name__ == "AutointerpError" and str(value) in str(caught.value)


@pytest.mark.slow
def test_import_refuses_a_huge_explanation(collected_db, tmp_path, capsys):
    db = tmp_path / "import.duckdb"
    shutil.copy(collected_db, db)
    before = counts(db)
    folder = delphi_folder(tmp_path / "big", {1: "fine", 2: "x" * 5_000_000})
    assert main(["import", "--db", str(db), "--from", "delphi", "--path", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "latent 2" in err and "5,000,000" in err and "characters" in err
    assert counts(db) == before


@pytest.fixture
def served(collected_db):
    server = make_server(collected_db)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def get(server, path: str, host: str | None):
    con = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        con.putrequest("GET", path, skip_host=True)
        if host is not None:
            con.putheader("Host", host)
        con.endheaders()
        response = con.getresponse()
        return response.status, response.read()
    finally:
        con.close()


@pytest.mark.slow
def test_browser_refuses_foreign_host_headers(served):
    port = served.server_address[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil"):
        status, body = get(served, "/api/latents", host)
        assert status == 403 and b"Host" in body, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "127.0.0.1"):
        status, _ = get(served, "/api/latents", host)
        assert status == 200, host


def test_nul_bytes_never_reach_the_html():
    assert "\x00" not in render.e("a\x00b") and "a\ufffdb" == render.e("a\x00b")
    assert "\x00" not in jsonout.script_literal({"t": "a\x00b"})
    assert "\x00" not in render.list_page("static", "corpus\x00.duckdb")
