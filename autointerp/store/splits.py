"""How many examples each latent holds in a split, read back from the ``examples`` view.

Helpers that need a held-out set of a given size (best-of-k selection scores candidates on the
``validate`` split) check it here and fail with a clear error before any LLM call.
"""

from __future__ import annotations

#: Example kinds that are activating contexts; every other kind (random, weak, hard) is a negative.
ACTIVATING_KINDS = ("top", "quantile")


def split_sizes(con, split: str, latents=None) -> dict[int, tuple[int, int]]:
    """latent -> (activating examples, negative examples) in ``split`` ('explain', 'test' or 'validate'),
    for ``latents`` (None: every latent with an example in any split). A latent without rows in the split
    maps to (0, 0)."""
    scope = "" if latents is None else "AND latent IN (SELECT unnest(?))"
    params = [split] + ([] if latents is None else [list(map(int, latents))])
    counts = con.execute(
        f"SELECT latent, count(*) FILTER (WHERE kind IN {ACTIVATING_KINDS}), "
        f"count(*) FILTER (WHERE kind NOT IN {ACTIVATING_KINDS}) "
        f"FROM examples WHERE split = ? {scope} GROUP BY latent",
        params,
    ).fetchall()
    if latents is None:
        latents = [row[0] for row in con.execute("SELECT DISTINCT latent FROM examples ORDER BY latent").fetchall()]
    found = {int(lat): (int(a), int(n)) for lat, a, n in counts}
    return {int(lat): found.get(int(lat), (0, 0)) for lat in latents}


def validate_sizes(con, latents=None) -> dict[int, tuple[int, int]]:
    """latent -> (activating, negative) examples in the ``validate`` split (collect's
    --validate-per-quantile and --random-validate; (0, 0) where none were collected)."""
    return split_sizes(con, "validate", latents)
