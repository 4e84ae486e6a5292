"""Which latents the demo explains and scores.

Explaining and scoring every latent of the embedded SAE would take hours on a CPU, so the demo takes
``n`` explainable latents (status ``ok``) spread evenly over the range of firing frequencies: rare,
typical and frequent latents alike, not the first ``n`` indices. The choice depends only on the
collect's results (themselves fixed by its seed), so a rerun picks the same latents and resumes.
"""

from __future__ import annotations

from ..errors import AutointerpError


def spread(count: int, n: int) -> list[int]:
    """``n`` distinct positions of ``range(count)`` at the centres of ``n`` equal slices (all if fewer)."""
    if n >= count:
        return list(range(count))
    return [int((i + 0.5) * count / n) for i in range(n)]


def choose_latents(con, n: int) -> list[int]:
    """``n`` ``ok`` latents at evenly spaced ranks of frequency (ties broken by index), sorted by index."""
    ok = [
        r[0]
        for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY frequency, latent").fetchall()
    ]
    if not ok:
        counts = dict(con.execute("SELECT status, count(*) FROM latents GROUP BY status").fetchall())
        raise AutointerpError(
            f"The collect left no explainable latent ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}).",
            "latents with enough activating and non-activating contexts for an explain and a test set.",
            "raise --tokens (more text gives every latent more contexts), or use a new --db.",
        )
    return sorted(ok[i] for i in spread(len(ok), n))
