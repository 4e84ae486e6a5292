"""One explainer configuration per score run.

Without ``--explanations`` the score stage takes each latent's latest explanation, from whichever
explainer configuration wrote it, so one run could silently blend explainers and its aggregate would
describe none of them. When the latents being scored have explanations from more than one
configuration, the run stops and asks which one (issue 15, item 11).
"""

from __future__ import annotations

from ..errors import AutointerpError

CONFIGURATIONS = """
SELECT config_hash, string_agg(DISTINCT explainer, ', ' ORDER BY explainer),
       string_agg(DISTINCT model, ', ' ORDER BY model), count(DISTINCT latent), max(created_at)
FROM explanation_rows WHERE status = 'explained' AND latent IN (SELECT unnest(?::INTEGER[]))
GROUP BY config_hash ORDER BY max(created_at) DESC, config_hash
"""


def explainer_configurations(con, latents: list[int]) -> list[tuple[str, str, str, int]]:
    """(config hash, explainer names, models, latents explained) of every explainer configuration with
    an explanation of one of ``latents``, the most recently used first."""
    return [r[:4] for r in con.execute(CONFIGURATIONS, [latents]).fetchall()]


def require_one_explainer(con, explanations: str, latents: list[int]) -> None:
    """Refuse to score ``latents`` without ``--explanations`` (``explanations`` empty) when their
    explanations come from more than one explainer configuration."""
    if explanations:
        return
    found = explainer_configurations(con, latents)
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
