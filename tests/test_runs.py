"""Run bookkeeping: a run never claims a live writer that is not there.

Process identities (a reused pid is not the run's process), runs left ``running`` by a process that is
gone become ``interrupted`` when the next stage starts, SIGTERM marks a run ``failed``, a run that cannot
even record its failure (a full disk) is covered by the next start, and explain and score runs killed
or terminated mid-run through the CLI, against a real HTTP server, all end in a final state.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from autointerp.errors import AutointerpError
from autointerp.signals import TERMINATED, Terminated, sigterm_raises
from autointerp.store import process, runs
from autointerp.store.db import connect

from .conftest import SMALL, query, with_explanations

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"complete", "failed", "interrupted"}


@pytest.fixture
def sleeper():
    """A live child process that is not this one (its pid stands in for a reused pid)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "runs.duckdb"
    connect(path).close()
    return path


def insert_running(con, run_id: str, stage: str, pid, host, start) -> None:
    con.execute(
        "INSERT INTO runs (run_id, stage, config, config_hash, status, pid, host, process_start, started_at) "
        "VALUES (?, ?, '{}', 'h', 'running', ?, ?, ?, now())",
        [run_id, stage, pid, host, start],
    )


def statuses(con) -> dict[str, tuple[str, str | None, bool]]:
    return {
        r[0]: (r[1], r[2], r[3] is not None)
        for r in con.execute("SELECT run_id, status, error, finished_at FROM runs").fetchall()
    }


def test_process_identity_tells_a_reused_pid_from_the_process(sleeper):
    me = process.current()
    assert me.pid == os.getpid() and me.start is not None and process.is_alive(me) is True
    child = process.ProcessIdentity(sleeper.pid, me.host, process.start_token(sleeper.pid))
    assert process.is_alive(child) is True
    # The same pid with another start time is another process: the run's own process is gone.
    assert process.is_alive(process.ProcessIdentity(sleeper.pid, me.host, child.start + "0")) is False
    assert process.is_alive(process.ProcessIdentity(sleeper.pid, "another-host", child.start)) is None
    sleeper.kill()
    sleeper.wait()
    assert process.start_token(sleeper.pid) is None and process.is_alive(child) is False


def test_runs_of_gone_processes_become_interrupted(db, sleeper):
    me = process.current()
    con = connect(db)
    try:
        insert_running(con, "mine", "explain", me.pid, me.host, me.start)
        insert_running(con, "live", "score", sleeper.pid, me.host, process.start_token(sleeper.pid))
        insert_running(con, "reused-pid", "score", sleeper.pid, me.host, "other-boot/1")
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
        insert_running(con, "dead", "explain", int(gone.stdout), me.host, "other-boot/2")
        insert_running(con, "other-host", "collect", 1, "not-" + me.host, None)
        insert_running(con, "unrecorded", "collect", None, None, None)
        runs.start_run(con, "finished", "collect", {}, "h")
        con.execute("UPDATE runs SET status = 'complete' WHERE run_id = 'finished'")
        marked = runs.mark_dead_runs_interrupted(con)
        got = statuses(con)
    finally:
        con.close()
    assert sorted(marked) == ["dead", "other-host", "reused-pid", "unrecorded"]
    assert got["mine"] == ("running", None, False) and got["live"] == ("running", None, False)
    assert got["finished"][0] == "complete"
    for run_id in marked:
        status, error, finished = got[run_id]
        assert status == "interrupted" and error.startswith("interrupted: ") and finished
    assert "killed or crashed" in got["dead"][1] and "another" not in got["dead"][1]


def test_collect_is_not_refused_by_a_stale_row_whose_pid_was_reused(db, sleeper):
    from autointerp.collect.stage import check_earlier

    con = connect(db)
    try:
        me = process.current()
        insert_running(con, "stale", "collect", sleeper.pid, me.host, "other-boot/1")
        earlier, done = check_earlier(con, "identity", overwrite=False)
        assert done is None and [r.run_id for r in earlier] == ["stale"] and earlier[0].status == "interrupted"
        # The very process, still running, is another writer: refused.
        insert_running(con, "writer", "collect", sleeper.pid, me.host, process.start_token(sleeper.pid))
        with pytest.raises(AutointerpError, match="Another collect"):
            check_earlier(con, "identity", overwrite=False)
    finally:
        con.close()


def test_a_run_that_cannot_record_its_failure_is_interrupted_at_the_next_start(db):
    """A disk too full to write even the failure (here: a file-size limit of one byte, which fails every
    write as a full disk does): the stage's own error propagates, and the next start marks the run."""
    script = textwrap.dedent(
        f"""
        import os, resource, signal
        from autointerp.store import runs
        from autointerp.store.db import connect
        con = connect({str(db)!r})
        runs.start_run(con, "full-disk", "score", {{}}, "h")
        con.execute("CHECKPOINT")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))
        try:
            con.execute("CREATE TABLE filler AS SELECT repeat('x', 1000) AS s FROM range(10000)")
        except Exception as exc:
            runs.fail_run(con, "full-disk", runs.failure_reason(exc))
            raise
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True
    )
    stderr = child.stderr.decode()
    assert child.returncode == 1 and "File too large" in stderr.splitlines()[-1], stderr[-2000:]
    assert "could not mark run full-disk failed" in stderr
    assert query(db, "SELECT status FROM runs") == [("running",)]
    con = connect(db)
    try:
        assert runs.mark_dead_runs_interrupted(con) == ["full-disk"]
        assert statuses(con)["full-disk"][0] == "interrupted"
    finally:
        con.close()


def test_a_failure_inside_an_open_transaction_is_recorded(db):
    con = connect(db)
    runs.start_run(con, "r", "collect", {}, "h")
    con.execute("BEGIN TRANSACTION")
    con.execute("CREATE TABLE half_written AS SELECT 1 AS x")
    runs.fail_run(con, "r", "ValueError: broken mid-write")
    con.close()
    assert query(db, "SELECT status, error FROM runs") == [("failed", "ValueError: broken mid-write")]


def test_failure_reasons():
    assert runs.failure_reason(Terminated()) == TERMINATED
    assert runs.failure_reason(KeyboardInterrupt()) == "interrupted (Ctrl-C)"
    assert runs.failure_reason(asyncio.CancelledError(TERMINATED)) == TERMINATED
    assert runs.failure_reason(ValueError("bad")) == "ValueError: bad"


def test_sigterm_raises_in_plain_code_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        with sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_cancels_the_tasks_of_a_running_loop_then_raises():
    seen = []

    async def stage():
        os.kill(os.getpid(), signal.SIGTERM)
        try:
            await asyncio.sleep(5)
        except BaseException as exc:  # the stage's except-path: it records why the run ended
            seen.append(runs.failure_reason(exc))
            raise

    started = time.monotonic()
    with pytest.raises(Terminated):
        with sigterm_raises():
            asyncio.run(stage())
    assert seen == [TERMINATED] and time.monotonic() - started < 4


# --- explain and score killed or terminated through the CLI, against a real HTTP server ----------------


def cli(stage: str, db: Path, base_url: str, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "autointerp.cli", stage, "--db", str(db), "--backend", "openai"]
    args += ["--model", "scripted", "--base-url", base_url, "--max-in-flight", "1", "--quiet", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop_mid_run(child: subprocess.Popen, server, signum: int, answers: int = 2) -> int:
    """Send ``signum`` once the server has answered ``answers`` more requests; the child's exit status."""
    first = server.served
    deadline = time.monotonic() + 120
    while server.served < first + answers and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    try:
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        child.send_signal(signum)
        return child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.slow  # the database comes from a collect on the embedded model
def test_killed_and_terminated_runs_end_in_a_final_state(collected_db, tmp_path):
    from autointerp.config import ExplainConfig
    from autointerp.explain.stage import explain

    from .answering_backend import AnsweringBackend
    from .openai_server import ModelServer

    db = tmp_path / "killed.duckdb"
    scored = with_explanations(collected_db, db, ["names of rivers", "dates", "units", "the word 'the'"])
    latents = ",".join(str(r[0]) for r in query(db, "SELECT latent FROM latents WHERE status = 'ok' LIMIT 12"))
    explain_args = ["--latents", latents, "--n-examples", "3", "--max-tokens", "12"]
    score_args = ["--latents", ",".join(map(str, scored)), "--explanations", "imported", "--batch-size", "1"]
    score_args += ["--max-tokens", "16"]
    latest = "SELECT stage, status, error FROM runs ORDER BY started_at DESC LIMIT 1"
    with ModelServer(AnsweringBackend(), delay=0.2) as server:
        for stage, args in [("explain", explain_args), ("score", score_args)]:
            assert stop_mid_run(cli(stage, db, server.base_url, *args), server, signal.SIGKILL) == -signal.SIGKILL
            assert query(db, latest) == [(stage, "running", None)]  # until the next stage starts
        for stage, args in [("explain", explain_args), ("score", score_args)]:
            assert stop_mid_run(cli(stage, db, server.base_url, *args), server, signal.SIGTERM) == 143
            assert query(db, latest) == [(stage, "failed", TERMINATED)]  # recorded by the run itself
        config = ExplainConfig(backend="openai", model="scripted", base_url=server.base_url, latents=latents)
        asyncio.run(explain(config, db, progress=False))
    after = query(db, "SELECT stage, status FROM runs WHERE stage <> 'collect' ORDER BY started_at")
    assert after == [
        ("explain", "interrupted"),
        ("score", "interrupted"),
        ("explain", "failed"),
        ("score", "failed"),
        ("explain", "complete"),
    ]
    assert all(st in FINAL for (st,) in query(db, "SELECT status FROM runs"))


@pytest.mark.slow  # the database comes from a collect on the embedded model
def test_collect_runs_despite_a_stale_row_whose_pid_is_live(collected_db, tmp_path, sleeper):
    """The CLI's collect, on a database whose earlier collect row names a live process that is not its
    writer (a reused pid), does its work (here: finds the identical collect complete) instead of refusing."""
    from autointerp.cli import main

    db = tmp_path / "stale.duckdb"
    shutil.copy(collected_db, db)
    con = duckdb.connect(str(db))
    try:
        me = process.current()
        con.execute(
            "INSERT INTO runs (run_id, stage, config, config_hash, status, pid, host, process_start, started_at) "
            "VALUES ('stale', 'collect', '{}', 'h', 'running', ?, ?, 'other-boot/1', now() - INTERVAL 1 HOUR)",
            [sleeper.pid, me.host],
        )
    finally:
        con.close()
    args = ["collect", "--db", str(db), "--quiet"]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    assert main(args) == 0
    assert query(db, "SELECT status FROM runs WHERE run_id = 'stale'") == [("interrupted",)]
