"""The controls a score is read against: the explanation each latent is scored with under ``--control``.

- ``shuffled``: another latent's explanation. The partner is frozen by the collect, not by the subset
  being scored: every latent of the collect (the ``latents`` view, all statuses) is placed on one cycle,
  a permutation seeded by the collect's identity and ``--seed``; a latent's partner is the next latent
  along that cycle that has an explanation (in the pool the run draws from: the same explainer
  configuration, every latent, whatever ``--latents`` says). Latents without an explanation are stepped
  over, so a partner always has one; restricted to the explained latents the map is again a single
  cycle, a derangement (no latent is its own partner). The partner of a latent changes only when the
  collect, the seed or the set of explained latents changes, never with ``--latents``. (A database
  with no collected latents puts its explained latents on the cycle instead.)
- ``empty``: the empty explanation, which carries no information: every scorer should be at chance.
  Its ``explanation_id`` is that of the explanation it stands in for, so each control row pairs with
  the real score of the same (latent, explainer configuration, scorer configuration).
"""

from __future__ import annotations

import bisect
import hashlib

import numpy as np

from ..errors import AutointerpError

CONTROLS = ("shuffled", "empty")


def explained_latent(explanation_id: str) -> int:
    """The latent an explanation was written for: ``explanation_id`` is '<explainer config>/<latent>'."""
    return int(explanation_id.rsplit("/", 1)[1])


def explainer_config(explanation_id: str) -> str:
    """The explainer configuration hash of an ``explanation_id`` ('<explainer config>/<latent>')."""
    return explanation_id.rsplit("/", 1)[0]


def collect_identity(con) -> str:
    """The config hash of the latest complete collect run ('' for a database without one, e.g. an import)."""
    row = con.execute(
        "SELECT config_hash FROM runs WHERE stage = 'collect' AND status = 'complete' ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    return row[0] if row else ""


def frozen_cycle(latents: list[int], identity: str, seed: int) -> list[int]:
    """``latents`` (the collect's, sorted) in a seeded random order; each latent's successor on this
    cycle (the last's is the first) is where its partner search starts."""
    digest = hashlib.sha256(f"shuffled-control/{identity}/{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    return [int(x) for x in rng.permutation(np.asarray(sorted(latents), dtype=np.int64))]


def partners(cycle: list[int], pool: set[int], latents: list[int]) -> dict[int, int]:
    """Each of ``latents`` (all in ``pool``) -> the next member of ``pool`` after it along ``cycle``.

    ``pool`` latents missing from ``cycle`` (explanations of latents this collect does not have) are
    left out of the search; a latent of ``latents`` missing from it is an error."""
    position = {lat: i for i, lat in enumerate(cycle)}
    marks = sorted(position[lat] for lat in pool if lat in position)
    if len(marks) < 2:
        raise AutointerpError(
            "--control shuffled needs at least two explained latents of this collect.",
            "explanations for two or more latents, so that each can borrow another's.",
            "explain more latents first.",
        )
    out = {}
    for lat in latents:
        if lat not in position:
            raise AutointerpError(
                f"--control shuffled: latent {lat} has an explanation but is not a latent of the collect.",
                "explanations of the collected latents.",
            )
        i = bisect.bisect_right(marks, position[lat])
        out[lat] = cycle[marks[i % len(marks)]]
    return out


def shuffled_control(
    con, chosen: dict[int, tuple[str, str]], pool: dict[int, tuple[str, str]], seed: int
) -> dict[int, tuple[str, str]]:
    """Each chosen latent with its frozen partner's explanation (see the module docstring). ``pool``:
    every latent's selected explanation regardless of ``--latents`` (it contains ``chosen``)."""
    configs = {explainer_config(eid) for eid, _ in chosen.values()}
    pool = {lat: v for lat, v in pool.items() if explainer_config(v[0]) in configs}
    latents = [r[0] for r in con.execute("SELECT latent FROM latents ORDER BY latent").fetchall()]
    latents = latents or sorted(set(pool) | set(chosen))  # a database without collected latents
    cycle = frozen_cycle(latents, collect_identity(con), seed)
    partner = partners(cycle, set(pool) | set(chosen), sorted(chosen))
    return {lat: pool.get(other) or chosen[other] for lat, other in partner.items()}


def empty_control(chosen: dict[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """Each chosen latent with the empty explanation, under the id of the explanation it stands in for."""
    return {lat: (eid, "") for lat, (eid, _) in chosen.items()}


def apply_control(
    con, control: str, chosen: dict[int, tuple[str, str]], pool: dict[int, tuple[str, str]], seed: int
) -> dict[int, tuple[str, str]]:
    """The explanations to score under ``control`` ('' for the real ones)."""
    if control == "shuffled":
        return shuffled_control(con, chosen, pool, seed)
    if control == "empty":
        return empty_control(chosen)
    return chosen
