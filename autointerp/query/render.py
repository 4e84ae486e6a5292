"""Write query results as an aligned text table, CSV, JSON or JSON lines.

Pure functions of (column names, column types, rows) and an output stream, so the CLI stays a thin shell
and each format can be tested on its own. Rows are consumed as an iterator: CSV and JSON stream any
number of rows; the table reads only the rows it shows (it needs them all to size its columns).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from typing import TextIO

NUMERIC = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
}
ELLIPSIS = "…"


def is_numeric(type_name: str) -> bool:
    return type_name in NUMERIC or type_name.startswith("DECIMAL")


# ---- JSON ---------------------------------------------------------------------------------------------


def json_value(value, type_name: str = ""):
    """A value as plain JSON data: NaN and infinities become null (JSON has neither), times ISO 8601
    text, blobs hex, and a JSON-typed column's text the document it holds."""
    if value is None:
        return None
    if type_name == "JSON" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return str(value)


def write_json(out: TextIO, columns: list[str], types: list[str], rows: Iterable[tuple], lines: bool = False) -> int:
    """A JSON array of objects (one per row), or with ``lines`` one object per line. Returns the count."""
    n = 0
    if not lines:
        out.write("[")
    for row in rows:
        record = {c: json_value(v, t) for c, t, v in zip(columns, types, row, strict=True)}
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
        if lines:
            out.write(text + "\n")
        else:
            out.write(("\n" if n == 0 else ",\n") + text)
        n += 1
    if not lines:
        out.write("\n]\n" if n else "]\n")
    return n


# ---- CSV ----------------------------------------------------------------------------------------------


def csv_value(value):
    """NULL is an empty field; lists and structs are their JSON text; floats keep full precision."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(json_value(value), ensure_ascii=False)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def write_csv(out: TextIO, columns: list[str], rows: Iterable[tuple]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    n = 0
    for row in rows:
        writer.writerow([csv_value(v) for v in row])
        n += 1
    return n


# ---- aligned table ------------------------------------------------------------------------------------

_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {9: "\\t", 10: "\\n", 13: "\\r", 127: "\\x7f"}


def char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


def truncate(text: str, width: int) -> tuple[str, bool]:
    """``text`` cut to at most ``width`` terminal columns, ending in an ellipsis when cut."""
    if width <= 0 or display_width(text) <= width:
        return text, False
    out, used = [], 0
    for ch in text:
        w = char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS, True


def cell_text(value, nested: bool = False) -> str:
    """A value as one line of text: control characters escaped; strings inside lists quoted (so a
    token's leading space shows); floats to 6 significant digits."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".6g")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if nested else value.translate(_CONTROL)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(cell_text(v, True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {cell_text(v, True)}" for k, v in value.items()) + "}"
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    return str(value)


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def write_table(
    out: TextIO,
    columns: list[str],
    types: list[str],
    rows: Iterator[tuple],
    max_width: int = 40,
    max_rows: int = 1000,
    footer: bool = True,
) -> tuple[int, bool, bool]:
    """An aligned table: numbers right-aligned, two spaces between columns, a dashed rule under the
    header, then (with ``footer``) a line saying how many rows and whether any were left out or any
    value was cut.

    ``max_width`` (terminal columns per value; 0: no limit) and ``max_rows`` (0: no limit).
    Returns (rows shown, more rows left out, values cut).
    """
    shown, more = [], False
    for row in rows:
        if max_rows and len(shown) == max_rows:
            more = True
            break
        shown.append(row)
    right = [is_numeric(t) for t in types]
    cut = False
    cells = []
    for row in shown:
        line = []
        for value in row:
            text, was_cut = truncate(cell_text(value), max_width)
            cut |= was_cut
            line.append(text)
        cells.append(line)
    header = [cell_text(c) for c in columns]
    widths = [max([display_width(h)] + [display_width(line[i]) for line in cells]) for i, h in enumerate(header)]
    out.write("  ".join(_pad(h, w, r) for h, w, r in zip(header, widths, right, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for line in cells:
        out.write("  ".join(_pad(t, w, r) for t, w, r in zip(line, widths, right, strict=True)).rstrip() + "\n")
    if not footer:
        return len(shown), more, cut
    note = f"({len(shown)} row{'s' if len(shown) != 1 else ''}"
    if more:
        note += " shown; more were left out: --max-rows 0 shows all"
    note += ")"
    if cut:
        note += (
            f" (values longer than {max_width} characters were cut, marked {ELLIPSIS}: --max-width 0 shows them whole)"
        )
    out.write(note + "\n")
    return len(shown), more, cut
