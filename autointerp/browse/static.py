"""``autointerp browse --static DIR``: the browser as files, usable from ``file://`` with no server.

Layout of DIR::

    index.html                 the latent list (sorted, filtered and searched in the page)
    assets/                    browser.css, list.js
    data/index.js              how many latents, which chunk files, which scorers
    data/latents-NNNNN.js      the list's rows, ``chunk_size`` per file
    latents/<N>.html           one page per latent

Chromium refuses ``fetch()`` of local files from a ``file://`` page, so the list's data is JSON
wrapped in a function call inside ``.js`` files, which ``<script>`` elements may load from anywhere.
The site is written into a temporary sibling folder and moved into place at the end, so an
interrupted run never leaves half a site; DIR is replaced only if an earlier run wrote it (it holds
the marker file), never a folder of someone else's files.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..config import parse_latent_ranges
from ..errors import AutointerpError
from . import jsonout, latent, listing, render
from .source import Database

MARKER = ".autointerp-browse"


@dataclass
class StaticSite:
    """What ``write_static`` wrote."""

    path: Path
    n_latents: int
    n_chunks: int
    seconds: float

    @property
    def index(self) -> Path:
        return self.path / "index.html"


def write_static(
    db: str | Path, out: str | Path, latents: str = "", chunk_size: int = 1000, batch_size: int = 200
) -> StaticSite:
    """Write the site for ``db`` (the latents in ``latents`` ranges, or all) into the folder ``out``."""
    start = time.perf_counter()
    parse_latent_ranges(latents)
    if chunk_size <= 0 or batch_size <= 0:
        raise AutointerpError(f"chunk size {chunk_size} / batch size {batch_size}.", "positive integers.")
    out = Path(out).absolute()
    _check_target(out)
    database = Database(db)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        for sub in ("assets", "data", "latents"):
            (tmp / sub).mkdir(parents=True)
        _copy_assets(tmp / "assets")
        ids, n_chunks, scorers = _write_list(database.cursor(), tmp / "data", latents, chunk_size)
        if not ids:
            raise AutointerpError(
                f"No latent of {db} is in --latents {latents!r}." if latents else f"{db} holds no latent.",
                "latents the database has (see the latents view).",
                "run `autointerp collect` first, or widen --latents.",
            )
        name = Path(db).name
        (tmp / "data" / "index.js").write_text(
            "autointerpStatic.index("
            + jsonout.script_literal(
                {
                    "total": len(ids),
                    "scorers": scorers,
                    "db": name,
                    "chunks": [f"data/latents-{i:05d}.js" for i in range(n_chunks)],
                }
            )
            + ");\n",
            encoding="utf-8",
        )
        cur = database.cursor()
        for i in range(0, len(ids), batch_size):
            for index, d in latent.latent_details(cur, ids[i : i + batch_size]).items():
                (tmp / "latents" / f"{index}.html").write_text(render.latent_page(d, name), encoding="utf-8")
        (tmp / "index.html").write_text(render.list_page("static", name), encoding="utf-8")
        (tmp / MARKER).write_text("written by autointerp browse --static; the folder is replaced on the next run\n")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        database.close()
    return StaticSite(out, len(ids), n_chunks, time.perf_counter() - start)


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise AutointerpError(
            f"--static {out} is a file.",
            "a folder to write the site into (new, empty, or an earlier site).",
            "pass another path.",
        )
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise AutointerpError(
            f"--static {out} holds files that autointerp did not write; they are left alone.",
            "a new or empty folder, or one an earlier `autointerp browse --static` wrote.",
            "pass another folder, or empty this one.",
        )
    if not out.parent.is_dir():
        raise AutointerpError(
            f"The folder {out.parent} does not exist.", fix="create it or pass another --static path."
        )


def _copy_assets(folder: Path) -> None:
    for entry in resources.files(__package__).joinpath("assets").iterdir():
        if entry.name.endswith((".css", ".js")):
            (folder / entry.name).write_bytes(entry.read_bytes())


def _write_list(cur, folder: Path, latents: str, chunk_size: int) -> tuple[list[int], int, list[str]]:
    """Write the list's chunk files, streaming rows from DuckDB; return the latents, chunk count, scorers."""
    source = listing.inline(cur)
    query = listing.ListQuery(limit=None, latents=latents)
    ids: list[int] = []
    chunk: list[dict] = []
    n_chunks = 0

    def flush() -> None:
        nonlocal chunk, n_chunks
        (folder / f"latents-{n_chunks:05d}.js").write_text(
            "autointerpStatic.chunk(" + jsonout.script_literal(chunk) + ");\n", encoding="utf-8"
        )
        n_chunks += 1
        chunk = []

    for row in listing.iter_rows(cur, query, source):
        ids.append(row["latent"])
        chunk.append(row)
        if len(chunk) == chunk_size:
            flush()
    if chunk:
        flush()
    return ids, n_chunks, list(source.scorers)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished site to ``out``, replacing an earlier site there."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
