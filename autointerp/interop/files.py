"""Writing output that is never seen half-done, and reading JSON records from plain or gzipped files.

An export writes under a temporary name next to its destination and renames at the end, so a reader
(or a crash) never sees a partial file, and an existing result is replaced only when asked.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from .. import jsonio
from ..errors import AutointerpError


def partial_name(path: Path) -> Path:
    """The temporary sibling ``path`` is written under before the final rename."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Stop before writing anything when a destination exists and ``overwrite`` is off."""
    if overwrite:
        return
    present = [p for p in paths if p.exists() and not (p.is_dir() and not any(p.iterdir()))]
    if present:
        shown = ", ".join(str(p) for p in present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise AutointerpError(
            f"The export would replace {shown}.",
            "an output location without earlier results.",
            "pass --overwrite to replace them, or choose another --out.",
        )


def replace_dir(staged: Path, final: Path) -> None:
    """Move the finished ``staged`` folder to ``final``, replacing what was there."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    staged.rename(final)
    if old is not None:
        shutil.rmtree(old)


class BatchWriter:
    """JSONL files of at most ``batch_size`` records each: ``batch-0.jsonl``, ``batch-1.jsonl``, ...

    Neuronpedia's exports are laid out this way (optionally gzipped); each file is written under a
    temporary name and renamed when full, so memory holds one record at a time.
    """

    def __init__(self, folder: Path, batch_size: int, compress: bool = False):
        self.folder = folder
        self.batch_size = batch_size
        self.suffix = ".jsonl.gz" if compress else ".jsonl"
        self.records = 0
        self.files: list[Path] = []
        self._handle = None
        self._path: Path | None = None
        self._in_batch = 0

    def write(self, record: dict) -> None:
        if self._handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._path = self.folder / f"batch-{len(self.files)}{self.suffix}"
            temp = partial_name(self._path)
            # the handle stays open across write() calls and is closed by _finish() or abort()
            if self.suffix.endswith(".gz"):
                self._handle = gzip.open(temp, "wt", encoding="utf-8", compresslevel=5)  # noqa: SIM115
            else:
                self._handle = open(temp, "w", encoding="utf-8")  # noqa: SIM115
        self._handle.write(jsonio.dumps(record) + "\n")
        self.records += 1
        self._in_batch += 1
        if self._in_batch == self.batch_size:
            self._finish()

    def _finish(self) -> None:
        self._handle.close()
        os.replace(partial_name(self._path), self._path)
        self.files.append(self._path)
        self._handle, self._path, self._in_batch = None, None, 0

    def close(self) -> None:
        if self._handle is not None:
            self._finish()

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
            partial_name(self._path).unlink(missing_ok=True)
            self._handle = None


def natural_key(path: Path) -> tuple:
    """Sort ``batch-2`` before ``batch-10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path)))


JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def is_json_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(JSON_SUFFIXES) and not path.name.startswith(".")


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when its name ends in .gz."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.name.endswith(".gz") else data
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise AutointerpError(f"Cannot read {path}: {exc}", "a readable file (gzip when it ends in .gz).") from exc


def json_records(path: Path, data: bytes) -> Iterator[tuple[str, dict]]:
    """(where, record) for every JSON object of a .jsonl file (one per line) or a .json file (a list of
    them, or an object holding one under "explanations"); ``where`` names the file and line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AutointerpError(f"{path} is not UTF-8 text: {exc}", "JSON or JSONL text.") from exc
    if ".jsonl" in path.name:
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield f"{path}:{number}", _parse(line, f"{path}:{number}")
        return
    value = _parse(text, str(path))
    if isinstance(value, dict) and isinstance(value.get("explanations"), list):
        value = value["explanations"]
    if not isinstance(value, list):
        raise AutointerpError(
            f"{path} holds a JSON {type(value).__name__}.",
            'a list of explanation objects, or an object with an "explanations" list.',
        )
    for number, record in enumerate(value):
        yield f"{path}[{number}]", record


def _parse(text: str, where: str):
    try:
        return jsonio.loads(text)
    except jsonio.JSONDecodeError as exc:
        raise AutointerpError(
            f"{where} is not valid JSON: {exc}",
            "one JSON value (one object per line in .jsonl).",
            "fix or remove the file.",
        ) from exc
