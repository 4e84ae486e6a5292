"""``browse --static DIR`` writes and deletes only its own files."""

from __future__ import annotations

import pytest

from autointerp.cli import main


@pytest.mark.slow
def test_static_site_never_deletes_what_it_did_not_write(collected_db, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["browse", "--db", str(collected_db), "--static", str(out), "--latents", "3-5"]) == 0
    (out / "notes.txt").write_text("keep me")
    (out / "latents" / "mine.html").write_text("keep me too")
    assert main(["browse", "--db", str(collected_db), "--static", str(out), "--latents", "8"]) == 0
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "latents" / "mine.html").read_text() == "keep me too"
    assert sorted(p.name for p in (out / "latents").iterdir()) == ["8.html", "mine.html"]  # 3-5 were its own
    assert not list(tmp_path.glob(".site.*"))

    foreign = tmp_path / "mine"
    (foreign / "latents").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    (foreign / "latents" / "8.html").write_text("my own page")
    capsys.readouterr()
    assert main(["browse", "--db", str(collected_db), "--static", str(foreign), "--latents", "8"]) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and "--overwrite" in err and "left alone" not in err
    assert (foreign / "latents" / "8.html").read_text() == "my own page" and not (foreign / "index.html").exists()
    args = ["browse", "--db", str(collected_db), "--static", str(foreign), "--latents", "8", "--overwrite"]
    assert main(args) == 0
    assert (foreign / "notes.txt").read_text() == "mine" and (foreign / "index.html").exists()
    assert (foreign / "latents" / "8.html").read_text() != "my own page"  # --overwrite replaced that one file


@pytest.mark.slow
def test_an_earlier_site_with_a_foreign_file_where_a_page_goes_is_refused(collected_db, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["browse", "--db", str(collected_db), "--static", str(out), "--latents", "3"]) == 0
    (out / "latents" / "4.html").write_text("my notes on latent 4")
    assert main(["browse", "--db", str(collected_db), "--static", str(out), "--latents", "3-4"]) == 2
    assert (out / "latents" / "4.html").read_text() == "my notes on latent 4"
