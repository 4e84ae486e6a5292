"""Insert many rows in one statement.

DuckDB runs ``executemany`` as one statement per row: 0.77 ms a row on this project's CI machine,
against 0.004 ms a row for the same rows handed over as one Arrow table. The score stage writes a
row per test context (hundreds per latent), so at the rate of a many-GPU run the per-row inserts
were the single writer's ceiling (bench/scale_llm.py, docs/scaling.md).
"""

from __future__ import annotations

import itertools

import pyarrow as pa

_names = itertools.count()


def insert_rows(con, table: str, columns: list[str], rows: list[list], now: str | None = None) -> None:
    """``INSERT INTO table (columns[, now]) VALUES ...`` for every row of ``rows`` (values in the order
    of ``columns``), with ``now`` (a column name) set to now(). Types follow the table: Arrow's
    inferred types are cast on insert."""
    if not rows:
        return
    try:
        data = pa.table({c: pa.array([row[i] for row in rows]) for i, c in enumerate(columns)})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # values Arrow cannot type: one row at a time
        marks = ", ".join(["?"] * len(columns) + (["now()"] if now else []))
        con.executemany(f"INSERT INTO {table} ({', '.join(columns + ([now] if now else []))}) VALUES ({marks})", rows)
        return
    name = f"_bulk_rows_{next(_names)}"
    con.register(name, data)
    try:
        select = ", ".join([f'"{c}"' for c in columns] + (["now()"] if now else []))
        con.execute(f"INSERT INTO {table} ({', '.join(columns + ([now] if now else []))}) SELECT {select} FROM {name}")
    finally:
        con.unregister(name)


class Replacements:
    """Rows that take the place of the stored rows with the same key, gathered over one transaction
    and written at its end with one DELETE and one INSERT per table (instead of a statement per row,
    or per score: ~20 ms a score on this machine, the single writer's ceiling; bench/scale_llm.py).
    A later ``replace`` of the same key in the same transaction wins."""

    def __init__(self, con):
        self.con = con
        self._tables: dict[str, tuple[tuple, tuple, str | None, dict]] = {}

    def replace(
        self,
        table: str,
        key_columns: list[str],
        columns: list[str],
        key: list,
        rows: list[list],
        now: str | None = None,
    ) -> None:
        """``rows`` (values in the order of ``columns``; may be empty) replace every stored row whose
        ``key_columns`` equal ``key``."""
        entry = self._tables.setdefault(table, (tuple(key_columns), tuple(columns), now, {}))
        if entry[:3] != (tuple(key_columns), tuple(columns), now):
            raise ValueError(f"replacements of {table} must all use the same key and columns")
        entry[3][tuple(key)] = list(rows)

    def flush(self) -> None:
        for table, (key_columns, columns, now, by_key) in self._tables.items():
            keys = list(by_key)
            names = ", ".join(f'"{c}"' for c in key_columns)
            values = ", ".join("unnest(?)" for _ in key_columns)
            self.con.execute(
                f"DELETE FROM {table} WHERE ({names}) IN (SELECT ({values}))",
                [[k[i] for k in keys] for i in range(len(key_columns))],
            )
            insert_rows(self.con, table, list(columns), [row for rows in by_key.values() for row in rows], now=now)
        self._tables.clear()
