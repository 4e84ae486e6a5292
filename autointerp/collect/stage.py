"""The collect stage: run the subject model and a dictionary over a corpus, keep every latent's contexts.

The dictionary is an SAE or transcoder of any format ``load_dictionary`` reads, or the model's MLP
neurons (see ``dictionary.py``). Three phases, run where the executor puts them (``executor.py``): in
this process, one job after another (``LocalExecutor``), or spread over the workers of a Ray cluster
(``scale.RayExecutor``), with the same result row for row:

1. setup (``setup.py``): load the model, resolve the hookpoint and check the width of what the
   dictionary reads there; open the corpus. Once per job wherever its shards run.
2. run a shard (``stream.py``): a range of sequences through model -> dictionary -> sampler.
3. reduce (``reduce.py``): merge the shards' samplers, select the explain and test sets and write
   everything in one transaction.

Before any of it, so that a mistake fails fast and nothing stored is touched before the end, this
process opens each database (a lock held by another process fails here), reads the dictionary and
compares with any earlier collect there (a different configuration needs ``overwrite``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import ALL_TOKENS, CollectConfig, config_hash
from ..corpus import no_sequence_error
from ..errors import AutointerpError
from ..executor import Call, Executor, LocalExecutor, Shard, or_local
from ..models.dictionaries.planted import planted_part
from ..store import runs
from ..store.db import connect
from ..store.decoder_neighbours import write_decoder_neighbours
from ..store.logit_lens import write_logit_lens
from . import dictionary as dictionaries
from .decoder_neighbours import neighbours_of_loaded
from .hard_negatives import HardRequest, find_hard_negatives
from .logit_lens import lens_of_loaded
from .reduce import CollectResult, merge, select_and_write
from .replay import replay_windows
from .setup import Loaded
from .step import CollectStep, count_sequences, decode, locate, plan_shards
from .stream import corpus_too_short, n_sequences

log = logging.getLogger(__name__)

__all__ = ["CollectResult", "check_earlier", "collect", "collect_identity", "collect_many"]


def collect(
    config: CollectConfig,
    db: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
) -> CollectResult:
    """Run the collect stage into the database at ``db``; see the module docstring. ``executor``: where
    the work runs (default ``LocalExecutor()``, this process)."""
    return collect_many([(config, db)], overwrite, progress, executor)[0]


def collect_many(
    jobs: list[tuple[CollectConfig, str | Path]],
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
) -> list[CollectResult]:
    """Several collects (e.g. one per hookpoint or SAE), each into its own database: one after another
    with ``LocalExecutor``, or sharing the workers of a Ray cluster with ``RayExecutor``."""
    executor = or_local(executor)
    if not isinstance(executor, LocalExecutor) and any(config.tokens == ALL_TOKENS for config, _ in jobs):
        raise AutointerpError(
            "--tokens all is available with the local executor only.",
            "a number of tokens (a sharded collect plans its shards from it).",
            "pass --tokens N, or run with --executor local.",
        )
    paths = [str(Path(db).resolve()) for _, db in jobs]
    if len(set(paths)) < len(paths):
        raise AutointerpError(
            "Two collect jobs write the same database.", "one database per job.", 'give each job its own "db".'
        )
    connections = []
    try:
        for _, db in jobs:
            connections.append(connect(db))
        results: dict[int, CollectResult] = {}
        todo: list[CollectJob] = []
        for i, (con, (config, db)) in enumerate(zip(connections, jobs, strict=True)):
            req, identity = collect_identity(config)
            earlier, done = check_earlier(con, identity, overwrite)
            if done is not None:
                results[i] = CollectResult(run_id=done.run_id, skipped=True)
                continue
            parts = Path(executor.parts_dir or f"{db}.parts") / identity
            todo.append(
                CollectJob(i, con, config, [r.run_id for r in earlier], CollectStep(config, identity, parts, req))
            )
        if todo:
            executor.map_shards(todo, progress)
        results.update({job.index: job.result for job in todo})
        return [results[i] for i in range(len(jobs))]
    finally:
        for con in connections:
            con.close()


def collect_identity(config: CollectConfig) -> tuple[dictionaries.Request, str]:
    """The dictionary request and the hash identifying the collect's result."""
    req = dictionaries.request(config)
    return req, config_hash({"config": config.result_hash(), **req.identity()})


def check_earlier(con, identity: str, overwrite: bool) -> tuple[list, runs.RunRow | None]:
    """Earlier collect runs, and the complete one with this identity if there is one (nothing to do).
    Raises when another process is writing or a different collect is stored without ``overwrite``."""
    runs.mark_dead_runs_interrupted(con)
    earlier = runs.stage_runs(con, "collect")
    for run in earlier:
        if run.is_alive_elsewhere():
            raise AutointerpError(
                f"Another collect (run {run.run_id}, pid {run.pid}) is writing this database.",
                fix="wait for it to finish or stop it.",
            )
    complete = [r for r in earlier if r.status == "complete"]
    if complete and complete[-1].config_hash == identity and not overwrite:
        log.info("an identical collect (%s) is already complete; nothing to do", complete[-1].run_id)
        return earlier, complete[-1]
    if complete and complete[-1].config_hash != identity and not overwrite:
        raise AutointerpError(
            f"The database already holds a collect with another configuration (run {complete[-1].run_id}, "
            f"config hash {complete[-1].config_hash}; this one is {identity}).",
            "a new database path, or the configuration of the earlier run.",
            "pass --overwrite to replace the earlier results, or use another --db.",
        )
    return earlier, None


def describe(loaded: Loaded) -> dict:
    """What the driver needs to know of a job's loaded model and dictionary (called where it is set up)."""
    planted = planted_part(loaded.dictionary)
    return {
        "hookpoint": loaded.hookpoint,
        "n_latents": int(loaded.dictionary.d_sae),
        "signed": bool(loaded.dictionary.signed),
        "resolved": loaded.resolved,
        "planted": planted[1].rows(planted[0]) if planted else [],  # calibrates the planted latents
    }


@dataclass
class CollectJob:
    """One collect as an executor sees it (an ``executor.ShardedJob``): the driver's side, which owns the
    database connection; ``step`` is the side that runs where the shards run."""

    index: int
    con: object
    config: CollectConfig
    earlier: list[str]
    step: CollectStep
    run_id: str = ""
    meta: dict | None = None
    result: CollectResult | None = None

    @property
    def tokens_per_item(self) -> int:
        return self.config.seq_len

    @property
    def parts(self) -> Path:
        return self.step.parts

    def plan(self, shards: int, shard_tokens: int, call: Call) -> list[Shard]:
        if self.config.tokens == ALL_TOKENS:
            self._use_whole_corpus(call)
        config = self.config
        return plan_shards(n_sequences(config), config.batch_size, config.seq_len, shards, shard_tokens)

    def _use_whole_corpus(self, call: Call) -> None:
        """``--tokens all``: the number of whole sequences the corpus holds becomes the token budget, where
        the job is set up and in its step (only a local executor takes it: the Ray executor is refused)."""
        available = call(count_sequences, None)
        if available == 0:
            raise no_sequence_error(self.config.seq_len)
        self.config = dataclasses.replace(self.config, tokens=available * self.config.seq_len)
        self.step.config = self.config
        call(_set_config, self.config)

    def prepare(self, shards: list[Shard], call: Call, info: dict) -> list[Shard]:
        self.step.request = None  # set up wherever it runs: the driver's copy of the dictionary can go
        self.meta = call(describe)
        shards = self._locate(shards, call)
        self.run_id = runs.new_run_id("collect")
        stored = {**self.config.to_dict(), "hookpoint": self.meta["hookpoint"], "resolved": self.meta["resolved"]}
        if info:
            stored["executor"] = {
                **info,
                "shards": len(shards),
                "shard_sequences": shards[0].size,
                "parts_dir": str(self.parts),
            }
        runs.start_run(self.con, self.run_id, "collect", stored, self.step.identity)
        if all(s.first == 0 for s in shards):  # no locate pass (``_locate``) counted the corpus: count it now,
            available = call(count_sequences, n_sequences(self.config))  # before the model runs over it
            if available < n_sequences(self.config):
                raise corpus_too_short(self.config, available)  # the run is marked failed with it
        return shards

    def _locate(self, shards: list[Shard], call: Call) -> list[Shard]:
        """Where each shard begins in the corpus, found with one tokenizing pass where the job is set up
        (kept in the parts folder for a rerun), so that a shard seeks there instead of tokenizing all
        text before it. A corpus too short for the shards fails here, before any shard runs."""
        todo = [s for s in shards if s.first > 0]
        if not todo:
            return shards
        plan_file = self.parts / "positions.json"
        bounds = [[s.first, s.last] for s in shards]
        identity = self.step.identity
        if plan_file.exists():
            plan = json.loads(plan_file.read_text())
            if plan.get("identity") == identity and plan.get("shards") == bounds:
                return [_starting(s, p) for s, p in zip(shards, plan["positions"], strict=True)]
        found, available = call(locate, [s.first for s in todo])
        if available is not None and available < n_sequences(self.config):
            raise corpus_too_short(self.config, available)
        positions = {(s.first, s.last): list(p) for s, p in zip(todo, found, strict=True)}
        self.parts.mkdir(parents=True, exist_ok=True)
        located = [positions.get((s.first, s.last)) for s in shards]
        plan_file.write_text(json.dumps({"identity": identity, "shards": bounds, "positions": located}))
        return [_starting(s, p) for s, p in zip(shards, located, strict=True)]

    def reduce(self, results, call: Call, seconds: float, summary: dict) -> None:
        meta = self.meta
        sampler, merge_seconds = merge(results, self.config, meta["n_latents"], meta["signed"])
        collection = {
            "model": meta["resolved"]["model"],
            "hookpoint": meta["hookpoint"],
            "sae": meta["resolved"]["sae_path"],
        }

        def token_strings(ids) -> list[str]:
            return call(decode, [int(i) for i in ids])

        extra = {**summary, "merge_seconds": round(merge_seconds, 2)} if summary else {}
        lens = None
        if self.config.lens_k:  # where the model is loaded (a Ray worker's copy when sharded), before any write
            start = time.perf_counter()
            lens = call(lens_of_loaded, self.config.lens_k)
            extra["logit_lens"] = lens.summary(time.perf_counter() - start)
        neighbours = None
        if self.config.neighbours_k:
            start = time.perf_counter()
            neighbours = call(neighbours_of_loaded, self.config.neighbours_k)
            extra["decoder_neighbours"] = neighbours.summary(time.perf_counter() - start)
        self.result = select_and_write(
            self.con,
            self.run_id,
            self.config,
            sampler,
            collection,
            token_strings,
            self.earlier,
            seconds,
            extra,
            planted=meta.get("planted") or [],
            replay=lambda request: call(replay_windows, request),  # a keys-only sampler's chosen windows
            hard=(lambda selection, ok: call(find_hard_negatives, HardRequest.of(selection, self.config, ok)))
            if self.config.hard_negatives
            else None,
        )
        if lens is not None:  # the collect is committed; `autointerp lens` redoes this should it fail here
            write_logit_lens(self.con, self.run_id, lens.rows)
            self.result.lens = extra["logit_lens"]
        if neighbours is not None:  # `autointerp similar` redoes this should it fail here
            write_decoder_neighbours(self.con, self.run_id, neighbours.rows)
            self.result.neighbours = extra["decoder_neighbours"]
        shutil.rmtree(self.parts, ignore_errors=True)  # merged and committed: the parts are no longer needed
        if self.parts.parent.is_dir() and not any(self.parts.parent.iterdir()):
            self.parts.parent.rmdir()

    def fail(self, exc: BaseException) -> None:
        if self.run_id and self.result is None:
            runs.fail_run(self.con, self.run_id, runs.failure_reason(exc))


def _set_config(loaded: Loaded, config: CollectConfig) -> None:
    loaded.config = config


def _starting(shard: Shard, position) -> Shard:
    return shard if position is None else Shard(shard.first, shard.last, tuple(position))
