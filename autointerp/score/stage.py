"""The score stage: each (latent, explanation, scorer) -> prompts over the latent's test set -> metrics.

Scorers are objects behind one protocol (``base.Scorer``), built from the one table of
``registry.py``; the stage runs them through the stage runner (``autointerp.runner``): every call goes
through one queue (throttling, retries, the call log, resume). A score is keyed by (latent,
explanation, scorer, configuration hash, control); a rerun skips finished scores. Each score's row and
its per-context rows are written in one transaction by the single writer (``rows.score_writer``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

from ..config import ScoreConfig, config_hash, parse_latent_ranges
from ..errors import AutointerpError
from ..executor import Executor
from ..llm.base import Backend, GenerateOptions
from ..llm.routing import current_latent
from ..models.special import collect_special_ids
from ..runner import StageRun, stage_backend, stage_connection
from ..store import runs
from ..store.runs import latest_collect_config
from ..text import hide_special
from . import classifier, registry
from .base import ScoreContext
from .controls import apply_control
from .explainer_choice import ELIGIBLE, require_one_explainer
from .rows import score_writer

#: Alternatives asked per generated token with ``--logprobs``: OpenAI's simulator reads 15, and the
#: simulation's "0".."10" need room beside the other tokens (5 left the top values out).
TOP_LOGPROBS = 15
#: How an imported explanation's id begins (``interop.importer.import_hash``).
IMPORTED = "import-"


@dataclass
class ScoreResult:
    run_id: str
    scored: int
    unscored: int
    skipped_done: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    resources: dict = field(default_factory=dict)
    """What the run's shared resources report, by name (``ScoreContext.reports``): e.g. ``steering``, the
    latents the intervention scorers steered and the seconds of torch work (for benchmarks and tests)."""


def select_explanations(con, config: ScoreConfig) -> dict[int, tuple[str, str]]:
    """latent -> (explanation_id, explanation) for the latents to score (before any shuffling).

    Only eligible explanations (``explainer_choice.ELIGIBLE``): of latents whose status is 'ok', and
    none written for an earlier collect."""
    sql = (
        f"SELECT latent, config_hash, explanation FROM ({ELIGIBLE})"
        + (" WHERE config_hash = ?" if config.explanations else "")
        + " ORDER BY latent, created_at"
    )
    params = [runs.current_collect(con)] + ([config.explanations] if config.explanations else [])
    rows = con.execute(sql, params).fetchall()
    ranges = parse_latent_ranges(config.latents)
    chosen = {}
    for latent, chash, text in rows:  # the latest explanation per latent wins
        if not ranges or any(lo <= latent <= hi for lo, hi in ranges):
            chosen[latent] = (f"{chash}/{latent}", text)
    if not chosen:
        raise AutointerpError(
            "No explained latent to score"
            + (f" with explanations {config.explanations}" if config.explanations else "")
            + (f" in --latents {config.latents}" if config.latents else "")
            + " (only latents with status 'ok' are scored, and only explanations written for the current "
            "collect).",
            "a database where `autointerp explain` produced explanations after the latest `autointerp collect`.",
            "run `autointerp explain` first (again after `collect --overwrite`), or check --latents / --explanations.",
        )
    return chosen


def read_test_sets(
    cur, latents: list[int], special: frozenset[int] = frozenset()
) -> dict[int, list[classifier.TestContext]]:
    """The test contexts of ``latents``; ``special`` token ids are stored empty, so they show as nothing."""
    out: dict[int, list[classifier.TestContext]] = {lat: [] for lat in latents}
    for lat, cid, kind, q, tokens, ids, acts in cur.execute(
        "SELECT latent, context_id, kind, quantile, tokens, token_ids, activations FROM examples WHERE split = 'test' "
        "AND latent IN (SELECT unnest(?)) ORDER BY latent, kind, quantile, rank",
        [latents],
    ).fetchall():
        shown = hide_special(tokens, ids, special)
        out[lat].append(classifier.TestContext(cid, kind, q, shown, acts, [i in special for i in ids or []]))
    return out


async def score(
    config: ScoreConfig,
    db,
    progress: bool = True,
    executor: Executor | None = None,
    backend: Backend | None = None,
) -> ScoreResult:
    """Score the selected explanations. ``executor`` decides where the LLM calls are answered (default
    ``LocalExecutor()``: a backend in this process); this process stores everything. ``backend``: an open
    backend to use instead of the one ``config`` names (tests and benchmarks share one loaded model)."""
    with stage_connection(db) as con:
        chosen = select_explanations(con, config)
        require_one_explainer(con, config.explanations, runs.current_collect(con), sorted(chosen))
        if config.control:  # the pool the shuffled control borrows from ignores --latents (see controls.py)
            everyone = config.latents and config.control == "shuffled"
            pool = select_explanations(con, dataclasses.replace(config, latents="")) if everyone else chosen
            chosen = apply_control(con, config.control, chosen, pool, config.seed)
        # the embedding scorer calls no LLM: without another scorer, load none and start no workers
        needed = "llm" in registry.needs(config.scorer_list())
        async with stage_backend(config, executor, needed=needed, backend=backend) as opened:
            return await _run(con, config, opened, chosen, progress)


def score_options(config: ScoreConfig) -> GenerateOptions:
    """The options every scorer's requests start from (``autointerp plan`` counts with them too)."""
    return GenerateOptions(
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        logprobs=config.logprobs,
        top_logprobs=TOP_LOGPROBS if config.logprobs else 0,
        prefill=config.answer_prefill("[ANSWER]:"),
    )


async def _run(con, config: ScoreConfig, backend: Backend, chosen, progress: bool) -> ScoreResult:
    run = StageRun(con, "score", backend, config)
    context = ScoreContext(config, con, run.llm, score_options(config), run.writer, run.run_id, chosen)
    names = registry.scorer_names(config.scorer_list())
    scorers = {name: registry.make_scorer(name, context) for name in names}
    # the collect run is part of every identity: scores of an earlier collect's test sets are never done
    collect = runs.current_collect(con)
    identities = {name: config_hash({**s.identity(), "collect": collect}) for name, s in scorers.items()}
    done = set(
        con.execute(
            "SELECT latent, explanation_id, scorer, config_hash FROM score_rows WHERE control = ?", [config.control]
        ).fetchall()
    )
    todo = [(lat, s) for lat in sorted(chosen) for s in names if (lat, chosen[lat][0], s, identities[s]) not in done]
    resolved = {"model": backend.model, "config_hashes": identities, **backend.executor_info}
    run.start({**config.to_dict(), "resolved": resolved}, config_hash(identities))
    counts = {"scored": 0, "unscored": 0}

    async def one(latent: int, name: str, contexts: list[classifier.TestContext]) -> None:
        current_latent.set(latent)  # a Ray worker pool sends a latent's requests to one worker
        explanation_id, explanation = chosen[latent]
        scorer = scorers[name]
        outcome = await scorer.score(latent, explanation, classifier.contexts_for(scorer, contexts))
        if explanation_id.startswith(IMPORTED):  # its examples may overlap our test sets: say so
            outcome.detail = {**(outcome.detail or {}), "imported": True}
        key = dict(
            latent=latent,
            explanation_id=explanation_id,
            scorer=name,
            config_hash=identities[name],
            control=config.control,
        )
        run.writer.put_result(score_writer(key, scorer.model, run.run_id, outcome))
        for cue, cue_hash, cue_outcome in outcome.companions:  # the cue probes of the samples it showed
            cue_key = {**key, "scorer": cue, "config_hash": cue_hash}
            run.writer.put_result(score_writer(cue_key, "none", run.run_id, cue_outcome))
        counts[outcome.status] += 1
        run.tick(unscored=counts["unscored"])

    wanted = set(todo)

    def score_jobs(chunk, tests):
        for lat, name in [(lat, s) for lat in chunk for s in names if (lat, s) in wanted]:
            yield lambda lat=lat, name=name, test=tests[lat]: one(lat, name, test)

    # each score sends its batches at once, so fewer scores than requests need to be pending
    latents, limit = sorted({lat for lat, _ in todo}), max(2 * config.max_in_flight, 8)
    read = functools.partial(read_test_sets, special=collect_special_ids(latest_collect_config(con)))
    await run.drive_chunks(latents, read, score_jobs, limit, total=len(todo), unit="score", progress=progress)
    summary = run.complete({**counts, "jobs": len(todo)})
    return ScoreResult(
        run.run_id,
        counts["scored"],
        counts["unscored"],
        len(chosen) * len(names) - len(todo),
        summary["calls"],
        summary["prompt_tokens"],
        summary["completion_tokens"],
        run.seconds,
        context.reports(),
    )
