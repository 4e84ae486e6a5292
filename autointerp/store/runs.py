"""The ``runs`` table: one row per invocation of a stage, with its resolved configuration."""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass

import duckdb

from ..redact import redact


@dataclass
class RunRow:
    run_id: str
    config_hash: str
    status: str
    pid: int | None
    host: str | None
    started_at: object

    def is_alive_elsewhere(self) -> bool:
        """True when the process that started this run is still running on this host."""
        if self.status != "running" or self.pid is None or self.host != socket.gethostname():
            return False
        if self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def new_run_id(stage: str) -> str:
    return f"{stage}-{uuid.uuid4().hex[:12]}"


def stage_runs(con: duckdb.DuckDBPyConnection, stage: str) -> list[RunRow]:
    rows = con.execute(
        "SELECT run_id, config_hash, status, pid, host, started_at FROM runs WHERE stage = ? ORDER BY started_at",
        [stage],
    ).fetchall()
    return [RunRow(*r) for r in rows]


def start_run(con: duckdb.DuckDBPyConnection, run_id: str, stage: str, config: dict, config_hash: str) -> None:
    con.execute(
        "INSERT INTO runs (run_id, stage, config, config_hash, status, pid, host, started_at) "
        "VALUES (?, ?, ?, ?, 'running', ?, ?, now())",
        [
            run_id,
            stage,
            redact(json.dumps(config, sort_keys=True, default=str)),  # e.g. user info in --base-url
            config_hash,
            os.getpid(),
            socket.gethostname(),
        ],
    )


def fail_run(con: duckdb.DuckDBPyConnection, run_id: str, error: str) -> None:
    con.execute(
        "UPDATE runs SET status = 'failed', error = ?, finished_at = now() WHERE run_id = ?", [redact(error), run_id]
    )
