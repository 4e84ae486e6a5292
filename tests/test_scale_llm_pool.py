"""`--executor ray` for explain and score: Ray workers serve the LLM calls, the driver stores everything.

A real local Ray cluster (``ray.init(num_cpus=2)``, two worker actors) and two real OpenAI-protocol
HTTP servers on 127.0.0.1 (tests/openai_server.py) with a fixed answer behind them: these tests are about
which worker and endpoint serve which latent, that each latent is done once, and what a worker's death
costs, not about answers. Workers are killed for real (SIGKILL of the actor's process) by a server's
request handler while requests are in flight.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict

import pytest

from autointerp.cli import main
from autointerp.errors import AutointerpError
from autointerp.llm.base import Backend, Completion
from autointerp.scale import llm_pool

from .conftest import query, with_explanations
from .openai_server import FaultPlan, ModelServer

ray = pytest.importorskip("ray")

KEY_ENV = "AUTOINTERP_RAY_TEST_KEY"
SECRET = "sk-planted-ray-key-51Zq"


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """One local Ray instance for the module. The key is in the environment before Ray starts, so the
    worker processes inherit it, as they would from a node where it was exported before `ray start`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, SECRET)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


class Answer(Backend):
    """The same answer to every prompt."""

    kind = model = "fixed"

    def __init__(self, text: str):
        self.text = text

    async def generate(self, messages, options):
        return Completion(self.text, 11, 4)


EXPLAIN = "[EXPLANATION]: the word 'the'"
DETECT = "[ANSWER]: 1"  # with --batch-size 1, one readable digit per prompt


class KillWorker(FaultPlan):
    """Answers every request; when the ``after``-th arrives, first kills (SIGKILL) the process of the Ray
    worker ``worker`` of the running pool: the one that sends this server its requests."""

    def __init__(self, worker: int, after: int):
        super().__init__()
        self.worker = worker
        self.after = after
        self.killed_at: float | None = None
        self.pid: int | None = None

    def next_fault(self, key: str) -> str:
        fault = super().next_fault(key)
        with self.lock:
            if len(self.arrivals) == self.after and self.killed_at is None:
                self.pid = worker_pid(self.worker)
                os.kill(self.pid, signal.SIGKILL)
                self.killed_at = time.monotonic()
        return fault


def worker_pid(index: int) -> int:
    """The pid of live worker ``index``, found through its actor name (autointerp-llm-<run tag>-<index>)."""
    for name in ray.util.list_named_actors():
        if name.startswith("autointerp-llm-") and name.endswith(f"-{index}"):
            try:
                return ray.get(ray.get_actor(name).pid.remote(), timeout=10)
            except (ray.exceptions.RayActorError, ValueError):
                continue  # an earlier run's worker on its way out
    raise AssertionError(f"no live Ray worker {index}")


def request_key(messages: list[dict]) -> str:
    """The key the test server files a request under (tests/openai_server.py)."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


def ok_keys(server: ModelServer) -> set[str]:
    return {a[1] for a in server.plan.arrivals}


def calls(db) -> list[tuple]:
    """(call_id, item, attempt, error, server key, run_id) of every logged call, in order."""
    return [
        (cid, item, attempt, error, request_key(json.loads(messages)), run_id)
        for cid, item, attempt, error, messages, run_id in query(
            db, "SELECT call_id, item, attempt, error, messages, run_id FROM llm_calls ORDER BY call_id"
        )
    ]


def explain_args(db, a, b, *extra) -> list[str]:
    return [
        "explain",
        "--db",
        str(db),
        "--quiet",
        "--backend",
        "openai",
        "--model",
        "fixed",
        "--base-url",
        a.base_url,
        "--base-url",
        b.base_url,
        "--executor",
        "ray",
        "--workers",
        "2",
        "--api-key-env",
        KEY_ENV,
        "--n-examples",
        "3",
        *extra,
    ]


def ok_latents(db, lo: int, hi: int) -> list[int]:
    return [
        r[0]
        for r in query(
            db, "SELECT latent FROM latents WHERE status = 'ok' AND latent BETWEEN ? AND ? ORDER BY latent", [lo, hi]
        )
    ]


def assert_each_latent_once(db, latents: list[int]) -> None:
    """One explanation per latent, from exactly one successful call (none answered twice)."""
    rows = query(db, "SELECT latent, status FROM explanations ORDER BY latent")
    assert rows == [(lat, "explained") for lat in latents]
    answered = Counter(item for _, item, _, error, _, _ in calls(db) if error is None)
    assert answered == {f"latent {lat}": 1 for lat in latents}


@pytest.mark.slow
def test_explain_over_two_workers_and_two_endpoints(collected_db, tmp_path):
    db = tmp_path / "explain.duckdb"
    shutil.copy(collected_db, db)
    latents = ok_latents(db, 0, 39)
    with ModelServer(Answer(EXPLAIN), delay=0.02) as a, ModelServer(Answer(EXPLAIN), delay=0.02) as b:
        assert main(explain_args(db, a, b, "--latents", "0-39", "--max-in-flight", "16")) == 0
    assert_each_latent_once(db, latents)
    assert a.served > 0 and b.served > 0 and a.served + b.served == len(latents)  # no call sent twice
    # Worker 0 has endpoint A, worker 1 endpoint B; a shard (2 latents: 16 in flight / (4 x 2 workers))
    # is owned by one worker, so its latents all went to one server.
    size = llm_pool.shard_latents(16, 2)
    server_of = {key: name for name, srv in (("A", a), ("B", b)) for key in ok_keys(srv)}
    by_shard = defaultdict(set)
    for _, item, _, _, key, _ in calls(db):
        by_shard[int(item.split()[1]) // size].add(server_of[key])
    assert len(by_shard) == len({lat // size for lat in latents}) and all(len(s) == 1 for s in by_shard.values())
    assert {next(iter(s)) for s in by_shard.values()} == {"A", "B"}
    # Each worker read the key from its own environment; it is stored nowhere.
    assert set(a.authorization) == set(b.authorization) == {f"Bearer {SECRET}"}
    (config,) = query(db, "SELECT config FROM runs WHERE stage = 'explain'")[0]
    resolved = json.loads(config)["resolved"]
    assert resolved["executor"] == "ray" and resolved["workers"] == 2 and resolved["backend"] == "openai"
    assert resolved["worker_endpoints"] == [a.base_url, b.base_url]
    assert SECRET not in config and not query(
        db, "SELECT 1 FROM llm_calls WHERE messages LIKE ? OR response LIKE ?", [f"%{SECRET}%"] * 2
    )


@pytest.mark.slow
def test_score_over_two_workers_keeps_each_latent_on_one_worker(collected_db, tmp_path):
    db = tmp_path / "score.duckdb"
    # Distinct explanations make every prompt distinct (latents share random test excerpts).
    latents = with_explanations(collected_db, db, [f"the word 'the', case {i}" for i in range(8)])
    with ModelServer(Answer(DETECT), delay=0.02) as a, ModelServer(Answer(DETECT), delay=0.02) as b:
        code = main(
            [
                "score",
                "--db",
                str(db),
                "--quiet",
                "--backend",
                "openai",
                "--model",
                "fixed",
                "--base-url",
                a.base_url,
                "--base-url",
                b.base_url,
                "--executor",
                "ray",
                "--workers",
                "2",
                "--api-key-env",
                KEY_ENV,
                "--scorers",
                "detection",
                "--batch-size",
                "1",
                "--max-in-flight",
                "16",
            ]
        )
    assert code == 0
    rows = query(
        db,
        "SELECT latent, scorer, status, n_examples, n_calls FROM scores WHERE scorer NOT LIKE 'cue:%' ORDER BY latent",
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [(lat, "detection", "scored") for lat in latents]
    tests = dict(query(db, "SELECT latent, count(*) FROM examples WHERE split = 'test' GROUP BY latent"))
    assert all(n == n_calls == tests[lat] for lat, _, _, n, n_calls in rows)
    logged = calls(db)
    assert all(error is None for _, _, _, error, _, _ in logged)
    assert len(logged) == a.served + b.served == sum(tests[lat] for lat in latents)  # every batch once
    assert a.served > 0 and b.served > 0
    # All of a latent's prompts (its explanation is their shared prefix) went to the same worker.
    server_of = {key: name for name, srv in (("A", a), ("B", b)) for key in ok_keys(srv)}
    per_latent = defaultdict(set)
    for _, item, _, _, key, _ in logged:
        per_latent[int(item.split()[1])].add(server_of[key])
    assert sorted(per_latent) == latents and all(len(s) == 1 for s in per_latent.values())
    (config,) = query(db, "SELECT config FROM runs WHERE stage = 'score'")[0]
    assert json.loads(config)["resolved"]["executor"] == "ray" and SECRET not in config


@pytest.mark.slow
def test_a_killed_worker_loses_only_its_requests_in_flight(collected_db, tmp_path):
    db = tmp_path / "killed.duckdb"
    shutil.copy(collected_db, db)
    latents = ok_latents(db, 0, 59)
    # Worker 0 is the one with endpoint A. A's first few requests arrive at once; by its 10th it has
    # answered some, and a few more are in flight.
    plan = KillWorker(worker=0, after=10)
    with ModelServer(Answer(EXPLAIN), plan, delay=0.3) as a, ModelServer(Answer(EXPLAIN), delay=0.3) as b:
        code = main(explain_args(db, a, b, "--latents", "0-59", "--max-in-flight", "8", "--backoff-base", "0.01"))
    assert code == 0 and plan.killed_at is not None
    assert_each_latent_once(db, latents)
    assert query(db, "SELECT status FROM runs WHERE stage = 'explain'") == [("complete",)]
    logged = calls(db)
    b_keys = ok_keys(b)
    # The requests worker 0 had in flight (at least the one whose arrival killed it) failed, naming it...
    lost = [(cid, item, attempt, error) for cid, item, attempt, error, _, _ in logged if error]
    assert lost and all(error.startswith("TransientError: Ray worker 0 died") for *_, error in lost)
    assert len(lost) <= 8  # no more than were in flight
    # ...and were retried on worker 1, i.e. at endpoint B.
    for _cid, item, attempt, _ in lost:
        retry = [(k, at) for c, it, at, err, k, _ in logged if it == item and err is None]
        assert len(retry) == 1 and retry[0][0] in b_keys and retry[0][1] > attempt
    # A heard nothing more once its worker was dead; B served everything after, including the
    # shards worker 0 owned. A's answers that reached the driver before the kill were kept.
    assert all(t <= plan.killed_at + 1.0 for t, *_ in plan.arrivals)
    # (a lost request reached A, and its retry B: its answer came from B)
    via_a = [int(item.split()[1]) for _, item, _, err, k, _ in logged if err is None and k not in b_keys]
    via_b = [int(item.split()[1]) for _, item, _, err, k, _ in logged if err is None and k in b_keys]
    assert via_a and len(via_a) + len(via_b) == len(latents)
    assert max(via_b) > max(via_a) and sum(lat > max(via_a) for lat in via_b) > 10
    lost_latents = {int(item.split()[1]) for _, item, _, _ in lost}
    assert lost_latents <= set(via_b) and not lost_latents & set(via_a)
    with pytest.raises(ProcessLookupError):
        os.kill(plan.pid, 0)


@pytest.mark.slow
def test_a_run_whose_workers_all_died_resumes_without_redoing_done_latents(collected_db, tmp_path, capsys):
    db = tmp_path / "resume.duckdb"
    shutil.copy(collected_db, db)
    latents = ok_latents(db, 0, 59)
    plans = KillWorker(worker=0, after=3), KillWorker(worker=1, after=12)  # worker 1 answers a few first
    with ModelServer(Answer(EXPLAIN), plans[0], delay=0.2) as a, ModelServer(Answer(EXPLAIN), plans[1], delay=0.2) as b:
        code = main(explain_args(db, a, b, "--latents", "0-59", "--max-in-flight", "8", "--backoff-base", "0.01"))
    assert code == 2 and all(p.killed_at is not None for p in plans)
    err = capsys.readouterr().err
    assert "Every Ray worker of the run has died" in err and "rerun the same command" in err
    ((status, error),) = query(db, "SELECT status, error FROM runs WHERE stage = 'explain'")
    assert status == "failed" and "Every Ray worker" in error
    first = query(db, "SELECT latent FROM explanations")
    assert first and len(first) < len(latents)  # stopped part-way; what finished is stored
    answered_before = {key for _, _, _, error, key, _ in calls(db) if error is None}

    with ModelServer(Answer(EXPLAIN), delay=0.02) as a2, ModelServer(Answer(EXPLAIN), delay=0.02) as b2:
        assert main(explain_args(db, a2, b2, "--latents", "0-59", "--max-in-flight", "8")) == 0
        sent_again = ok_keys(a2) | ok_keys(b2)
    assert_each_latent_once(db, latents)
    assert not sent_again & answered_before  # nothing answered in the first run was asked again
    assert a2.served + b2.served == len(latents) - len(answered_before)
    kept = query(db, "SELECT count(*) FROM explanation_rows e JOIN runs r USING (run_id) WHERE r.status = 'failed'")
    assert kept == [(len(first),)]  # the first run's explanations were kept, not redone


def test_endpoints_are_dealt_to_workers_and_shared_caps_split():
    assert llm_pool.deal_endpoints("http://a/v1,http://b/v1@4,http://c/v1", 2) == [
        "http://a/v1,http://c/v1",
        "http://b/v1@4",
    ]
    assert llm_pool.deal_endpoints("http://a/v1@5,http://b/v1", 4) == [
        "http://a/v1@3",
        "http://b/v1",
        "http://a/v1@2",
        "http://b/v1",
    ]
    assert llm_pool.deal_endpoints("", 3) == ["", "", ""]
    with pytest.raises(AutointerpError, match="shared by 3 Ray workers"):
        llm_pool.deal_endpoints("http://a/v1@2", 3)
    assert llm_pool.shard_latents(8, 2) == 1 and llm_pool.shard_latents(4096, 4) == llm_pool.SHARD_LATENTS


@pytest.mark.slow
def test_an_unreachable_ray_address_fails_at_once(collected_db, tmp_path):
    db = tmp_path / "unreachable.duckdb"
    shutil.copy(collected_db, db)
    before = query(db, "SELECT count(*) FROM runs")
    start = time.monotonic()
    # A fresh process: this one's Ray connection would be kept and the address ignored.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from autointerp.cli import main; sys.exit(main(sys.argv[1:]))",
            "explain",
            "--db",
            str(db),
            "--quiet",
            "--backend",
            "openai",
            "--model",
            "m",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--executor",
            "ray",
            "--ray-address",
            "127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Nothing answers at --ray-address 127.0.0.1:1" in done.stderr and "ray start --head" in done.stderr
    assert time.monotonic() - start < 60
    assert query(db, "SELECT count(*) FROM runs") == before  # no run started, nothing stored


@pytest.mark.slow
def test_each_worker_loads_its_own_in_process_model(collected_db, tmp_path):
    """--backend local over 2 workers: each worker process loads the embedded model itself (the path an
    in-process vLLM per GPU takes) and sends the local run's requests. (Answers are not compared: the
    workers batch other requests together than one process does, and bf16 may round differently.)"""
    ray_db, local_db = tmp_path / "ray.duckdb", tmp_path / "local.duckdb"
    shutil.copy(collected_db, ray_db)
    shutil.copy(collected_db, local_db)
    latents = ok_latents(ray_db, 0, 2000)[:4]
    spec = ",".join(map(str, latents))
    common = ["explain", "--quiet", "--latents", spec, "--max-tokens", "24"]
    assert main([*common, "--db", str(ray_db), "--executor", "ray", "--workers", "2"]) == 0
    assert main([*common, "--db", str(local_db)]) == 0
    sql = (
        "SELECT latent, model, answer IS NOT NULL AND status IN ('explained', 'unparsed') FROM explanation_rows "
        "ORDER BY latent"
    )
    assert (
        query(ray_db, sql)
        == query(local_db, sql)
        == [(lat, query(local_db, "SELECT model FROM explanation_rows")[0][0], True) for lat in latents]
    )
    (config,) = query(ray_db, "SELECT config FROM runs WHERE stage = 'explain'")[0]
    assert json.loads(config)["resolved"]["backend"] == "local"
    hashes = "SELECT request_hash FROM llm_calls WHERE error IS NULL ORDER BY request_hash"
    assert query(ray_db, hashes) == query(local_db, hashes)
