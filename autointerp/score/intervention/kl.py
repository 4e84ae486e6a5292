"""KL calibration: the mean KL(clean || steered) of the next token at the end of the neutral prompts, and
the steering scale that reaches a target KL."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import torch

from ...errors import AutointerpError
from ...models.steering import model_device, steering, torch_module
from ...models.subject import find_module
from .inputs import encode_left, position_ids


class _KLProbe:
    """The prompts encoded once, the clean next-token log-probabilities at their last positions and the
    mean norm of the hookpoint's output there; ``per_prompt(scales)`` evaluates several scales in one
    batched forward pass (the prompts repeated once per scale)."""

    def __init__(self, model, tokenizer, hookpoint: str, direction: torch.Tensor, prompts: Sequence[str]):
        self.model = torch_module(model)
        self.hookpoint, self.direction = hookpoint, direction
        self.ids, self.mask = encode_left(tokenizer, prompts, model_device(self.model))
        captured: list[torch.Tensor] = []

        def capture(mod, inputs, output):  # noqa: ARG001 - torch hook signature
            captured.append((output[0] if isinstance(output, tuple) else output)[:, -1].float())

        handle = find_module(self.model, hookpoint).register_forward_hook(capture)
        try:
            self.clean = self._last_logprobs(self.ids, self.mask)
        finally:
            handle.remove()
        self.residual_norm = float(captured[0].norm(dim=-1).mean())

    @torch.inference_mode()
    def _last_logprobs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False, logits_to_keep=1
        ).logits[:, -1]
        return torch.log_softmax(logits.double(), dim=-1)

    def per_prompt(self, scales: Sequence[float]) -> torch.Tensor:
        """KL(clean || steered) at each prompt's last position, in nats, shape [n_scales, n_prompts]."""
        n = self.ids.shape[0]
        per_row = torch.tensor(list(scales), dtype=torch.float32).repeat_interleave(n)
        with steering(self.model, self.hookpoint, self.direction, per_row):
            steered = self._last_logprobs(self.ids.repeat(len(scales), 1), self.mask.repeat(len(scales), 1))
        clean = self.clean.repeat(len(scales), 1)
        kl = (clean.exp() * (clean - steered)).sum(-1).clamp(min=0)
        return kl.reshape(len(scales), n).cpu()

    def kl(self, scales: Sequence[float]) -> list[float]:
        """Mean KL over the prompts for each scale."""
        return self.per_prompt(scales).mean(-1).tolist()


def kl_for_scale(
    model,
    tokenizer,
    hookpoint: str,
    direction: torch.Tensor,
    prompts: Sequence[str],
    scale: float,
    per_prompt: bool = False,
) -> float | torch.Tensor:
    """Mean over ``prompts`` of KL(p_clean || p_steered), in nats, where p is the next-token distribution
    at the prompt's last position and p_steered adds ``scale * direction`` at ``hookpoint``.

    This direction (the convention of all three reference codebases) is the expectation, under what the
    unsteered model would say, of how much less likely the steered model finds it: it weighs the tokens
    the model actually uses and is finite since softmax never gives 0. ``per_prompt`` returns the
    [n_prompts] values instead of their mean.
    """
    values = _KLProbe(model, tokenizer, hookpoint, direction, prompts).per_prompt([scale])[0]
    return values if per_prompt else float(values.mean())


class UnreachableKL(AutointerpError):
    """No scale within the search range gives the target KL; ``calibration`` says how close it came."""

    def __init__(self, calibration: KLCalibration):
        self.calibration = calibration
        super().__init__(
            f"Target KL {calibration.target_kl:g} nats (± {calibration.tolerance:g}) not reached: "
            f"{calibration.reason}.",
            "a target KL this direction can reach on these prompts",
            "lower target_kl, raise max_scale, or record this latent as not steerable.",
        )


@dataclass
class KLCalibration:
    """Outcome of ``scale_for_target_kl``. When ``reached``, ``kl`` is the mean KL measured at exactly
    ``scale`` and |kl - target_kl| <= tolerance; otherwise ``scale`` and ``kl`` are NaN (so they cannot
    be used by mistake: ``steering`` refuses them), ``reason`` says why, and ``closest`` is the evaluated
    (scale, kl) nearest the target."""

    target_kl: float
    tolerance: float
    reached: bool
    scale: float = math.nan
    kl: float = math.nan
    reason: str = ""
    closest: tuple[float, float] = (math.nan, math.nan)
    evaluations: list[tuple[float, float]] = field(default_factory=list)  # (signed scale, mean KL)
    forward_passes: int = 0  # batched steered passes (the clean pass not counted)


def scale_for_target_kl(
    model,
    tokenizer,
    hookpoint: str,
    direction: torch.Tensor,
    prompts: Sequence[str],
    target_kl: float,
    tolerance: float | None = None,
    *,
    sign: int = 1,
    initial_scale: float | None = None,
    max_scale: float | None = None,
    points_per_pass: int = 4,
    max_passes: int = 12,
    strict: bool = True,
) -> KLCalibration:
    """The steering scale whose mean KL(clean || steered) on ``prompts`` is ``target_kl`` ± ``tolerance``
    nats (default tolerance: 10% of the target, delphi's rtol).

    Each batched forward pass evaluates ``points_per_pass`` scales. First a geometric bracketing: scales
    doubling upward from ``initial_scale`` (or halving downward) until one gives KL below the target
    window and another above it. Then the bracket is cut in log-scale at ``points_per_pass`` equally
    spaced interior points per pass, keeping the adjacent pair that straddles the target; since KL is
    continuous in the scale, a scale within tolerance lies between them even where KL is not monotone.
    The first evaluated scale inside the window is returned with its measured KL.

    Scales are magnitudes along ``sign * direction``: ``sign=-1`` steers the other way (the opposite
    side of the latent), and the returned ``scale`` is signed accordingly. The default ``initial_scale``
    is a quarter and the default ``max_scale`` 100 times the scale at which the steering vector's norm
    equals the mean norm of the hookpoint's output at the prompts' last positions (past that the
    direction swamps the residual stream and KL saturates). If the target is not reached (saturation,
    ``max_scale`` or ``max_passes``), raises ``UnreachableKL`` when ``strict``, else returns a
    calibration with ``reached=False``.
    """
    if sign not in (1, -1):
        raise AutointerpError(f"sign={sign!r}.", "1 (the direction's own way) or -1 (the opposite way).")
    if not target_kl > 0:
        raise AutointerpError(f"target_kl={target_kl!r}.", "a positive KL in nats, e.g. 0.5 or 1.0.")
    tolerance = 0.1 * target_kl if tolerance is None else float(tolerance)
    if not 0 < tolerance < target_kl:
        raise AutointerpError(f"tolerance={tolerance!r} for target_kl={target_kl!r}.", "0 < tolerance < target_kl.")
    if points_per_pass < 1:
        raise AutointerpError(f"points_per_pass={points_per_pass!r}.", "at least 1.")
    norm = float(direction.detach().float().norm())
    if norm == 0 or not math.isfinite(norm):
        raise AutointerpError(f"The steering direction has norm {norm}.", "a non-zero, finite direction.")

    probe = _KLProbe(model, tokenizer, hookpoint, direction, prompts)
    unit = probe.residual_norm / norm
    max_scale = 100.0 * unit if max_scale is None else float(max_scale)
    initial_scale = min(0.25 * unit, max_scale) if initial_scale is None else float(initial_scale)
    if not 0 < initial_scale <= max_scale:
        raise AutointerpError(
            f"initial_scale={initial_scale!r}, max_scale={max_scale!r}.", "0 < initial_scale <= max_scale."
        )
    min_scale = max_scale * 1e-9
    result = KLCalibration(target_kl=target_kl, tolerance=tolerance, reached=False)
    low, high = target_kl - tolerance, target_kl + tolerance

    def evaluate(magnitudes: list[float]) -> list[float]:
        values = probe.kl([sign * m for m in magnitudes])
        result.evaluations += [(sign * m, k) for m, k in zip(magnitudes, values, strict=True)]
        result.forward_passes += 1
        inside = [(abs(k - target_kl), m, k) for m, k in zip(magnitudes, values, strict=True) if low <= k <= high]
        if inside:
            _, m, k = min(inside)
            result.reached, result.scale, result.kl = True, sign * m, k
        return values

    def give_up(reason: str) -> KLCalibration:
        result.reason = reason
        result.closest = min(result.evaluations, key=lambda e: abs(e[1] - target_kl))
        if strict:
            raise UnreachableKL(result)
        return result

    # Bracketing. No evaluated KL is inside the window (else we have returned), so each one is either
    # below it or above it; `below` and `above` are (magnitude, kl) with below's magnitude the smaller.
    below: tuple[float, float] | None = None
    above: tuple[float, float] | None = None
    upward, start = True, initial_scale
    while below is None or above is None:
        if result.forward_passes >= max_passes:
            return give_up(f"no bracket after {max_passes} forward passes")
        if upward:
            grid = sorted({min(start * 2.0**i, max_scale) for i in range(points_per_pass)})
        else:
            grid = sorted({max(start * 0.5**i, min_scale) for i in range(points_per_pass)}, reverse=True)
        values = evaluate(grid)
        if result.reached:
            return result
        pairs = list(zip(grid, values, strict=True))
        if upward:
            chain = ([below] if below else []) + pairs  # increasing magnitude
            j = next((i for i, (_, k) in enumerate(chain) if k > high), None)
            if j is None:
                below = chain[-1]
                if below[0] >= max_scale:
                    return give_up(
                        f"the largest KL is {below[1]:.4g} nats, at max_scale {sign * max_scale:g}"
                        + (" (KL saturates)" if _saturates(values) else "")
                    )
                start = below[0] * 2.0
            elif j == 0:  # the first scale already overshoots: search downward from it
                above, upward, start = chain[0], False, chain[0][0] * 0.5
            else:
                below, above = chain[j - 1], chain[j]
        else:
            chain = ([above] if above else []) + pairs  # decreasing magnitude
            j = next((i for i, (_, k) in enumerate(chain) if k < low), None)
            if j is None:
                above = chain[-1]
                if above[0] <= min_scale:
                    return give_up(f"KL is still {above[1]:.4g} nats at scale {sign * min_scale:g}")
                start = above[0] * 0.5
            else:
                below, above = chain[j], chain[j - 1]

    while result.forward_passes < max_passes:
        a, b = math.log(below[0]), math.log(above[0])
        grid = [math.exp(a + (b - a) * (i + 1) / (points_per_pass + 1)) for i in range(points_per_pass)]
        values = evaluate(grid)
        if result.reached:
            return result
        pairs = [below] + list(zip(grid, values, strict=True)) + [above]  # ordered from the below end to the above end
        for p0, p1 in pairwise(pairs):
            if p0[1] < low and p1[1] > high:
                below, above = p0, p1
                break
    return give_up(
        f"not within tolerance after {max_passes} forward passes (KL jumps from "
        f"{below[1]:.4g} to {above[1]:.4g} nats between scales {sign * below[0]:g} and "
        f"{sign * above[0]:g})"
    )


def _saturates(values: list[float]) -> bool:
    """The last doubling of the scale raised KL by under 5%: larger scales will not help."""
    return len(values) >= 2 and values[-1] <= values[-2] * 1.05
