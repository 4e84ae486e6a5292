"""Resume under kill, for score: SIGKILL `autointerp score` at random moments, then let a last run finish,
and check that nothing was paid for twice or stored twice (issue 13, item 5 and its acceptance).

On a copy of a collect database, a few latents get explanations (as an import adds them); `autointerp
score` (detection and fuzzing, one excerpt per prompt) runs against a real HTTP server on 127.0.0.1
that answers at once in the parseable form (tests/answering_backend.py, behind tests/openai_server.py).
Each of ``--kills`` runs is killed with SIGKILL after a random number of answers (seeded); a last run
then goes to completion. The checks:

- no request hash answered successfully twice: ``SELECT request_hash, count(*) FROM llm_calls WHERE
  error IS NULL AND purpose <> 'explain' GROUP BY 1 HAVING count(*) > 1`` is empty;
- no duplicate rows in ``score_rows`` or ``score_example_rows``;
- every run row in a final state (``complete``, ``failed``, ``interrupted``);
- the last run exits 0 and every (latent, scorer) has its score.

    python bench/resume_kill.py [--db COLLECT_DB] [--kills 5] [--seed 0] [--latents 6] [--delay 0.02]

Without ``--db`` it first collects a small database on the embedded model. Prints progress lines, then
one JSON object on the last line; ``"ok"`` says whether every check held (exit status 0 if so, else 1).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from tests.answering_backend import AnsweringBackend  # noqa: E402
from tests.openai_server import ModelServer  # noqa: E402

SCORERS = "detection,fuzzing"
DUPLICATE_HASHES = (
    "SELECT request_hash, count(*) FROM llm_calls WHERE error IS NULL AND purpose <> 'explain' "
    "GROUP BY 1 HAVING count(*) > 1"
)
DUPLICATE_SCORES = (
    "SELECT count(*) FROM (SELECT latent, explanation_id, scorer, config_hash, control FROM score_rows "
    "GROUP BY ALL HAVING count(*) > 1)"
)
DUPLICATE_EXAMPLES = (
    "SELECT count(*) FROM (SELECT latent, explanation_id, scorer, config_hash, control, context_id, variant, "
    "marked FROM score_example_rows GROUP BY ALL HAVING count(*) > 1)"
)
NOT_FINAL = "SELECT count(*) FROM runs WHERE status NOT IN ('complete', 'failed', 'interrupted')"


def small_collect(folder: Path) -> Path:
    """A collect on the embedded model at the test suite's small sizes."""
    from autointerp.cli import main
    from tests.conftest import SMALL

    db = folder / "collect.duckdb"
    args = ["collect", "--db", str(db), "--quiet"]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    if main(args) != 0:
        raise SystemExit("the collect failed")
    return db


def with_explanations(source: Path, db: Path, n: int) -> list[int]:
    """Copy ``source`` to ``db`` and give its first ``n`` ok latents an explanation, as an import would."""
    shutil.copy(source, db)
    con = duckdb.connect(str(db))
    try:
        latents = [
            r[0]
            for r in con.execute(
                "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT ?", [n]
            ).fetchall()
        ]
        for latent in latents:
            con.execute(
                "INSERT INTO explanation_rows VALUES (?, 'imported', 'import-bench', 'default', 'bench', "
                "'explained', ?, NULL, NULL, NULL, 0, 0, 0, now())",
                [latent, f"explanation {latent}"],
            )
    finally:
        con.close()
    return latents


def score_command(db: Path, base_url: str, latents: list[int]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "autointerp.cli",
        "score",
        "--db",
        str(db),
        "--backend",
        "openai",
        "--model",
        "scripted",
        "--base-url",
        base_url,
        "--scorers",
        SCORERS,
        "--latents",
        ",".join(map(str, latents)),
        "--batch-size",
        "1",
        "--max-tokens",
        "16",
        "--max-in-flight",
        "4",
        "--quiet",
    ]


def run_and_kill(command: list[str], server: ModelServer, answers: int, limit: float = 120.0) -> dict:
    """Run ``command``; SIGKILL it once the server has answered ``answers`` more requests. What happened."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first, deadline = server.served, time.monotonic() + limit
    try:
        while server.served < first + answers and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        killed = child.poll() is None
        if killed:
            child.send_signal(signal.SIGKILL)
        status = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read().decode()
    child.stderr.close()
    return {"killed": killed, "after_answers": server.served - first, "status": status, "stderr": stderr[-2000:]}


def check(db: Path, latents: list[int]) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        duplicates = con.execute(DUPLICATE_HASHES).fetchall()
        scored = con.execute(
            "SELECT count(DISTINCT (latent, scorer)) FROM score_rows WHERE latent IN (SELECT unnest(?)) "
            "AND scorer NOT LIKE 'cue:%'",
            [latents],
        ).fetchone()[0]
        return {
            "duplicate_answered_hashes": len(duplicates),
            "extra_answered_calls": sum(c - 1 for _, c in duplicates),
            "duplicate_score_rows": con.execute(DUPLICATE_SCORES).fetchone()[0],
            "duplicate_score_example_rows": con.execute(DUPLICATE_EXAMPLES).fetchone()[0],
            "runs_not_final": con.execute(NOT_FINAL).fetchone()[0],
            "run_statuses": dict(con.execute("SELECT status, count(*) FROM runs GROUP BY 1 ORDER BY 1").fetchall()),
            "scores": scored,
            "scores_expected": len(latents) * len(SCORERS.split(",")),
            "answered_calls_logged": con.execute(
                "SELECT count(*) FROM llm_calls WHERE error IS NULL AND purpose <> 'explain'"
            ).fetchone()[0],
        }
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="a collect database (copied, never changed); default: collect a small one")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latents", type=int, default=6, help="latents to score")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the server takes per answer")
    parser.add_argument("--max-answers", type=int, default=10, help="a kill comes after 1 to this many answers")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = Path(args.db) if args.db else small_collect(folder)
        db = folder / "resume.duckdb"
        latents = with_explanations(source, db, args.latents)
        runs = []
        with ModelServer(AnsweringBackend(), delay=args.delay) as server:
            server._httpd.handle_error = lambda request, address: None  # a killed client resets its socket
            command = score_command(db, server.base_url, latents)
            for k in range(args.kills):
                run = run_and_kill(command, server, rng.randint(1, args.max_answers))
                print(f"run {k + 1}: killed={run['killed']} after {run['after_answers']} answers", file=sys.stderr)
                runs.append(run)
            last = run_and_kill(command, server, answers=10**9)
            served = server.served
        result = check(db, latents)
    ok = (
        last["status"] == 0
        and result["duplicate_answered_hashes"] == 0
        and result["duplicate_score_rows"] == 0
        and result["duplicate_score_example_rows"] == 0
        and result["runs_not_final"] == 0
        and result["scores"] == result["scores_expected"]
    )
    summary = {
        "ok": ok,
        "seed": args.seed,
        "kills": sum(r["killed"] for r in runs),
        "killed_after_answers": [r["after_answers"] for r in runs],
        "last_run_status": last["status"],
        "last_run_stderr": "" if last["status"] == 0 else last["stderr"],
        "answers_served": served,
        **result,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
