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
from ..llm.base import Backend, GenerateOptions
from ..llm.factory import make_backend
from ..llm.queue import LLMQueue, QueueConfig, RequestFailed
from ..store import runs
from ..store.db import connect
from ..store.llm_log import CallLogWriter, run_logged
from ..store.summary import refresh_summary_quietly
from . import classifier
from .answers import digit_probabilities, parse_digits
from .metrics import binary_metrics

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
    shaping.update(model=model, scorer=scorer,
                   prompts=[classifier.prompt_text(classifier.SYSTEM[scorer]), classifier.prompt_text("score_user.txt")])
    return config_hash(shaping)


def select_explanations(con, config: ScoreConfig) -> dict[int, tuple[str, str]]:
    """latent -> (explanation_id, explanation) for the latents to score (before any shuffling)."""
    sql = ("SELECT latent, config_hash, explanation FROM explanation_rows WHERE status = 'explained'"
           + (" AND config_hash = ?" if config.explanations else "") + " ORDER BY latent, created_at")
    rows = con.execute(sql, [config.explanations] if config.explanations else []).fetchall()
    ranges = parse_latent_ranges(config.latents)
    chosen = {}
    for latent, chash, text in rows:  # the latest explanation per latent wins
        if not ranges or any(lo <= latent <= hi for lo, hi in ranges):
            chosen[latent] = (f"{chash}/{latent}", text)
    if not chosen:
        raise AutointerpError("No explained latent to score" + (f" with explanations {config.explanations}" if
                              config.explanations else "") + (f" in --latents {config.latents}" if config.latents else "") + ".",
                              "a database where `autointerp explain` produced explanations.",
                              "run `autointerp explain` first, or check --latents / --explanations.")
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
        if all(a != b for a, b in zip(latents, order)):
            break
    return {lat: chosen[other] for lat, other in zip(latents, order)}


def read_test_sets(cur, latents: list[int]) -> dict[int, list[classifier.TestContext]]:
    out: dict[int, list[classifier.TestContext]] = {lat: [] for lat in latents}
    for lat, cid, kind, q, tokens, acts in cur.execute(
            "SELECT latent, context_id, kind, quantile, tokens, activations FROM examples WHERE split = 'test' "
            "AND latent IN (SELECT unnest(?)) ORDER BY latent, kind, quantile, rank", [latents]).fetchall():
        out[lat].append(classifier.TestContext(cid, kind, q, tokens, acts))
    return out


async def score(config: ScoreConfig, db, progress: bool = True) -> ScoreResult:
    con = connect(db)
    try:
        chosen = select_explanations(con, config)
        if config.control == "shuffled":
            chosen = shuffled_control(chosen, config.seed)
        if any(s != "embedding" for s in config.scorer_list()):
            backend = make_backend(config.backend, config.model, config.base_url, config.api_key_env,
                                   config.timeout)
        else:  # the embedding scorer calls no LLM: load none (the base Backend is never asked)
            backend = Backend()
        try:
            return await _run(con, config, backend, chosen, progress)
        finally:
            await backend.aclose()
    finally:
        refresh_summary_quietly(con)
        con.close()


async def _run(con, config: ScoreConfig, backend, chosen, progress) -> ScoreResult:
    scorers = config.scorer_list()
    embedder = None
    if "embedding" in scorers:
        from .embedding import EmbeddingScorer

        embedder = EmbeddingScorer(config.embedding_model or None)
    models = {s: (embedder.path.name if s == "embedding" else backend.model) for s in scorers}
    identities = {s: scorer_identity(config, s, models[s]) for s in scorers}
    done = set(con.execute("SELECT latent, explanation_id, scorer, config_hash FROM score_rows WHERE control = ?",
                           [config.control]).fetchall())
    jobs_todo = [(lat, s) for lat in sorted(chosen) for s in scorers
                 if (lat, chosen[lat][0], s, identities[s]) not in done]
    run_id = runs.new_run_id("score")
    runs.start_run(con, run_id, "score", {**config.to_dict(), "resolved": {"model": backend.model,
                                                                         "config_hashes": identities}},
                   config_hash(identities))
    writer = CallLogWriter(con, run_id, "score", backend.kind, backend.model)
    queue = LLMQueue(backend, QueueConfig(config.max_in_flight, config.rps, config.tpm, config.max_retries,
                                          config.backoff_base), on_call=writer.log_call)
    options = GenerateOptions(max_tokens=config.max_tokens, temperature=config.temperature,
                              logprobs=config.logprobs, top_logprobs=5 if config.logprobs else 0,
                              prefill=config.answer_prefill("[ANSWER]:"))
    counts = {"scored": 0, "unscored": 0}
    bar = tqdm(total=len(jobs_todo), unit="score", disable=not progress, desc="score", dynamic_ncols=True)
    count_tokens = getattr(backend, "count_tokens", None)
    fixed_tokens = {s: _fixed_tokens(count_tokens, s) for s in scorers if s != "embedding"}
    start = time.perf_counter()

    async def one(latent: int, scorer: str, contexts: list[classifier.TestContext]) -> None:
        explanation_id, explanation = chosen[latent]
        rng = classifier.latent_rng(config.seed, latent, scorer)
        tokens = [0, 0, 0]
        if scorer == "embedding":  # no LLM: cosine similarity of explanation and raw context text
            samples = classifier.detection_samples(contexts)
            groups, n_calls = [samples], 0
            result = await asyncio.to_thread(
                embedder.score, explanation, ["".join(c.tokens) for c in contexts], [s.label for s in samples],
                [s.quantile if s.label else None for s in samples])
            predictions, probabilities = result["prediction"], result["similarity"]
            reasons, items = [None] * len(samples), [None] * len(samples)
        else:
            if scorer == "detection":
                samples = classifier.detection_samples(contexts)
            else:
                samples = classifier.fuzzing_samples(contexts, config.mark_threshold, config.fuzz_random,
                                                     config.fuzz_misplaced, rng)
            groups = classifier.batches(samples, config.batch_size, rng)
            n_calls = len(groups)
            results = await asyncio.gather(*[_ask(queue, scorer, explanation, batch, i, latent, options)
                                             for i, batch in enumerate(groups)])
            predictions, probabilities, reasons, items = [], [], [], []
            for batch, (item, preds, probs, reason, completion) in zip(groups, results):
                predictions += preds
                probabilities += probs
                reasons += [reason] * len(batch)
                items += [item] * len(batch)
                if completion is not None:
                    tokens[0] += completion.prompt_tokens
                    tokens[1] += completion.completion_tokens
                    tokens[2] += fixed_tokens[scorer]
        flat = [s for batch in groups for s in batch]
        metrics = binary_metrics([s.label for s in flat], predictions, probabilities,
                                 [s.quantile if s.label else None for s in flat])
        status = "scored" if metrics["n"] > 0 else "unscored"
        reason = None if status == "scored" else f"no batch answer could be read: {next(filter(None, reasons), '')}"
        chance = metrics["chance"]
        identity = identities[scorer]

        def write(db, call_id_of):
            headline = metrics["auroc"] if scorer == "embedding" else metrics["balanced_accuracy"]
            chance["score"] = chance["auroc"] if scorer == "embedding" else chance["balanced_accuracy"]
            db.execute("INSERT OR REPLACE INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, "
                       "run_id, status, reason, n_examples, n_unscored, balanced_accuracy, accuracy, precision, recall, "
                       "f1, auroc, quantile_recall, chance, n_calls, prompt_tokens, completion_tokens, "
                       "fixed_prompt_tokens, score, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                       "?, ?, ?, ?, ?, ?, ?, ?, now())",
                       [latent, explanation_id, scorer, models[scorer], identity, config.control, run_id, status, reason,
                        metrics["n"], metrics["n_unscored"], metrics["balanced_accuracy"], metrics["accuracy"],
                        metrics["precision"], metrics["recall"], metrics["f1"], metrics["auroc"],
                        json.dumps({str(k): v for k, v in metrics["recall_by_quantile"].items()}),
                        json.dumps(chance), n_calls, tokens[0], tokens[1], tokens[2], headline])
            db.execute("DELETE FROM score_example_rows WHERE latent = ? AND explanation_id = ? AND scorer = ? "
                       "AND config_hash = ? AND control = ?", [latent, explanation_id, scorer, identity, config.control])
            batch_of = [b for b, batch in enumerate(groups) for _ in batch]
            db.executemany(
                "INSERT INTO score_example_rows (run_id, latent, explanation_id, scorer, config_hash, control, "
                "context_id, variant, marked, quantile, label, prediction, probability, batch, call_id, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[run_id, latent, explanation_id, scorer, identity, config.control, s.context_id, s.variant,
                  s.marked or None, s.quantile, s.label, predictions[k], probabilities[k], batch_of[k],
                  call_id_of(items[k]), reasons[k]] for k, s in enumerate(flat)])

        writer.put_result(write)
        counts[status] += 1
        bar.update(1)
        bar.set_postfix(unscored=counts["unscored"], refresh=False)

    def jobs():
        latents = sorted({lat for lat, _ in jobs_todo})
        wanted = set(jobs_todo)
        for i in range(0, len(latents), CHUNK):
            chunk = latents[i:i + CHUNK]
            tests = read_test_sets(cur, chunk)
            for lat, scorer in [(lat, s) for lat in chunk for s in scorers if (lat, s) in wanted]:
                yield lambda lat=lat, scorer=scorer: one(lat, scorer, tests[lat])

    cur = con.cursor()
    try:  # each score sends its batches at once, so fewer scores than requests need to be pending
        await run_logged(con, run_id, writer, jobs(), max(2 * config.max_in_flight, 8))
    finally:
        bar.close()
        cur.close()
    seconds = time.perf_counter() - start
    stats = queue.stats
    summary = {**counts, "jobs": len(jobs_todo), "seconds": round(seconds, 2), "calls": stats.calls,
               "retries": stats.retries, "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens}
    con.execute("UPDATE runs SET status='complete', finished_at=now(), summary=? WHERE run_id=?",
                [json.dumps(summary), run_id])
    return ScoreResult(run_id, counts["scored"], counts["unscored"], len(chosen) * len(scorers) - len(jobs_todo),
                       stats.calls, stats.prompt_tokens, stats.completion_tokens, seconds)


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
    system = classifier.prompt_text(classifier.SYSTEM[scorer]).strip()
    return count_tokens([{"role": "system", "content": system}])
