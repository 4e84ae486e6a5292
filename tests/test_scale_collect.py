"""`autointerp collect --executor ray` on a real local Ray cluster (ray.init(num_cpus=2)): the sharded
collect equals the single-process one row for row, also when a worker process is killed mid-shard, and
a failed sharded run resumes from its finished shards."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import duckdb
import pytest

from autointerp.cli import main
from autointerp.config import ExecutorConfig
from autointerp.errors import AutointerpError

from .conftest import SMALL, assert_same_collect, differing_rows, query, small_config

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Test workers below are defined in this module: ship them to Ray's worker processes by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def collect_summary(db: Path) -> dict:
    import json

    con = duckdb.connect(str(db), read_only=True)
    try:
        return json.loads(
            con.execute("SELECT summary FROM runs WHERE stage = 'collect' AND status = 'complete'").fetchone()[0]
        )
    finally:
        con.close()


def test_sharded_collect_over_two_workers_equals_single_process(collected_db, ray_local, tmp_path):
    db = tmp_path / "sharded.duckdb"
    args = ["collect", "--db", str(db), "--quiet", "--executor", "ray", "--workers", "2", "--shard-tokens", "2048"]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    assert main(args) == 0
    summary = collect_summary(db)
    assert (summary["executor"], summary["workers"], summary["shards"], summary["workers_died"]) == ("ray", 2, 3, 0)
    assert_same_collect(collected_db, db)
    # the logit lens ran on a worker (where the model is) and the driver stored it: 2 x 20 rows a latent
    assert query(db, "SELECT DISTINCT count(*) FROM latent_logits GROUP BY latent") == [(40,)]
    assert not (tmp_path / "sharded.duckdb.parts").exists(), "parts are removed once merged"
    # The same command again finds the identical collect and does nothing.
    assert main(args) == 0


class DiesOnSecondShard:
    """A real worker whose process is killed (SIGKILL) in the middle of its second shard, after the
    model has run and before the part is written, when it is the first worker to get there (``marker``
    is created exclusively); every worker dies there when ``everyone`` is set."""

    marker = ""
    everyone = False

    def __init__(self, steps):
        from autointerp.scale.shards import ShardWorker

        self.inner = ShardWorker(steps)
        self.shards = 0

    def load(self, job):
        return self.inner.load(job)

    def call(self, job, fn, *args):
        return self.inner.call(job, fn, *args)

    def run(self, job, shard):
        self.shards += 1
        if self.shards == 2:
            self.inner.load(job)
            self.inner.steps[job].run(self.inner.loaded, shard, False)
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
                chosen = True
            except FileExistsError:
                chosen = False
            if chosen or self.everyone:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.run(job, shard)


def _collect_with(worker, db: Path, **executor) -> object:
    from autointerp.collect.stage import collect
    from autointerp.scale import RayExecutor

    config = ExecutorConfig(executor="ray", workers=2, **executor)
    return collect(small_config(), db, progress=False, executor=RayExecutor(config, worker_class=worker))


def test_a_killed_worker_loses_only_its_shard(collected_db, ray_local, tmp_path):
    class Once(DiesOnSecondShard):
        marker = str(tmp_path / "died")

    db = tmp_path / "killed.duckdb"
    _collect_with(Once, db, shard_tokens=2048)  # 3 shards: the worker given shard 3 dies in it
    assert Path(Once.marker).exists(), "a worker was killed"
    summary = collect_summary(db)
    assert (summary["workers_died"], summary["shards"]) == (1, 3)
    assert_same_collect(collected_db, db)


def test_a_failed_sharded_collect_resumes_from_its_finished_shards(collected_db, ray_local, tmp_path):
    class Everyone(DiesOnSecondShard):
        marker = str(tmp_path / "died")
        everyone = True

    db = tmp_path / "resumed.duckdb"
    with pytest.raises(AutointerpError, match="Every Ray worker died"):
        _collect_with(Everyone, db, shard_tokens=2048)  # 3 shards: two finish, then both workers die
    parts = list((tmp_path / "resumed.duckdb.parts").glob("*/shard-*"))
    assert len(parts) == 2, parts
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM runs WHERE stage = 'collect'").fetchall() == [("failed",)]
    con.close()

    from autointerp.scale.shards import ShardWorker

    _collect_with(ShardWorker, db, shard_tokens=2048)
    summary = collect_summary(db)
    assert (summary["reused_shards"], summary["shards"]) == (2, 3)
    assert_same_collect(collected_db, db)


def test_bad_input_fails_before_any_worker_starts(tmp_path, capsys):
    db = tmp_path / "bad.duckdb"
    assert main(["collect", "--db", str(db), "--quiet", "--workers", "2"]) == 2
    assert "--executor ray" in capsys.readouterr().err
    assert main(["collect", "--db", str(db), "--quiet", "--executor", "ray", "--sae", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "none" in err and "Traceback" not in err
    # A cluster address nobody answers at fails at once (ray.init would retry it for minutes). In a
    # subprocess: this process may already be connected to the test cluster, which a run then keeps.
    import subprocess

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autointerp.cli",
            "collect",
            "--db",
            str(db),
            "--quiet",
            "--executor",
            "ray",
            "--ray-address",
            "127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Nothing answers at --ray-address 127.0.0.1:1" in done.stderr, done.stderr


def small_args(*extra) -> list[str]:
    args = ["collect", "--quiet", *extra]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return args


def test_several_jobs_share_the_workers_and_each_equals_its_single_process_collect(collected_db, ray_local, tmp_path):
    import json

    other = tmp_path / "layer10-local.duckdb"  # the embedded SAE read at another layer: another job
    assert main(small_args("--db", str(other), "--hookpoint", "model.layers.10")) == 0
    jobs = tmp_path / "jobs.json"
    jobs.write_text(
        json.dumps(
            [
                {"db": str(tmp_path / "layer14.duckdb")},
                {"db": str(tmp_path / "layer10.duckdb"), "hookpoint": "model.layers.10"},
            ]
        )
    )
    assert main(small_args("--jobs", str(jobs), "--executor", "ray", "--workers", "2", "--shard-tokens", "2048")) == 0
    assert_same_collect(collected_db, tmp_path / "layer14.duckdb")
    assert_same_collect(other, tmp_path / "layer10.duckdb")
    assert differing_rows(collected_db, other)["latent_stats"][1] > 0, "the two jobs are different collects"


def test_bad_jobs_file_is_refused(tmp_path, capsys):
    import json

    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"db": str(tmp_path / "a.duckdb"), "sae_path": "x"}]))
    assert main(["collect", "--quiet", "--jobs", str(jobs)]) == 2
    assert "unknown option(s): sae_path" in capsys.readouterr().err
    jobs.write_text(json.dumps([{"db": str(tmp_path / "a.duckdb")}, {"db": str(tmp_path / "a.duckdb")}]))
    assert main(["collect", "--quiet", "--jobs", str(jobs)]) == 2
    assert "same database" in capsys.readouterr().err
    assert main(["collect", "--quiet"]) == 2
    assert not list(tmp_path.glob("*.duckdb"))


def test_a_located_start_gives_exactly_the_sequences_of_one_pass():
    """SequencePacker.locate + sequences(start_offset): a shard that seeks to its start reads the very
    sequences a pass from the corpus's beginning reads there (short docs_batch so starts fall inside
    documents, across tokenizer batches, and at document boundaries alike)."""
    import itertools

    import torch

    from autointerp.corpus import SequencePacker, nonempty_texts, open_corpus, texts_of
    from autointerp.models import embedded

    _, tokenizer = embedded.load_smollm2(torch.float32)
    packer = SequencePacker(tokenizer, 64, doc_batch=7)
    corpus = open_corpus("embedded")
    whole = list(itertools.islice(packer.sequences(texts_of(corpus, "text")), 120))
    starts = [0, 1, 5, 33, 64, 119]
    found, ended = packer.locate(texts_of(corpus, "text"), starts)
    assert ended is None and all(f is not None for f in found)
    assert any(offset > 0 for _, offset in found[1:]), "some starts must fall inside a document"
    for first, (document, offset) in zip(starts, found, strict=True):
        seeked = list(
            itertools.islice(packer.sequences(nonempty_texts(corpus, "text", document), offset), len(whole) - first)
        )
        assert (
            all((a == b).all() for a, b in zip(seeked, whole[first:], strict=True))
            and len(seeked) == len(whole) - first
        )
    # Past the end: no position, and how many whole sequences the corpus holds.
    tail, total = packer.locate(texts_of(corpus, "text"), [10**9])
    assert tail == [None] and total > 120
