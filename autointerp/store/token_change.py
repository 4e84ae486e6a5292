"""The ``token_change`` table: each latent's promoted and suppressed next tokens under steering, stored
once per (latent, config_hash) so that later explain runs and the browser reuse them; and the neutral
windows of a collect they are computed over."""

from __future__ import annotations

SIGNS = ("promoted", "suppressed")
COLUMNS = ["run_id", "latent", "config_hash", "sign", "rank", "token_id", "token", "value"]


def neutral_windows(con, collect_run: str, n: int, length: int) -> list[list[int]]:
    """The first ``length`` token ids of up to ``n`` of the collect's stored random (non-activating)
    contexts at least that long, the first ones by context id (a fixed choice for a given collect)."""
    rows = con.execute(
        "SELECT DISTINCT c.context_id, c.token_ids FROM latent_examples e JOIN contexts c USING (context_id) "
        "WHERE e.run_id = ? AND c.run_id = ? AND e.kind = 'random' AND len(c.token_ids) >= ? "
        "ORDER BY c.context_id LIMIT ?",
        [collect_run, collect_run, length, n],
    ).fetchall()
    return [list(ids[:length]) for _, ids in rows]


def stored_token_change(con, latents: list[int], config_hash: str) -> dict[int, dict[str, list[tuple[str, float]]]]:
    """latent -> {"promoted": [(token, value), ...], "suppressed": [...]} (rank order) for the latents of
    ``latents`` whose token change is stored under ``config_hash``; the others are absent."""
    found: dict[int, dict[str, list[tuple[str, float]]]] = {}
    for latent, sign, token, value in con.execute(
        "SELECT latent, sign, token, value FROM token_change WHERE config_hash = ? AND latent IN (SELECT unnest(?)) "
        "ORDER BY latent, sign, rank",
        [config_hash, latents],
    ).fetchall():
        found.setdefault(latent, {s: [] for s in SIGNS})[sign].append((token, value))
    return found


def token_change_rows(
    run_id: str, latent: int, config_hash: str, ranked: dict[str, list[tuple[int, str, float]]]
) -> list[list]:
    """Rows of ``token_change`` (in ``COLUMNS`` order) for one latent: ``ranked[sign]`` is its
    (token id, token, value) list, strongest first."""
    return [
        [run_id, latent, config_hash, sign, rank, token_id, token, value]
        for sign in SIGNS
        for rank, (token_id, token, value) in enumerate(ranked[sign])
    ]
