"""The ``runs`` table: one row per invocation of a stage, with its resolved configuration.

A run is ``running`` while its process works on it, then ``complete`` or ``failed`` (with the reason in
``error``). A process that dies without a word (SIGKILL, power loss, a disk too full to record the
failure) leaves its row ``running``; the next stage to open the database finds that the process is
gone and marks the row ``interrupted`` (``mark_dead_runs_interrupted``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass

import duckdb

from ..redact import redact
from . import process

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"


@dataclass
class RunRow:
    run_id: str
    config_hash: str
    status: str
    pid: int | None
    host: str | None
    started_at: object
    process_start: str | None = None

    def is_alive_elsewhere(self) -> bool:
        """True when this run is ``running`` and the process that started it still runs on this host and is
        not this process. The pid is checked together with the host and the process's start time, so a
        reused pid is not taken for the run's writer; a run of another host counts as not alive."""
        if self.status != "running" or self.pid is None or self.host is None:
            return False
        identity = process.ProcessIdentity(self.pid, self.host, self.process_start)
        if identity == process.current():
            return False
        return bool(process.is_alive(identity))


def new_run_id(stage: str) -> str:
    return f"{stage}-{uuid.uuid4().hex[:12]}"


_COLUMNS = "run_id, config_hash, status, pid, host, started_at, process_start"


def stage_runs(con: duckdb.DuckDBPyConnection, stage: str) -> list[RunRow]:
    rows = con.execute(f"SELECT {_COLUMNS} FROM runs WHERE stage = ? ORDER BY started_at", [stage]).fetchall()
    return [RunRow(*r) for r in rows]


def start_run(con: duckdb.DuckDBPyConnection, run_id: str, stage: str, config: dict, config_hash: str) -> None:
    me = process.current()
    con.execute(
        "INSERT INTO runs (run_id, stage, config, config_hash, status, pid, host, process_start, started_at) "
        "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, now())",
        [
            run_id,
            stage,
            redact(json.dumps(config, sort_keys=True, default=str)),  # e.g. user info in --base-url
            config_hash,
            me.pid,
            me.host,
            me.start,
        ],
    )


def failure_reason(exc: BaseException) -> str:
    """What a run's ``error`` says for the exception that ended it."""
    reason = getattr(exc, "run_reason", None)  # autointerp.signals.Terminated: "terminated (SIGTERM)"
    if reason:
        return reason
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, asyncio.CancelledError):  # cancelled with a message saying why, or by Ctrl-C
        return str(exc.args[0]) if exc.args and exc.args[0] else "cancelled (Ctrl-C or shutdown)"
    return f"{type(exc).__name__}: {exc}"


def fail_run(con: duckdb.DuckDBPyConnection, run_id: str, error: str) -> None:
    """Mark the run failed with ``error``. When even that cannot be written (a full disk, a database
    invalidated by an earlier write error), log it and return, so the exception that ended the run is the
    one that propagates; the row stays ``running`` until the next stage marks it ``interrupted``. A
    transaction the failure left open is rolled back first (closing would discard it anyway, and the
    failure with it)."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:  # none was open
        pass
    try:
        con.execute(
            "UPDATE runs SET status = 'failed', error = ?, finished_at = now() WHERE run_id = ?",
            [redact(error), run_id],
        )
    except duckdb.Error as exc:
        log.warning(
            "could not mark run %s failed (%s): %s; the next stage will mark it interrupted", run_id, error, exc
        )


def mark_dead_runs_interrupted(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Mark every ``running`` run whose process is gone as ``interrupted`` (finished_at: now, when it was
    noticed; error: why); return their run ids. Called by every stage when it starts, on a connection
    that can write.

    On this host a run's process is gone when no live process has its pid and start time. A run of
    another host is marked too: a read-write connection holds DuckDB's exclusive lock on the file, so
    no process on any host can have it open to write, and a run whose process cannot write is not
    running. Runs of this very process are left alone (an embedding program may run stages one after
    another on one database; each ends its own runs)."""
    me = process.current()
    stale = []
    for run_id, pid, host, start in con.execute(
        "SELECT run_id, pid, host, process_start FROM runs WHERE status = 'running'"
    ).fetchall():
        identity = process.ProcessIdentity(pid, host, start)
        if pid is None or host is None:
            stale.append((run_id, "its process was not recorded"))
        elif identity == me:
            continue
        elif host != me.host:
            stale.append((run_id, f"process {pid} on host {host} does not hold the database open"))
        elif not process.is_alive(identity):
            stale.append((run_id, f"process {pid} ended without finishing the run (killed or crashed)"))
    for run_id, why in stale:
        con.execute(
            "UPDATE runs SET status = ?, error = ?, finished_at = now() WHERE run_id = ? AND status = 'running'",
            [INTERRUPTED, f"interrupted: {why}", run_id],
        )
        log.info("run %s was left running by a process that is gone; marked interrupted", run_id)
    return [run_id for run_id, _ in stale]


def complete_run(con: duckdb.DuckDBPyConnection, run_id: str, summary: dict) -> None:
    """Mark a run complete, with its summary (counts, seconds, tokens) as JSON."""
    con.execute(
        "UPDATE runs SET status = 'complete', finished_at = now(), summary = ? WHERE run_id = ?",
        [json.dumps(summary), run_id],
    )


def latest_collect_config(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The stored configuration (with its ``resolved`` facts) of the latest complete collect, or None
    for a database without one (imported latents)."""
    row = con.execute(
        "SELECT config FROM runs WHERE stage = 'collect' AND status = 'complete' ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    return json.loads(row[0]) if row else None


def current_collect(con: duckdb.DuckDBPyConnection) -> str:
    """The run id of the collect whose results the database holds: the latest complete one ('' when none).
    ``collect --overwrite`` replaces it, so explanations and scores keyed on it are never taken for those
    of the earlier collect."""
    row = con.execute(
        "SELECT run_id FROM runs WHERE stage = 'collect' AND status = 'complete' ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else ""
