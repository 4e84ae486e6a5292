"""The explain stage: every explainable latent -> one LLM request -> an explanation row.

Resumable: explanations are keyed by (latent, config hash); a rerun skips latents already explained or
unparsed and retries failed ones. Every call is logged in ``llm_calls`` by the single writer task, each
latent's rows in one transaction, so a run killed at any moment loses at most the calls in flight; a
successful call whose explanation was not yet written is found again in the log by its request hash
and reused instead of being sent twice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..config import ExecutorConfig, ExplainConfig, config_hash, parse_latent_ranges
from ..errors import AutointerpError
from ..llm.base import GenerateOptions
from ..llm.factory import open_backend
from ..llm.queue import LLMQueue, QueueConfig, RequestFailed
from ..llm.routing import current_latent
from ..store import runs
from ..store.db import connect
from ..store.llm_log import CallLogWriter, cached_responses, request_hash, run_logged
from ..store.summary import refresh_summary_quietly
from ..text import prompt_text
from .parse import parse_explanation
from .prompt import FEW_SHOT, SYSTEM, Example, build_messages

log = logging.getLogger(__name__)
CHUNK = 256  # latents whose examples are read from the database at once


@dataclass
class ExplainResult:
    run_id: str
    todo: int
    explained: int
    unparsed: int
    failed: int
    skipped_done: int
    not_explainable: int
    seconds: float
    calls: int
    prompt_tokens: int
    completion_tokens: int


def explainer_identity(config: ExplainConfig, model: str) -> str:
    """Hash of everything that shapes an explanation, including the prompt files' text."""
    shaping = {k: getattr(config, k) for k in ExplainConfig.SHAPING}
    shaping["model"] = model
    files = [SYSTEM[config.explainer], "explain_user.txt", "explain_user_contrastive.txt"]
    if config.explainer in FEW_SHOT:
        files.append(FEW_SHOT[config.explainer])
    shaping["prompts"] = {name: prompt_text(name) for name in files}
    return config_hash(shaping)


def select_latents(con, config: ExplainConfig) -> tuple[list[int], int]:
    """Explainable latents in the requested ranges, and how many requested ones are not explainable."""
    if (
        not runs.stage_runs(con, "collect")
        or not con.execute("SELECT count(*) FROM runs WHERE stage='collect' AND status='complete'").fetchone()[0]
    ):
        raise AutointerpError(
            "The database holds no complete collect.",
            "a database written by `autointerp collect`.",
            "run `autointerp collect --db PATH` first.",
        )
    ranges = parse_latent_ranges(config.latents)
    rows = con.execute("SELECT latent, status FROM latents ORDER BY latent").fetchall()
    if ranges:
        rows = [r for r in rows if any(lo <= r[0] <= hi for lo, hi in ranges)]
        if not rows:
            raise AutointerpError(
                f"--latents {config.latents} selects no latent of this database.",
                f"indices between 0 and {con.execute('SELECT max(latent) FROM latents').fetchone()[0]}.",
            )
    ok = [lat for lat, status in rows if status == "ok"]
    return ok, len(rows) - len(ok)


def read_examples(cur, latents: list[int]) -> tuple[dict[int, list[Example]], dict[int, float]]:
    examples: dict[int, list[Example]] = {lat: [] for lat in latents}
    for lat, kind, quantile, rank, tokens, acts in cur.execute(
        "SELECT latent, kind, quantile, rank, tokens, activations FROM examples "
        "WHERE split = 'explain' AND latent IN (SELECT unnest(?)) ORDER BY latent, kind, quantile, rank",
        [latents],
    ).fetchall():
        examples[lat].append(Example(kind, quantile, rank, tokens, acts))
    maxima = dict(
        cur.execute(
            "SELECT latent, max_activation FROM latents WHERE latent IN (SELECT unnest(?))", [latents]
        ).fetchall()
    )
    return examples, maxima


async def explain(
    config: ExplainConfig, db, progress: bool = True, executor: ExecutorConfig | None = None
) -> ExplainResult:
    """Explain the selected latents; with ``executor`` set to Ray, Ray workers generate the answers
    (autointerp/scale/llm_pool.py) and this process still stores everything."""
    con = connect(db)
    try:
        return await _explain(con, config, progress, executor)
    finally:
        refresh_summary_quietly(con)
        con.close()


async def _explain(con, config: ExplainConfig, progress: bool, executor: ExecutorConfig | None) -> ExplainResult:
    latents, not_explainable = select_latents(con, config)
    async with open_backend(config, executor) as backend:
        return await _run(con, config, backend, latents, not_explainable, progress)


async def _run(con, config, backend, latents, not_explainable, progress) -> ExplainResult:
    identity = explainer_identity(config, backend.model)
    done = {
        r[0]
        for r in con.execute(
            "SELECT latent FROM explanation_rows WHERE config_hash = ? AND status IN ('explained', 'unparsed')",
            [identity],
        ).fetchall()
    }
    todo = [lat for lat in latents if lat not in done]
    run_id = runs.new_run_id("explain")
    stored = {
        **config.to_dict(),
        "resolved": {"model": backend.model, "backend": backend.kind, **getattr(backend, "executor_info", {})},
    }
    runs.start_run(con, run_id, "explain", stored, identity)
    prefill = config.answer_prefill("[EXPLANATION]:")
    options = GenerateOptions(max_tokens=config.max_tokens, temperature=config.temperature, prefill=prefill)
    cache = cached_responses(con, "explain", backend.kind, backend.model)
    writer = CallLogWriter(con, run_id, "explain", backend.kind, backend.model)
    queue = LLMQueue(
        backend,
        QueueConfig(config.max_in_flight, config.rps, config.tpm, config.max_retries, config.backoff_base),
        on_call=writer.log_call,
    )
    counts = {"explained": 0, "unparsed": 0, "failed": 0}
    bar = tqdm(total=len(todo), unit="latent", disable=not progress, desc="explain", dynamic_ncols=True)
    start = time.perf_counter()

    async def one(latent: int, examples: list[Example], latent_max: float) -> None:
        current_latent.set(latent)  # a Ray worker pool sends a latent's requests to one worker
        messages = build_messages(examples, latent_max, config)
        key = request_hash(backend.kind, backend.model, messages, options)
        item = f"latent {latent}"
        row = {"latent": latent, "config_hash": identity, "explainer": config.explainer, "model": backend.model}
        hit = cache.get(key)
        if hit is not None:
            completion, call_id = hit
            row.update(n_calls=0, call_id=call_id)
        else:
            try:
                completion = await queue.run(messages, options, item, "explain")
                row.update(n_calls=None, call_id=None)
            except RequestFailed as exc:
                completion = None
                row.update(
                    status="failed",
                    explanation=None,
                    reason=exc.reason,
                    answer=None,
                    prompt_tokens=0,
                    completion_tokens=0,
                    n_calls=exc.attempts,
                    call_id=None,
                )
        if completion is not None:
            answer = prefill + completion.text  # the whole assistant turn, as the parser must read it
            explanation, reason = parse_explanation(answer)
            row.update(
                status="explained" if explanation else "unparsed",
                explanation=explanation,
                reason=reason,
                answer=answer,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
            )
        counts[row["status"]] += 1
        writer.put_explanation(item, row)
        bar.update(1)
        elapsed = time.perf_counter() - start
        bar.set_postfix(
            tok_s=f"{(queue.stats.prompt_tokens + queue.stats.completion_tokens) / elapsed:,.0f}",
            failed=counts["failed"],
            unparsed=counts["unparsed"],
            refresh=False,
        )

    def jobs():
        for i in range(0, len(todo), CHUNK):
            chunk = todo[i : i + CHUNK]
            examples, maxima = read_examples(cur, chunk)
            for latent in chunk:
                yield lambda latent=latent, ex=examples[latent], mx=maxima[latent]: one(latent, ex, mx)

    cur = con.cursor()
    try:  # latents are prepared ahead of the queue, a few times the requests in flight
        await run_logged(con, run_id, writer, jobs(), max(4 * config.max_in_flight, 16))
    finally:
        bar.close()
        cur.close()
    seconds = time.perf_counter() - start
    stats = queue.stats
    summary = {
        **counts,
        "todo": len(todo),
        "skipped_done": len(latents) - len(todo),
        "not_explainable": not_explainable,
        "seconds": round(seconds, 2),
        "calls": stats.calls,
        "retries": stats.retries,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
    }
    con.execute(
        "UPDATE runs SET status='complete', finished_at=now(), summary=? WHERE run_id=?", [json.dumps(summary), run_id]
    )
    return ExplainResult(
        run_id,
        len(todo),
        counts["explained"],
        counts["unparsed"],
        counts["failed"],
        len(latents) - len(todo),
        not_explainable,
        seconds,
        stats.calls,
        stats.prompt_tokens,
        stats.completion_tokens,
    )
