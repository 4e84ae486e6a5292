"""Failures of the machine or of a file, not of the code: a full disk, a damaged database.

They surface as OSError or as DuckDB errors from anywhere in a stage; ``explain_failure`` turns them
into an AutointerpError that says what happened and how to recover (the CLI prints it, exit 2).
DuckDB writes in transactions, so a stage stopped by either leaves what was stored before intact.
"""

from __future__ import annotations

import errno

import duckdb

from .errors import AutointerpError

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DISK_FULL_TEXT = ("No space left on device", '"errno":"28"', "Disk quota exceeded", "File too large")
_DAMAGED_TEXT = (
    "Corrupt database file",
    "Could not read enough bytes",
    "checksum",
    "Serialization Error",
    "Failed to deserialize",
    "not a valid DuckDB database file",
    "The file is not a valid DuckDB database",
    "INTERNAL Error",
)


def explain_failure(exc: BaseException) -> AutointerpError | None:
    """An AutointerpError for a full disk or a damaged database file; None for anything else."""
    text = str(exc)
    if (
        isinstance(exc, OSError)
        and exc.errno in _DISK_FULL_ERRNOS
        or (isinstance(exc, (OSError, duckdb.Error)) and any(t in text for t in _DISK_FULL_TEXT))
    ):
        return AutointerpError(
            f"The disk is full: {text}",
            "free space for the database (and its .wal file) or the files being written.",
            "free some space or write to another disk, then run again; what was stored before is intact "
            "(the unfinished transaction was rolled back) and a stage resumes where it stopped.",
        )
    if isinstance(exc, duckdb.Error) and any(t in text for t in _DAMAGED_TEXT):
        return AutointerpError(
            f"The database file is damaged (truncated or corrupted): {text}",
            "a complete DuckDB file written by autointerp.",
            "restore the file from a copy (or the original, if this is a copy), or run the stages again into "
            "a new --db; autointerp does not write to a damaged file.",
        )
    return None
