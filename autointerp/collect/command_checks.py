"""Checks shared by the commands that add derived rows to a collected database (``autointerp lens``,
``autointerp similar``): positive sizes, and a database file that exists and may be written."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import AutointerpError


def require_at_least_one(**sizes: int) -> None:
    """Refuse any size below 1, named by its flag (``chunk_size`` -> ``--chunk-size``)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or value < 1:
            raise AutointerpError(f"--{name.replace('_', '-')} is {value}.", "a whole number of at least 1.")


def require_writable_database(db: str, what: str) -> None:
    """Refuse ``db`` unless it is a file this user may write, ``what`` (e.g. "the lens") being what
    would be stored in it."""
    path = Path(db)
    if not path.is_file():
        raise AutointerpError(
            f"No database at {db}.",
            "a database written by `autointerp collect`.",
            "check the --db path, or run `autointerp collect --db PATH` first.",
        )
    if not os.access(path, os.W_OK):
        raise AutointerpError(
            f"The database {db} is read-only, so {what} cannot be stored in it.",
            "a database file this user may write.",
            "copy it somewhere writable (or change its permissions) and run again.",
        )
