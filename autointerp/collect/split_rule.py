"""How many contexts of each kind a latent's explain, test and validate sets get: pure functions of counts.

The full plan (the defaults: 20 top + 10 quantiles x 4 for explain, 10 x 5 for test, no validate set)
needs ``D = sides x top_k + n_quantiles x (explain_per_quantile + test_per_quantile +
validate_per_quantile)`` activating contexts (``sides`` is the number of signs the latent has top
contexts of: 1, or 2 for a signed latent that fires with both signs, which keeps top contexts of each).
A latent with fewer shrinks the three sets together:

1. **Top contexts**: ``floor(top_k x min(1, n / D))`` per sign, ``n`` being the latent's activating
   contexts. The would-be top contexts left out stay in the pool the quantiles are cut from, so the
   test set gets some of the strongest contexts too.
2. **Quantile bins** are cut from the ``R`` activating contexts that remain once the kept top contexts are
   taken out: ``n_quantiles`` equal-count bins by rank (``rank x n_quantiles // R``, rank 0 the weakest),
   so the strongest bin is never emptied by the top-k.
3. **Per bin** the bin gives ``c = min(size, P)`` contexts, ``P = explain_per_quantile +
   test_per_quantile + validate_per_quantile``. Of the ``C_q`` contexts given by bins 0..q together,
   ``T_q = ceil(C_q x t / P)`` go to the test set (``t = test_per_quantile``), and of the ``C_q - T_q``
   left, ``V_q = ceil((C_q - T_q) x v / (v + e))`` to the validate set (``v``, ``e`` the validate and
   explain per-quantile sizes); so bin q gives ``T_q - T_(q-1)`` test and ``V_q - V_(q-1)`` validate
   contexts and the rest of its ``c`` to explain. At the full plan this is exactly ``t``, ``v`` and
   ``e`` per bin; below it every bin keeps all three sets (as far as its size allows), the rounding never
   takes more than one context from any of them, and with ``v = 0`` the test and explain counts are the
   two-way rule's exactly.

The test set's share of the activating contexts is then at least ``n_quantiles x test_per_quantile / D``
(50 / 110 = 45% at the defaults; 50 / 130 = 38% for signed latents), because step 1 leaves at least
``n x (1 - sides x top_k / D)`` contexts for the bins and step 3 gives the test set at least the
fraction ``t / P`` of them; the validate set likewise keeps at least the fraction ``v / (v + e)`` of
what the test set leaves in the bins.
"""

from __future__ import annotations

import torch


def full_plan(
    top_k: int,
    n_quantiles: int,
    explain_per_quantile: int,
    test_per_quantile: int,
    sides: torch.Tensor | int,
    validate_per_quantile: int = 0,
) -> torch.Tensor | int:
    """Activating contexts the full plan uses: ``sides x top_k + n_quantiles x (explain + test + validate
    per quantile)``, ``sides`` being the number of signs a latent has top contexts of (per latent)."""
    return sides * top_k + n_quantiles * (explain_per_quantile + test_per_quantile + validate_per_quantile)


def top_quota(n_active: torch.Tensor, top_k: int, plan: torch.Tensor | int) -> torch.Tensor:
    """Top contexts kept per sign for latents with ``n_active`` activating contexts: ``floor(top_k x
    min(1, n / plan))``."""
    n = n_active.to(torch.int64)
    plan = torch.as_tensor(plan, dtype=torch.int64, device=n.device).clamp(min=1)
    return torch.clamp(n * top_k // plan, max=top_k)


def bin_sizes(remaining: torch.Tensor, n_quantiles: int) -> torch.Tensor:
    """[latents, n_quantiles]: how many of ``remaining`` ranked contexts fall in each bin when rank r
    goes to bin ``r x n_quantiles // remaining`` (``ceil((q + 1) R / Q) - ceil(q R / Q)``)."""
    r = remaining.to(torch.int64).unsqueeze(1)
    q = torch.arange(n_quantiles + 1, device=r.device).unsqueeze(0)
    upto = (q * r + n_quantiles - 1) // n_quantiles  # ceil(q R / Q): contexts in bins below q
    return upto[:, 1:] - upto[:, :-1]


def bin_quotas(
    remaining: torch.Tensor, n_quantiles: int, explain_per_quantile: int, test_per_quantile: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(test, explain) contexts per bin, each [latents, n_quantiles], for latents with ``remaining``
    activating contexts after the top contexts, when no validate set is asked for."""
    test, _, explain = split_quotas(remaining, n_quantiles, explain_per_quantile, test_per_quantile, 0)
    return test, explain


def split_quotas(
    remaining: torch.Tensor,
    n_quantiles: int,
    explain_per_quantile: int,
    test_per_quantile: int,
    validate_per_quantile: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(test, validate, explain) contexts per bin, each [latents, n_quantiles], for latents with
    ``remaining`` activating contexts after the top contexts (step 3 of the module docstring)."""
    per_bin = explain_per_quantile + test_per_quantile + validate_per_quantile
    given = torch.clamp(bin_sizes(remaining, n_quantiles), max=per_bin)
    if per_bin == 0:
        return given, given, given
    cumulative = torch.cumsum(given, dim=1)
    test_upto = (cumulative * test_per_quantile + per_bin - 1) // per_bin
    # Validate takes its share of what the test set leaves, so both stay non-decreasing bin by bin.
    left_upto = cumulative - test_upto
    rest = validate_per_quantile + explain_per_quantile
    validate_upto = (left_upto * validate_per_quantile + rest - 1) // rest if rest else torch.zeros_like(left_upto)
    test, validate = _per_bin(test_upto), _per_bin(validate_upto)
    return test, validate, given - test - validate


def _per_bin(upto: torch.Tensor) -> torch.Tensor:
    """Per-bin counts from cumulative ones."""
    return torch.diff(upto, dim=1, prepend=torch.zeros_like(upto[:, :1]))
