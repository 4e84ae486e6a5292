"""How a score and its per-context rows are stored: the one writer of every scorer's outcome, in the
bulk form of the single writer's transaction (``store.bulk.Replacements``)."""

from __future__ import annotations

import json

#: A score's identity: a rerun with the same key replaces the score and its per-context rows.
SCORE_KEY = ["latent", "explanation_id", "scorer", "config_hash", "control"]
SCORE_COLUMNS = SCORE_KEY + [
    "model",
    "run_id",
    "status",
    "reason",
    "n_examples",
    "n_unscored",
    "balanced_accuracy",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auroc",
    "quantile_recall",
    "chance",
    "n_calls",
    "prompt_tokens",
    "completion_tokens",
    "fixed_prompt_tokens",
    "score",
    "correlation",
    "detail",
    "n_positive",
    "n_negative",
    "ci_low",
    "ci_high",
    "ci_method",
]
EXAMPLE_COLUMNS = SCORE_KEY + [
    "run_id",
    "context_id",
    "variant",
    "marked",
    "quantile",
    "label",
    "prediction",
    "probability",
    "batch",
    "call_id",
    "reason",
    "simulated",
]


def replace_score(rows, score: dict, examples: list[dict]) -> None:
    """Put ``score`` (a dict over SCORE_COLUMNS; absent ones are NULL) and its per-context ``examples``
    (dicts over EXAMPLE_COLUMNS, the key taken from the score) in place of any stored with its key."""
    key = [score[c] for c in SCORE_KEY]
    rows.replace("score_rows", SCORE_KEY, SCORE_COLUMNS, key, [[score.get(c) for c in SCORE_COLUMNS]], now="created_at")
    rows.replace(
        "score_example_rows",
        SCORE_KEY,
        EXAMPLE_COLUMNS,
        key,
        [[score[c] for c in SCORE_KEY] + [e.get(c) for c in EXAMPLE_COLUMNS[len(SCORE_KEY) :]] for e in examples],
    )


def score_writer(key: dict, model: str, run_id: str, outcome):
    """The single writer's transaction for one ``ScoreOutcome``: its score row (``key`` gives latent,
    explanation_id, scorer, config_hash and control), then its per-context rows, replacing stored ones."""
    m = outcome.metrics
    recall = outcome.quantile_recall
    interval = outcome.interval if outcome.status == "scored" else None
    score = dict(
        key,
        model=model,
        run_id=run_id,
        status=outcome.status,
        reason=outcome.reason,
        n_examples=outcome.n_examples,
        n_unscored=outcome.n_unscored,
        balanced_accuracy=m.get("balanced_accuracy"),
        accuracy=m.get("accuracy"),
        precision=m.get("precision"),
        recall=m.get("recall"),
        f1=m.get("f1"),
        auroc=m.get("auroc"),
        quantile_recall=None if recall is None else json.dumps({str(k): v for k, v in recall.items()}),
        chance=json.dumps(outcome.chance),
        n_calls=outcome.n_calls,
        prompt_tokens=outcome.tokens[0],
        completion_tokens=outcome.tokens[1],
        fixed_prompt_tokens=outcome.tokens[2],
        score=outcome.score if outcome.status == "scored" else None,
        correlation=outcome.correlation,
        detail=json.dumps(outcome.detail) if outcome.detail else None,
        n_positive=outcome.n_positive,
        n_negative=outcome.n_negative,
        ci_low=None if interval is None else interval.low,
        ci_high=None if interval is None else interval.high,
        ci_method=None if interval is None else interval.method,
    )

    def write(rows, call_id_of):
        replace_score(
            rows,
            score,
            [
                dict(
                    run_id=run_id,
                    context_id=r["context_id"],
                    variant=r["variant"],
                    marked=r.get("marked") or None,
                    quantile=r.get("quantile"),
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
