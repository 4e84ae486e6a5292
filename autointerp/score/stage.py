"""The score stage: each (latent, explanation, scorer) -> prompts over the latent's test set -> metrics.

Every call goes through the explain stage's queue (throttling, retries, the call log, resume).
A score is keyed by (latent, explanation, scorer, configuration hash, control); a rerun skips finished
scores. Each score's row and its per-context rows are written in one transaction by the single writer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..config import ScoreConfig, config_hash, parse_latent_ranges
from ..errors import AutointerpError
from ..executor import Executor, or_local
from ..llm.base import Backend, GenerateOptions
from ..llm.queue import LLMQueue, QueueConfig, RequestFailed
from ..llm.routing import current_latent
from ..store import runs
from ..store.db import connect
from ..store.llm_log import CallLogWriter, run_logged
from ..store.summary import refresh_summary_quietly
from . import classifier, simulation
from .answers import digit_probabilities, parse_digits
from .metrics import binary_metrics, pearson
from .rows import replace_score

CHUNK = 128


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


def scorer_identity(config: ScoreConfig, scorer: str, model: str) -> str:
    if scorer == "embedding":
        return config_hash({"scorer": scorer, "model": model, "threshold": "median"})
    shaping = {k: getattr(config, k) for k in ScoreConfig.SHAPING}
    if scorer == "simulation":
        shaping.update({k: getattr(config, k) for k in ScoreConfig.SIMULATION})
        prompts = [classifier.prompt_text(simulation.SYSTEM), classifier.prompt_text(simulation.USER)]
    else:
        prompts = [classifier.prompt_text(classifier.SYSTEM[scorer]), classifier.prompt_text("score_user.txt")]
    shaping.update(model=model, scorer=scorer, prompts=prompts)
    return config_hash(shaping)


def select_explanations(con, config: ScoreConfig) -> dict[int, tuple[str, str]]:
    """latent -> (explanation_id, explanation) for the latents to score (before any shuffling)."""
    sql = (
        "SELECT latent, config_hash, explanation FROM explanation_rows WHERE status = 'explained'"
        + (" AND config_hash = ?" if config.explanations else "")
        + " ORDER BY latent, created_at"
    )
    rows = con.execute(sql, [config.explanations] if config.explanations else []).fetchall()
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
            + ".",
            "a database where `autointerp explain` produced explanations.",
            "run `autointerp explain` first, or check --latents / --explanations.",
        )
    return chosen


def shuffled_control(chosen: dict[int, tuple[str, str]], seed: int) -> dict[int, tuple[str, str]]:
    """Each latent gets another latent's explanation (a random derangement)."""
    latents = sorted(chosen)
    if len(latents) < 2:
        raise AutointerpError("--control shuffled needs at least two explained latents.")
    rng = random.Random(seed)
    order = latents[:]
    while True:
        rng.shuffle(order)
        if all(a != b for a, b in zip(latents, order, strict=True)):
            break
    return {lat: chosen[other] for lat, other in zip(latents, order, strict=True)}


def read_test_sets(cur, latents: list[int]) -> dict[int, list[classifier.TestContext]]:
    out: dict[int, list[classifier.TestContext]] = {lat: [] for lat in latents}
    for lat, cid, kind, q, tokens, acts in cur.execute(
        "SELECT latent, context_id, kind, quantile, tokens, activations FROM examples WHERE split = 'test' "
        "AND latent IN (SELECT unnest(?)) ORDER BY latent, kind, quantile, rank",
        [latents],
    ).fetchall():
        out[lat].append(classifier.TestContext(cid, kind, q, tokens, acts))
    return out


async def score(config: ScoreConfig, db, progress: bool = True, executor: Executor | None = None) -> ScoreResult:
    """Score the selected explanations. ``executor`` decides where the LLM calls are answered (default
    ``LocalExecutor()``: a backend in this process); this process stores everything."""
    con = connect(db)
    try:
        runs.mark_dead_runs_interrupted(con)
        chosen = select_explanations(con, config)
        if config.control == "shuffled":
            chosen = shuffled_control(chosen, config.seed)
        if any(s != "embedding" for s in config.scorer_list()):
            async with or_local(executor).open_backend(config) as backend:
                return await _run(con, config, backend, chosen, progress)
        # the embedding scorer calls no LLM: load none (the base Backend is never asked), start no workers
        return await _run(con, config, Backend(), chosen, progress)
    finally:
        refresh_summary_quietly(con)
        con.close()


@dataclass
class Outcome:
    """What one (latent, scorer) produced: per-context rows, metrics and costs, ready to store."""

    rows: list[dict]  # context_id, variant, marked, quantile, label, prediction, probability, batch, item,
    metrics: dict  # reason, simulated (see score_example_rows)
    headline: float | None
    chance: dict
    n_calls: int = 0
    tokens: tuple[int, int, int] = (0, 0, 0)  # prompt, completion, fixed prompt
    reason: str | None = None  # why unscored
    detail: dict | None = None
    correlation: float | None = None


async def _run(con, config: ScoreConfig, backend, chosen, progress) -> ScoreResult:
    scorers = config.scorer_list()
    embedder = None
    if "embedding" in scorers:
        from .embedding import EmbeddingScorer

        embedder = EmbeddingScorer(config.embedding_model or None)
    per_latent = [s for s in scorers if s != "intervention"]
    models = {s: (embedder.path.name if s == "embedding" else backend.model) for s in per_latent}
    identities = {s: scorer_identity(config, s, models[s]) for s in per_latent}
    run_id = runs.new_run_id("score")
    writer = CallLogWriter(con, run_id, "score", backend.kind, backend.model)
    queue = LLMQueue(
        backend,
        QueueConfig(config.max_in_flight, config.rps, config.tpm, config.max_retries, config.backoff_base),
        on_call=writer.log_call,
    )
    options = GenerateOptions(
        max_tokens=config.max_tokens,
        temperature=config.temperature,
        logprobs=config.logprobs,
        top_logprobs=5 if config.logprobs else 0,
        prefill=config.answer_prefill("[ANSWER]:"),
    )
    intervention = None
    if "intervention" in scorers:
        from .intervention_stage import InterventionScorer

        intervention = InterventionScorer(con, config, queue, writer, run_id, options, backend.model, chosen)
    done = set(
        con.execute(
            "SELECT latent, explanation_id, scorer, config_hash FROM score_rows WHERE control = ?", [config.control]
        ).fetchall()
    )
    jobs_todo = [
        (lat, s) for lat in sorted(chosen) for s in per_latent if (lat, chosen[lat][0], s, identities[s]) not in done
    ]
    all_identities = dict(identities)
    if intervention is not None:
        all_identities.update(intervention.identities)
        jobs_todo += [
            (lat, "intervention")
            for lat in sorted(chosen)
            if any((lat, chosen[lat][0], s, h) not in done for s, h in intervention.identities.items())
        ]
    runs.start_run(
        con,
        run_id,
        "score",
        {
            **config.to_dict(),
            "resolved": {
                "model": backend.model,
                "config_hashes": all_identities,
                **backend.executor_info,
            },
        },
        config_hash(all_identities),
    )
    counts = {"scored": 0, "unscored": 0}
    bar = tqdm(total=len(jobs_todo), unit="score", disable=not progress, desc="score", dynamic_ncols=True)
    count_tokens = getattr(backend, "count_tokens", None)
    fixed_tokens = {s: _fixed_tokens(count_tokens, s) for s in per_latent if s != "embedding"}
    start = time.perf_counter()

    async def one(latent: int, scorer: str, contexts: list[classifier.TestContext]) -> None:
        current_latent.set(latent)  # a Ray worker pool sends a latent's requests to one worker
        if scorer == "intervention":
            statuses = await intervention.score_latent(latent)
            for status in statuses.values():
                counts[status] += 1
            bar.update(1)
            return
        explanation_id, explanation = chosen[latent]
        rng = classifier.latent_rng(config.seed, latent, scorer)
        if scorer == "embedding":
            outcome = await _embedding(embedder, explanation, contexts)
        elif scorer == "simulation":
            outcome = await _simulation(
                queue, config, options, explanation, contexts, latent, rng, fixed_tokens[scorer]
            )
        else:
            outcome = await _classifier(
                queue, config, options, scorer, explanation, contexts, latent, rng, fixed_tokens[scorer]
            )
        status = "scored" if outcome.headline is not None or outcome.metrics["n"] > 0 else "unscored"
        if scorer == "simulation" and outcome.correlation is None:
            status = "unscored"
        reason = None if status == "scored" else outcome.reason
        writer.put_result(
            _writer(
                latent,
                explanation_id,
                scorer,
                models[scorer],
                identities[scorer],
                config.control,
                run_id,
                status,
                reason,
                outcome,
            )
        )
        counts[status] += 1
        bar.update(1)
        bar.set_postfix(unscored=counts["unscored"], refresh=False)

    def jobs():
        latents = sorted({lat for lat, _ in jobs_todo})
        wanted = set(jobs_todo)
        for i in range(0, len(latents), CHUNK):
            chunk = latents[i : i + CHUNK]
            tests = read_test_sets(cur, chunk)
            for lat, scorer in [(lat, s) for lat in chunk for s in scorers if (lat, s) in wanted]:
                yield lambda lat=lat, scorer=scorer, test=tests[lat]: one(lat, scorer, test)

    cur = con.cursor()
    try:  # each score sends its batches at once, so fewer scores than requests need to be pending
        await run_logged(con, run_id, writer, jobs(), max(2 * config.max_in_flight, 8))
    finally:
        bar.close()
        cur.close()
    seconds = time.perf_counter() - start
    stats = queue.stats
    summary = {
        **counts,
        "jobs": len(jobs_todo),
        "seconds": round(seconds, 2),
        "calls": stats.calls,
        "retries": stats.retries,
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
    }
    con.execute(
        "UPDATE runs SET status='complete', finished_at=now(), summary=? WHERE run_id=?", [json.dumps(summary), run_id]
    )
    n_jobs = len(chosen) * (len(per_latent) + (intervention is not None))
    return ScoreResult(
        run_id,
        counts["scored"],
        counts["unscored"],
        n_jobs - len(jobs_todo),
        stats.calls,
        stats.prompt_tokens,
        stats.completion_tokens,
        seconds,
    )


def _writer(latent, explanation_id, scorer, model, identity, control, run_id, status, reason, outcome: Outcome):
    """The single writer's transaction for one score: its row, then its per-context rows (replaced)."""
    m = outcome.metrics

    def write(rows, call_id_of):
        replace_score(
            rows,
            dict(
                latent=latent,
                explanation_id=explanation_id,
                scorer=scorer,
                config_hash=identity,
                control=control,
                model=model,
                run_id=run_id,
                status=status,
                reason=reason,
                n_examples=m["n"],
                n_unscored=m["n_unscored"],
                balanced_accuracy=m.get("balanced_accuracy"),
                accuracy=m.get("accuracy"),
                precision=m.get("precision"),
                recall=m.get("recall"),
                f1=m.get("f1"),
                auroc=m.get("auroc"),
                quantile_recall=json.dumps({str(k): v for k, v in m.get("recall_by_quantile", {}).items()}),
                chance=json.dumps(outcome.chance),
                n_calls=outcome.n_calls,
                prompt_tokens=outcome.tokens[0],
                completion_tokens=outcome.tokens[1],
                fixed_prompt_tokens=outcome.tokens[2],
                score=outcome.headline if status == "scored" else None,
                correlation=outcome.correlation,
                detail=json.dumps(outcome.detail) if outcome.detail else None,
            ),
            [
                dict(
                    run_id=run_id,
                    context_id=r["context_id"],
                    variant=r["variant"],
                    marked=r.get("marked") or None,
                    quantile=r["quantile"],
                    label=r["label"],
                    prediction=r["prediction"],
                    probability=r["probability"],
                    batch=r["batch"],
                    call_id=call_id_of(r["item"]) if r["item"] else None,
                    reason=r["reason"],
                    simulated=r.get("simulated"),
                )
                for r in outcome.rows
            ],
        )

    return write


def _binary_outcome(rows: list[dict], headline_key: str, **extra) -> Outcome:
    metrics = binary_metrics(
        [r["label"] for r in rows],
        [r["prediction"] for r in rows],
        [r["probability"] for r in rows],
        [r["quantile"] if r["label"] else None for r in rows],
    )
    chance = dict(metrics["chance"])
    chance["score"] = chance.get(headline_key)
    reasons = [r["reason"] for r in rows if r["reason"]]
    return Outcome(
        rows,
        metrics,
        metrics[headline_key],
        chance,
        reason=f"no batch answer could be read: {reasons[0] if reasons else ''}",
        **extra,
    )


async def _embedding(embedder, explanation, contexts) -> Outcome:
    """No LLM: cosine similarity of the explanation and each context's raw text; AUROC is the headline."""
    samples = classifier.detection_samples(contexts)
    result = await asyncio.to_thread(
        embedder.score,
        explanation,
        ["".join(c.tokens) for c in contexts],
        [s.label for s in samples],
        [s.quantile if s.label else None for s in samples],
    )
    rows = [
        dict(
            context_id=s.context_id,
            variant=s.variant,
            marked=None,
            quantile=s.quantile,
            label=s.label,
            prediction=p,
            probability=sim,
            batch=0,
            item=None,
            reason=None,
        )
        for s, p, sim in zip(samples, result["prediction"], result["similarity"], strict=True)
    ]
    return _binary_outcome(rows, "auroc")


async def _classifier(queue, config, options, scorer, explanation, contexts, latent, rng, fixed) -> Outcome:
    """Detection or fuzzing: batches of excerpts, one 0/1 answer per excerpt; balanced accuracy."""
    if scorer == "detection":
        samples = classifier.detection_samples(contexts)
    else:
        samples = classifier.fuzzing_samples(
            contexts, config.mark_threshold, config.fuzz_random, config.fuzz_misplaced, rng
        )
    groups = classifier.batches(samples, config.batch_size, rng)
    results = await asyncio.gather(
        *[_ask(queue, scorer, explanation, batch, i, latent, options) for i, batch in enumerate(groups)]
    )
    rows, tokens = [], [0, 0, 0]
    for b, (batch, (item, preds, probs, reason, completion)) in enumerate(zip(groups, results, strict=True)):
        rows += [
            dict(
                context_id=s.context_id,
                variant=s.variant,
                marked=s.marked,
                quantile=s.quantile,
                label=s.label,
                prediction=p,
                probability=pr,
                batch=b,
                item=item,
                reason=reason,
            )
            for s, p, pr in zip(batch, preds, probs, strict=True)
        ]
        if completion is not None:
            tokens = [tokens[0] + completion.prompt_tokens, tokens[1] + completion.completion_tokens, tokens[2] + fixed]
    return _binary_outcome(rows, "balanced_accuracy", n_calls=len(groups), tokens=tuple(tokens))


async def _simulation(queue, config, options, explanation, contexts, latent, rng, fixed) -> Outcome:
    """Per-token predictions 0-10 for a few test contexts; Pearson r pooled over all their tokens."""
    chosen = simulation.choose_contexts(contexts, config.simulation_contexts, rng)
    groups = [chosen[i : i + config.simulation_batch] for i in range(0, len(chosen), config.simulation_batch)]

    async def ask(b, batch):
        item = f"latent {latent} simulation batch {b}"
        opts = options
        if options.prefill:  # guided: one line of exactly len(tokens) values per excerpt
            opts = dataclasses.replace(
                options,
                regex=simulation.answer_regex(batch),
                max_tokens=max(options.max_tokens, 4 + sum(2 * len(c.tokens) + 4 for c in batch)),
            )
        else:
            opts = dataclasses.replace(
                options, max_tokens=max(options.max_tokens, sum(3 * len(c.tokens) + 4 for c in batch))
            )
        try:
            completion = await queue.run(simulation.build_messages(explanation, batch), opts, item, "simulation")
        except RequestFailed as exc:
            return item, [simulation.Simulated(None, f"request failed: {exc.reason}")] * len(batch), None
        answer = opts.prefill + completion.text
        return (
            item,
            simulation.parse(answer, [len(c.tokens) for c in batch], completion.logprobs, opts.prefill),
            completion,
        )

    results = await asyncio.gather(*[ask(b, batch) for b, batch in enumerate(groups)])
    rows, tokens, true, predicted = [], [0, 0, 0], [], []
    from_logprobs = from_answer = 0
    for b, (batch, (item, sims, completion)) in enumerate(zip(groups, results, strict=True)):
        for c, sim in zip(batch, sims, strict=True):
            label = c.kind != "random"
            if sim.values is not None:
                true += simulation.true_values(c)
                predicted += sim.values
                if sim.from_logprobs:
                    from_logprobs += len(sim.values)
                else:
                    from_answer += len(sim.values)
            rows.append(
                dict(
                    context_id=c.context_id,
                    variant="plain",
                    marked=None,
                    quantile=c.quantile,
                    label=label,
                    prediction=None if sim.values is None else max(sim.values) >= 0.5,
                    probability=None,
                    batch=b,
                    item=item,
                    reason=sim.reason,
                    simulated=sim.values,
                )
            )
        if completion is not None:
            tokens = [tokens[0] + completion.prompt_tokens, tokens[1] + completion.completion_tokens, tokens[2] + fixed]
    r = pearson(true, predicted) if predicted else None
    n_scored = sum(1 for row in rows if row["simulated"] is not None)
    reasons = [row["reason"] for row in rows if row["reason"]]
    if not predicted:
        reason = f"no excerpt's simulation could be read: {reasons[0] if reasons else ''}"
    elif r is None:
        reason = "the simulation (or the true activations) is constant over every token: correlation undefined"
    else:
        reason = None
    metrics = {"n": n_scored, "n_unscored": len(rows) - n_scored}
    detail = {
        "tokens_from_logprobs": from_logprobs,
        "tokens_from_answer": from_answer,
        "tokens": len(true),
        "excerpts": len(rows),
    }
    return Outcome(
        rows,
        metrics,
        r,
        {"correlation": 0.0, "score": 0.0},
        n_calls=len(groups),
        tokens=tuple(tokens),
        reason=reason,
        detail=detail,
        correlation=r,
    )


async def _ask(queue, scorer, explanation, batch, index, latent, options):
    """One prompt: (item, predictions, probabilities, reason, completion); unreadable -> None predictions."""
    item = f"latent {latent} {scorer} batch {index}"
    messages = classifier.build_messages(scorer, explanation, batch)
    n = len(batch)
    if options.prefill:  # guided: the answer is exactly n space-separated digits
        options = dataclasses.replace(options, regex=f"( [01]){{{n}}}")
    try:
        completion = await queue.run(messages, options, item, scorer)
    except RequestFailed as exc:
        return item, [None] * n, [None] * n, f"request failed: {exc.reason}", None
    answer = options.prefill + completion.text
    predictions, reason = parse_digits(answer, n)
    if predictions is None:
        return item, [None] * n, [None] * n, reason, completion
    probabilities = digit_probabilities(answer, completion.logprobs, n, options.prefill) or [None] * n
    return item, predictions, probabilities, None, completion


def _fixed_tokens(count_tokens, scorer: str) -> int:
    """Prompt tokens of the part every call of this scorer shares (system message and chat framing)."""
    if count_tokens is None:
        return 0
    system = (
        simulation.fixed_text() if scorer == "simulation" else classifier.prompt_text(classifier.SYSTEM[scorer]).strip()
    )
    return count_tokens([{"role": "system", "content": system}])
