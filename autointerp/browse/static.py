"""``autointerp browse --static DIR``: the browser as files, usable from ``file://`` with no server.

Layout of DIR::

    index.html                 the latent list (sorted, filtered and searched in the page)
    assets/                    browser.css, list.js
    data/index.js              how many latents, which chunk files, which scorers
    data/latents-NNNNN.js      the list's rows, ``chunk_size`` per file
    latents/<N>.html           one page per latent

Chromium refuses ``fetch()`` of local files from a ``file://`` page, so the list's data is JSON
wrapped in a function call inside ``.js`` files, which ``<script>`` elements may load from anywhere.
The site is written into a temporary sibling folder and its files are moved into DIR at the end, so an
interrupted run leaves no half-written page. The marker file lists every file the site wrote: a later
run replaces those, deletes those it no longer writes, and never touches any other file. A non-empty
DIR that is not an earlier site, or a file of someone else's where a page goes, is refused unless
``overwrite`` (which replaces only the files the site writes).
"""

from __future__ import annotations

import os
import re
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


#: The files of a site, for a marker written before the marker listed them.
_SITE_FILE = re.compile(r"index\.html|assets/[\w.-]+\.(css|js)|data/index\.js|data/latents-\d+\.js|latents/\d+\.html")


def write_static(
    db: str | Path,
    out: str | Path,
    latents: str = "",
    chunk_size: int = 1000,
    batch_size: int = 200,
    overwrite: bool = False,
    matches: str | Path | None = None,
) -> StaticSite:
    """Write the site for ``db`` (the latents in ``latents`` ranges, or all) into the folder ``out``.

    Only the site's own files are written or deleted; ``overwrite`` lets it write into a folder of other
    files (replacing same-named ones, keeping the rest). ``matches``: a comparison file of ``autointerp
    compare``, whose matches in the compared SAE each latent page then shows."""
    start = time.perf_counter()
    parse_latent_ranges(latents)
    if chunk_size <= 0 or batch_size <= 0:
        raise AutointerpError(f"chunk size {chunk_size} / batch size {batch_size}.", "positive integers.")
    out = Path(out).absolute()
    _check_target(out)
    earlier = _earlier_files(out)
    if earlier is None and not overwrite:
        raise AutointerpError(
            f"--static {out} holds files that autointerp did not write.",
            "a new or empty folder, or one an earlier `autointerp browse --static` wrote.",
            "pass another folder, or add --overwrite to write the site's files into it (other files are kept).",
        )
    database = Database(db, matches)
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
            for index, d in latent.latent_details(cur, ids[i : i + batch_size], database.comparison).items():
                (tmp / "latents" / f"{index}.html").write_text(render.latent_page(d, name), encoding="utf-8")
        (tmp / "index.html").write_text(render.list_page("static", name), encoding="utf-8")
        written = sorted(str(p.relative_to(tmp).as_posix()) for p in tmp.rglob("*") if p.is_file())
        foreign = [f for f in written if (out / f).exists() and f not in (earlier or set())]
        if foreign and not overwrite:
            raise AutointerpError(
                f"--static {out} holds files the site would replace that it did not write: "
                + ", ".join(foreign[:5])
                + (" ..." if len(foreign) > 5 else "")
                + ".",
                "a folder where only an earlier `autointerp browse --static` wrote the site's files.",
                "move those files away, pass another folder, or add --overwrite to replace them.",
            )
        _move_into(tmp, out, written, earlier or set())
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
    if not out.parent.is_dir():
        raise AutointerpError(
            f"The folder {out.parent} does not exist.", fix="create it or pass another --static path."
        )


#: Assets of the served browser only: search by meaning needs the server's query encoder.
SERVED_ONLY = frozenset({"search.js"})


def _copy_assets(folder: Path) -> None:
    for entry in resources.files(__package__).joinpath("assets").iterdir():
        if entry.name.endswith((".css", ".js")) and entry.name not in SERVED_ONLY:
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


def _earlier_files(out: Path) -> set[str] | None:
    """The files an earlier site in ``out`` wrote (empty for a new or empty folder); None: not a site."""
    if not out.is_dir() or not any(out.iterdir()):
        return set()
    marker = out / MARKER
    if not marker.is_file():
        return None
    lines = marker.read_text(encoding="utf-8", errors="replace").splitlines()
    if lines and lines[0] == "files:":
        return {line for line in lines[1:] if line and ".." not in line.split("/")}
    # a marker written before it listed the files: the site's own layout
    return {
        str(p.relative_to(out).as_posix())
        for p in out.rglob("*")
        if _SITE_FILE.fullmatch(p.relative_to(out).as_posix())
    }


def _move_into(tmp: Path, out: Path, written: list[str], earlier: set[str]) -> None:
    """Move the finished site's files into ``out``, delete the earlier site's files it no longer has, and
    list what it wrote in the marker; no other file in ``out`` is touched."""
    for name in written:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, target)
    for name in sorted(earlier - set(written)):
        (out / name).unlink(missing_ok=True)
    for sub in ("latents", "data", "assets"):
        if (out / sub).is_dir() and not any((out / sub).iterdir()):
            (out / sub).rmdir()
    (out / MARKER).write_text(
        "files:\n" + "".join(f"{name}\n" for name in written),
        encoding="utf-8",
    )
    shutil.rmtree(tmp, ignore_errors=True)
