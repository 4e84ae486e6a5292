"""The explain stage: every explainable latent -> one LLM request -> an explanation row.

Resumable: explanations are keyed by (latent, config hash); a rerun skips latents already explained or
unparsed and retries failed ones. Every call is logged in ``llm_calls`` by the single writer task, each
latent's rows in one transaction, so a run killed at any moment loses at most the calls in flight; a
successful call whose explanation was not yet written is found again in the log by its request hash
and reused instead of being sent twice.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from ..config import ExplainConfig, config_hash, parse_latent_ranges
from ..errors import AutointerpError
from ..executor import Executor
from ..llm.base import GenerateOptions
from ..llm.queue import RequestFailed
from ..llm.routing import current_latent
from ..models.special import collect_special_ids
from ..runner import StageRun, stage_backend, stage_connection
from ..store import runs
from ..store.runs import latest_collect_config
from ..text import hide_special, prompt_text
from .explainers import EXPLAINERS
from .output_side import OutputSides
from .parse import parse_explanation
from .prompt import Example, build_messages
from .refine import REFINE_PROMPT
from .select import Selection
from .validation import Validator, read_validation_sets, require_validation_split

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


def explainer_identity(
    config: ExplainConfig, model: str, collect: str, output: OutputSides | None = None, validation: str = ""
) -> str:
    """Hash of everything that shapes an explanation, including the prompt files' text and the collect run
    whose examples it read (``runs.current_collect``): after ``collect --overwrite`` every latent is
    explained again, even with the same collect settings, as the examples may differ (issue 15 item 3).
    An output-centric explainer's identity also holds its ``output`` side settings (the others' is
    unchanged by them). Explanations chosen on the validate split also hold the selection settings and
    ``validation``, the validation scorer's identity (the others' is unchanged by them)."""
    shaping = {k: getattr(config, k) for k in ExplainConfig.SHAPING}
    shaping["model"] = model
    shaping["collect"] = collect
    shaping["prompts"] = {name: prompt_text(name) for name in EXPLAINERS[config.explainer].prompt_files()}
    if output is not None:
        shaping["output_side"] = output.identity()
    if config.selects():
        shaping.update({k: getattr(config, k) for k in ExplainConfig.SELECTION_SHAPING}, validation=validation)
        if config.refine:
            shaping["refine_prompt"] = prompt_text(REFINE_PROMPT)
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


def read_examples(
    cur, latents: list[int], special: frozenset[int] = frozenset()
) -> tuple[dict[int, list[Example]], dict[int, float]]:
    """The explain-set examples and maximum activation of ``latents``; ``special`` token ids show as nothing."""
    examples: dict[int, list[Example]] = {lat: [] for lat in latents}
    for lat, kind, quantile, rank, tokens, ids, acts in cur.execute(
        "SELECT latent, kind, quantile, rank, tokens, token_ids, activations FROM examples "
        "WHERE split = 'explain' AND latent IN (SELECT unnest(?)) ORDER BY latent, kind, quantile, rank",
        [latents],
    ).fetchall():
        examples[lat].append(Example(kind, quantile, rank, hide_special(tokens, ids, special), acts))
    maxima = dict(
        cur.execute(
            "SELECT latent, max_activation FROM latents WHERE latent IN (SELECT unnest(?))", [latents]
        ).fetchall()
    )
    return examples, maxima


def explain_options(config: ExplainConfig) -> GenerateOptions:
    """The options of every explain request (``autointerp plan`` counts with them too)."""
    prefill = config.answer_prefill("[EXPLANATION]:")
    return GenerateOptions(max_tokens=config.max_tokens, temperature=config.temperature, prefill=prefill)


async def explain(config: ExplainConfig, db, progress: bool = True, executor: Executor | None = None) -> ExplainResult:
    """Explain the selected latents. ``executor`` decides where the answers are generated (default
    ``LocalExecutor()``: a backend in this process); this process stores everything."""
    with stage_connection(db) as con:
        latents, not_explainable = select_latents(con, config)
        explainer = EXPLAINERS[config.explainer]
        output = None
        if explainer.lens or explainer.token_change:  # refused here, before a backend is opened
            output = OutputSides.open(con, config, explainer.lens, explainer.token_change)
        if config.selects():  # refused here too: best-of-k and refinement read the validate split
            require_validation_split(con, latents, config.min_validation)
        async with stage_backend(config, executor) as backend:
            return await _run(con, config, backend, latents, not_explainable, progress, output)


async def _run(con, config, backend, latents, not_explainable, progress, output=None) -> ExplainResult:
    collect = runs.current_collect(con)
    run = StageRun(con, "explain", backend, config)
    validator = Validator(config, con, run.llm, run.writer, run.run_id) if config.selects() else None
    identity = explainer_identity(config, backend.model, collect, output, validator.identity() if validator else "")
    done = {
        r[0]
        for r in con.execute(
            "SELECT latent FROM explanation_rows WHERE config_hash = ? AND status IN ('explained', 'unparsed')",
            [identity],
        ).fetchall()
    }
    todo = [lat for lat in latents if lat not in done]
    stored = {
        **config.to_dict(),
        "resolved": {
            "model": backend.model,
            "backend": backend.kind,
            "collect_run": collect,  # the score stage scores only explanations of the current collect
            **backend.executor_info,
        },
    }
    run.start(stored, identity)
    options = explain_options(config)
    prefill = options.prefill
    queue = run.llm  # answered calls are reused from the call log, never sent twice
    selection = Selection(config, queue, run.writer, validator, identity, run.run_id) if validator else None
    counts = {"explained": 0, "unparsed": 0, "failed": 0}

    def failed(row: dict, reason: str, n_calls: int) -> None:
        row.update(
            status="failed",
            explanation=None,
            reason=reason,
            answer=None,
            prompt_tokens=0,
            completion_tokens=0,
            n_calls=n_calls,
            call_id=None,
        )

    async def one(latent: int, examples: list[Example], latent_max: float, prepared=None, validate=None) -> None:
        current_latent.set(latent)  # a Ray worker pool sends a latent's requests to one worker
        item = f"latent {latent}"
        row = {"latent": latent, "config_hash": identity, "explainer": config.explainer, "model": backend.model}
        side = await output.side(latent, prepared, latent_max, run) if output is not None else None
        completion = None
        if isinstance(side, str):  # no output side to explain from (the lens does not apply, a planted latent)
            failed(row, side, 0)
        elif selection is not None:  # best-of-k and refinement: every request under the candidate's own item
            messages = build_messages(examples, latent_max, config, side)
            row.update(await selection.choose(latent, messages, options, validate))
            item = row.pop("chosen_item")
        else:
            messages = build_messages(examples, latent_max, config, side)
            try:
                completion = await queue.run(messages, options, item, "explain")
                row.update(n_calls=None, call_id=None)  # the writer fills both from the item's calls
            except RequestFailed as exc:
                failed(row, exc.reason, exc.attempts)
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
        run.writer.put_explanation(item, row)
        run.tick(
            tok_s=f"{(queue.stats.prompt_tokens + queue.stats.completion_tokens) / run.elapsed():,.0f}",
            failed=counts["failed"],
            unparsed=counts["unparsed"],
        )

    def read(cur, chunk):
        examples, maxima = read_examples(cur, chunk, special)
        prepared = output.read(cur, chunk) if output is not None else {}
        return examples, maxima, prepared, (read_validation_sets(cur, chunk, special) if selection else {})

    def latent_jobs(chunk, data):
        examples, maxima, prepared, validate = data
        for latent in chunk:
            job = functools.partial(one, latent, examples[latent], maxima[latent], prepared.get(latent))
            yield functools.partial(job, validate=validate.get(latent))

    # latents are prepared ahead of the queue, a few times the requests in flight
    limit = max(4 * config.max_in_flight, 16)
    special = collect_special_ids(latest_collect_config(con))
    await run.drive_chunks(
        todo,
        read,
        latent_jobs,
        limit,
        total=len(todo),
        unit="latent",
        progress=progress,
        chunk=CHUNK,
    )
    summary = {
        **counts,
        "todo": len(todo),
        "skipped_done": len(latents) - len(todo),
        "not_explainable": not_explainable,
    }
    if output is not None and output.uses_change:
        summary["token_change"] = output.report()
    summary = run.complete(summary)
    return ExplainResult(
        run.run_id,
        len(todo),
        counts["explained"],
        counts["unparsed"],
        counts["failed"],
        len(latents) - len(todo),
        not_explainable,
        run.seconds,
        summary["calls"],
        summary["prompt_tokens"],
        summary["completion_tokens"],
    )
