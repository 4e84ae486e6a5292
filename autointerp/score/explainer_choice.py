"""One explainer configuration per score run.

Without ``--explanations`` the score stage takes each latent's latest explanation, from whichever
explainer configuration wrote it, so one run could silently blend explainers and its aggregate would
describe none of them. When the latents being scored have explanations from more than one
configuration, the run stops and asks which one (issue 15, item 11).
"""

from __future__ import annotations

from ..errors import AutointerpError

#: The explanations a score run may use, given the current collect's run id as its one parameter: explained
#: rows of latents whose status is 'ok' (a full test set), imported ones included, and none that an explain
#: run wrote for an earlier collect (before ``collect --overwrite``): its examples are not those of the
#: current test sets (issue 15 items 3 and 4).
ELIGIBLE = """
SELECT e.* FROM explanation_rows e LEFT JOIN runs r USING (run_id)
WHERE e.status = 'explained' AND e.latent IN (SELECT latent FROM latents WHERE status = 'ok')
  AND (coalesce(r.stage, '') <> 'explain' OR json_extract_string(r.config, '$.resolved.collect_run') = ?)
"""

CONFIGURATIONS = f"""
SELECT config_hash, string_agg(DISTINCT explainer, ', ' ORDER BY explainer),
       string_agg(DISTINCT model, ', ' ORDER BY model), count(DISTINCT latent), max(created_at)
FROM ({ELIGIBLE}) WHERE latent IN (SELECT unnest(?::INTEGER[]))
GROUP BY config_hash ORDER BY max(created_at) DESC, config_hash
"""


def explainer_configurations(con, collect_run: str, latents: list[int]) -> list[tuple[str, str, str, int]]:
    """(config hash, explainer names, models, latents explained) of every explainer configuration with
    an eligible explanation (``ELIGIBLE``) of one of ``latents``, the most recently used first."""
    return [r[:4] for r in con.execute(CONFIGURATIONS, [collect_run, latents]).fetchall()]


def require_one_explainer(con, explanations: str, collect_run: str, latents: list[int]) -> None:
    """Refuse to score ``latents`` without ``--explanations`` (``explanations`` empty) when their
    eligible explanations (for the collect ``collect_run``) come from more than one explainer configuration."""
    if explanations:
        return
    found = explainer_configurations(con, collect_run, latents)
    if len(found) < 2:
        return
    listing = "; ".join(
        f"{chash} (explainer {names}, model {models}): {n} latent{'s' if n != 1 else ''}"
        for chash, names, models, n in found
    )
    raise AutointerpError(
        f"The {len(latents)} latents to score have explanations from {len(found)} explainer configurations: "
        f"{listing}. Scoring each latent's latest one would blend explainers in one aggregate.",
        "one explainer configuration per score run.",
        f"choose one with --explanations CONFIG_HASH (e.g. --explanations {found[0][0]}); "
        "run `autointerp score` once per configuration to compare them.",
    )
