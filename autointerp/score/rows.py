"""How a score and its per-context rows are stored: one place for the columns both score writers use
(``stage.py`` and ``intervention_stage.py``), so their rows can be written in one bulk statement per
transaction (``store.bulk.Replacements``)."""

from __future__ import annotations

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
