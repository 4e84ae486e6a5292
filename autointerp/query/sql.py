"""``autointerp sql``: run SQL on a database and print the result as a table, CSV, JSON or JSON lines.

Read-only unless ``--write``: the file is opened read-only and the connection is sealed (no file system
access, configuration locked; see ``store.db.seal_read_only``), so a query cannot change this or any
other file however it is written. With ``--write`` the statements run in one transaction (all or
nothing; a query that leaves its own transaction open is refused) and the stored ``latent_summary`` is
refreshed afterwards if they changed what it is computed from.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import duckdb

from ..errors import AutointerpError
from ..store import summary
from . import render
from .api import Database, query_error

FORMATS = ("table", "csv", "json", "jsonl")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sql",
        help="query: run SQL on a database (read-only unless --write)",
        description="Run SQL on an autointerp database and print the result: an aligned table (long values cut "
        "to --max-width, said in the footer), CSV, a JSON array of objects or JSON lines. The views "
        "are documented in docs/schema.md; `latent_summary` has one row per latent with its "
        "statistics, latest explanation and scores. Read-only unless --write.",
        epilog='example: autointerp sql --db demo.duckdb "SELECT latent, explanation, detection_score FROM '
        'latent_summary WHERE detection_score > 0.7 ORDER BY fuzzing_score DESC LIMIT 20"',
    )
    parser.add_argument(
        "query", help="the SQL (several statements: the last one's result is printed); - reads it from standard input"
    )
    parser.add_argument("--db", required=True, help="DuckDB file written by autointerp")
    parser.add_argument("--format", default="table", choices=FORMATS, help="output format (default: table)")
    parser.add_argument(
        "--write",
        action="store_true",
        help="open the database for writing, so INSERT / UPDATE / DELETE / CREATE may change it",
    )
    parser.add_argument(
        "--max-width",
        type=int,
        default=40,
        metavar="N",
        help="table: cut values to N characters (0: never cut; default: 40)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=1000,
        metavar="N",
        help="table: show at most N rows (0: all; default: 1000); csv and json print every row",
    )
    return parser


def read_query(text: str) -> str:
    query = sys.stdin.read() if text == "-" else text
    if not query.strip():
        raise AutointerpError(
            "The query is empty.",
            "SQL text, or - to read it from standard input.",
            'e.g. autointerp sql --db demo.duckdb "SELECT * FROM latent_summary LIMIT 10"',
        )
    return query


def run(args: argparse.Namespace) -> int:
    if args.max_width < 0 or args.max_rows < 0:
        raise AutointerpError(
            f"--max-width {args.max_width} / --max-rows {args.max_rows}: negative.",
            "0 (no limit) or a positive number.",
        )
    query = read_query(args.query)
    with Database(args.db, read_only=not args.write) as db:
        if db.summary_is_live and "latent_summary" in query.lower():
            print(
                f"autointerp sql: note: the stored latent_summary of {db.path} is out of date (a run stopped "
                "before refreshing it), so it is computed from the tables now, which is slow on large "
                f'databases; `autointerp sql --write --db {db.path} "CHECKPOINT"` stores a fresh copy.',
                file=sys.stderr,
            )
        columns, types, rows = execute_write(db, query) if args.write else execute_read(db, query)
        out = sys.stdout
        if columns is None:
            out.write("OK\n")
        elif args.format == "table":
            render.write_table(out, columns, types, rows, args.max_width, args.max_rows)
        elif args.format == "csv":
            render.write_csv(out, columns, rows)
        else:
            render.write_json(out, columns, types, rows, lines=args.format == "jsonl")
    return 0


def _columns(cursor) -> tuple[list[str] | None, list[str]]:
    if cursor.description is None:
        return None, []
    return [d[0] for d in cursor.description], [str(d[1]) for d in cursor.description]


def _stream(cursor, db: Database, batch: int = 10_000) -> Iterator[tuple]:
    while True:
        try:
            chunk = cursor.fetchmany(batch)
        except duckdb.Error as exc:  # some errors surface only while rows are produced
            raise query_error(exc, db) from exc
        if not chunk:
            return
        yield from chunk


def execute_read(db: Database, query: str):
    try:
        cursor = db.con.execute(query)
    except duckdb.Error as exc:
        raise query_error(exc, db) from exc
    columns, types = _columns(cursor)
    return columns, types, (_stream(cursor, db) if columns is not None else iter(()))


def execute_write(db: Database, query: str):
    """All statements in one transaction (unless the query manages its own), then a summary refresh."""
    try:
        statements = db.con.extract_statements(query)
    except duckdb.Error as exc:
        raise query_error(exc, db) from exc
    own = not any(s.type == duckdb.StatementType.TRANSACTION for s in statements)
    if not own and _leaves_transaction_open(statements):
        raise _open_transaction_error("Nothing was run.")
    if own:
        db.con.execute("BEGIN TRANSACTION")
    try:
        cursor = db.con.execute(query)
        columns, types = _columns(cursor)
        rows = cursor.fetchall() if columns is not None else []
        if own:
            db.con.execute("COMMIT")
    except duckdb.Error as exc:
        if own:
            _rolled_back_open_transaction(db)  # a failed COMMIT (a full disk) has already ended it
        raise query_error(exc, db) from exc
    if not own and _rolled_back_open_transaction(db):
        raise _open_transaction_error("What the statements did after their last BEGIN has been rolled back.")
    summary.ensure_current(db.con)
    return columns, types, iter(rows)


def _rolled_back_open_transaction(db: Database) -> bool:
    """Roll back a transaction the query left open; whether there was one (closing would drop it silently)."""
    try:
        db.con.execute("ROLLBACK")
    except duckdb.TransactionException:
        return False
    return True


def _leaves_transaction_open(statements) -> bool:
    open_ = False
    for statement in statements:
        if statement.type == duckdb.StatementType.TRANSACTION:
            words = statement.query.split(maxsplit=1)
            keyword = words[0].rstrip(";").upper() if words else ""
            open_ = keyword in ("BEGIN", "START")
    return open_


def _open_transaction_error(outcome: str) -> AutointerpError:
    return AutointerpError(
        f"The statements leave a transaction open (a BEGIN without its COMMIT). {outcome}",
        "every BEGIN ended by COMMIT (or ROLLBACK), or no BEGIN at all (--write runs the statements in one "
        "transaction of its own).",
        'add "COMMIT;" at the end, or leave out the BEGIN.',
    )
