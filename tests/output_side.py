"""Plant the output side of a latent in a copy of a collected database, as the lens and the input/output
scorers would write it: ``logit_lens`` rows of the current collect and ``input_score`` / ``output_score``
rows in ``score_rows``. For the tests of what shows them (summary, browser, export, notebook)."""

from __future__ import annotations

import json

from autointerp.store.runs import current_collect


def plant_lens(con, latent: int, promoted=(), suppressed=(), note: str | None = None) -> None:
    """Replace the latent's logit-lens rows: ``promoted`` / ``suppressed`` are (token_id, token, value) in
    rank order; with ``note`` one row saying why the lens does not apply."""
    run = current_collect(con)
    con.execute("DELETE FROM logit_lens WHERE run_id = ? AND latent = ?", [run, latent])
    columns = "run_id, latent, sign, rank, token_id, token, value, note"
    if note is not None:
        con.execute(
            f"INSERT INTO logit_lens ({columns}) VALUES (?, ?, NULL, NULL, NULL, NULL, NULL, ?)", [run, latent, note]
        )
        return
    for sign, tokens in (("promoted", promoted), ("suppressed", suppressed)):
        for rank, (token_id, token, value) in enumerate(tokens):
            con.execute(
                f"INSERT INTO logit_lens ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                [run, latent, sign, rank, token_id, token, value],
            )


def plant_score(con, latent: int, explanation_id: str, scorer: str, score: float, chance: float, second: int = 0):
    """One scored, uncontrolled row of ``scorer`` (``input_score``, ``output_score``, ...) for the latent."""
    con.execute(
        "INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, status, "
        "n_examples, n_unscored, chance, n_calls, prompt_tokens, completion_tokens, fixed_prompt_tokens, score, "
        "created_at) VALUES (?, ?, ?, 'subject', 'cfg-' || ?, '', 'score-test', 'scored', 20, 0, ?, 0, 0, 0, 0, ?, "
        "TIMESTAMP '2025-03-01 00:00:00' + INTERVAL (?) SECOND)",
        [latent, explanation_id, scorer, scorer, json.dumps({"score": chance}), score, second],
    )
