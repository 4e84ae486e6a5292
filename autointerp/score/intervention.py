"""The steering core of intervention scoring: push a latent's decoder direction, calibrated by KL.

- ``steering(model, hookpoint, direction, scale)``: a context manager that adds ``scale * direction``
  to the output of the module ``hookpoint`` at every position of every forward pass inside it, the
  prompt and each generated token alike (a decoder-direction addition, no SAE round trip). We steer
  every position rather than only the last prompt token (delphi) because the steered completions
  should carry the latent's effect throughout, as in Gur-Arieh et al.'s output metric.
- ``kl_for_scale`` / ``scale_for_target_kl``: the mean KL(clean || steered) of the next-token
  distribution at the last position of neutral prompts, and the scale that reaches a target KL.
- ``generate_completions``: clean and steered continuations that share their random numbers.
- ``surprisal_score``: delphi's surprisal variant (spec section B, PR #151).

The scale multiplies the direction as passed (a raw decoder row: the scale is then in units of the
latent's activation). Steering goes the direction's own way by default; the other side is the same
search with ``sign=-1`` (equivalently ``-direction``), and the signed scale it returns is what
``steering`` takes.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import torch

from .. import resources
from ..errors import AutointerpError
from ..models.subject import find_module

PROMPTS_DIR = resources.prompts()
NEUTRAL_PROMPTS = "intervention_neutral_prompts.txt"
SURPRISAL_TEMPLATE = "intervention_surprisal.txt"


# --------------------------------------------------------------------------------------------- steering


def _torch_model(model) -> torch.nn.Module:
    """The torch module of a ``SubjectModel`` or of a plain causal LM."""
    return model if isinstance(model, torch.nn.Module) else model.model


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def steering(model, hookpoint: str, direction: torch.Tensor, scale: float | torch.Tensor) -> Iterator[None]:
    """Add ``scale * direction`` to the output of module ``hookpoint`` for every forward pass run inside
    the ``with`` block, at every position (prompt and generated tokens; with a KV cache each call's
    output holds only its new positions, so each is steered once). ``scale`` is a number, or a tensor
    [batch] of one scale per sequence (several strengths in one batch). The hook is removed on exit,
    even on an error, so no other forward pass is touched."""
    scales = torch.as_tensor(scale, dtype=torch.float32).detach().cpu()
    if scales.dim() > 1 or not torch.isfinite(scales).all():
        raise AutointerpError(
            f"Steering scale {scale!r} is not a finite number (or a [batch] tensor of them).",
            "finite scales, e.g. KLCalibration.scale of a calibration that reached its target.",
        )
    direction = direction.detach().reshape(-1)
    module = find_module(_torch_model(model), hookpoint)
    cache: dict[tuple, torch.Tensor] = {}

    def hook(mod, inputs, output):  # noqa: ARG001 - torch hook signature
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.shape[-1] != direction.numel():
            raise AutointerpError(
                f"The steering direction has {direction.numel()} values but the output of "
                f"{hookpoint} has width {hidden.shape[-1]}.",
                "a decoder direction written to this module's output.",
            )
        if scales.dim() == 1 and (hidden.dim() != 3 or hidden.shape[0] != scales.numel()):
            raise AutointerpError(
                f"{scales.numel()} steering scales for a batch of shape {tuple(hidden.shape)}.",
                "one scale per sequence of the batch.",
            )
        key = (hidden.device, hidden.dtype)
        if key not in cache:  # computed in float32, then cast, so a bf16 model gets the rounded vector once
            vector = direction.to(device=hidden.device, dtype=torch.float32)
            vector = scales.to(hidden.device)[:, None, None] * vector if scales.dim() else scales.item() * vector
            cache[key] = vector.to(hidden.dtype)
        steered = hidden + cache[key]
        return (steered, *output[1:]) if isinstance(output, tuple) else steered

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def steering_target(dictionary, latent: int, subject_model=None) -> tuple[str, torch.Tensor]:
    """(module whose output latent ``latent`` writes to, its decoder direction [d_out]).

    An SAE reading a module's output writes back to that output. A transcoder reads a module's input
    and writes to ``hookpoint_out``; MLP neurons read the input of the down projection and write its
    output. A transcoder whose files do not say where it writes cannot be steered.
    """
    from ..models.dictionaries import NeuronDictionary, resolve_module_names

    if subject_model is not None:
        resolve_module_names(dictionary, subject_model)
    if dictionary.reads == "output" or isinstance(dictionary, NeuronDictionary):
        target = dictionary.hookpoint
    else:
        target = dictionary.hookpoint_out
    if not target:
        raise AutointerpError(
            f"Cannot tell where latent {latent} of the {dictionary.describe()} writes.",
            "an SAE reading a module's output, or a transcoder whose files name the module it writes (hookpoint_out).",
            "steer by hand: steering(model, '<module whose output the decoder reconstructs>', direction, scale).",
        )
    directions = dictionary.decoder_directions()
    if not 0 <= latent < directions.shape[0]:
        raise AutointerpError(f"Latent {latent} is out of range.", f"0 <= latent < {directions.shape[0]}.")
    return target, directions[latent].detach().clone()


# ------------------------------------------------------------------------------------------------ prompts


def neutral_prompts(path: str | Path | None = None) -> list[str]:
    """The neutral prompt openings, one per non-empty line (lines starting with # are comments);
    default ``prompts/intervention_neutral_prompts.txt``."""
    path = Path(path) if path is not None else PROMPTS_DIR / NEUTRAL_PROMPTS
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise AutointerpError(f"{path} holds no prompt.", "one neutral prompt per line.")
    return prompts


def _encode_left(tokenizer, prompts: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (input_ids, attention_mask), so every prompt's last token is at position -1."""
    if not prompts:
        raise AutointerpError("No prompts were given.", "at least one prompt.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rows = [tokenizer(p).input_ids for p in prompts]
    if any(len(r) == 0 for r in rows):
        raise AutointerpError("A prompt tokenizes to no token.", "non-empty prompts.")
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (as ``generate`` computes them)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


# ----------------------------------------------------------------------------------------------------- KL


class _KLProbe:
    """The prompts encoded once, the clean next-token log-probabilities at their last positions and the
    mean norm of the hookpoint's output there; ``per_prompt(scales)`` evaluates several scales in one
    batched forward pass (the prompts repeated once per scale)."""

    def __init__(self, model, tokenizer, hookpoint: str, direction: torch.Tensor, prompts: Sequence[str]):
        self.model = _torch_model(model)
        self.hookpoint, self.direction = hookpoint, direction
        self.ids, self.mask = _encode_left(tokenizer, prompts, _device(self.model))
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
            input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False, logits_to_keep=1
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


# --------------------------------------------------------------------------------------------- generation


@torch.inference_mode()
def generate_completions(
    model,
    tokenizer,
    prompts: Sequence[str],
    direction: torch.Tensor | None = None,
    scale: float | torch.Tensor = 0.0,
    hookpoint: str | None = None,
    max_new_tokens: int = 20,
    seed: int = 0,
    temperature: float = 0.7,
    *,
    noise_rows: int | None = None,
) -> list[str]:
    """One continuation per prompt (the new text only, cut at end-of-sequence), all prompts in one
    left-padded batch, with ``scale * direction`` added at ``hookpoint`` when a direction is given
    (``scale`` may be a tensor of one scale per prompt, as ``steering`` takes).

    Sampling draws the token argmax(log p - log E) with E ~ Exp(1) noise from a ``torch.Generator``
    seeded with ``seed`` (the exponential race: an exact sample of p). The same seed gives clean and
    steered runs the same noise, so the steering is the only difference between them; ``temperature``
    0 is greedy. ``hookpoint`` defaults to that of a ``SubjectModel`` reading a module's output.
    ``noise_rows``: draw noise for that many rows and repeat it, so row i shares its random numbers with
    rows i + noise_rows, i + 2 noise_rows, ... (``generate_clean_and_steered``).
    """
    if max_new_tokens < 1 or temperature < 0:
        raise AutointerpError(
            f"max_new_tokens={max_new_tokens!r}, temperature={temperature!r}.",
            "max_new_tokens >= 1 and temperature >= 0 (0: greedy).",
        )
    if noise_rows is not None and (noise_rows < 1 or len(prompts) % noise_rows):
        raise AutointerpError(
            f"noise_rows={noise_rows!r} for {len(prompts)} prompts.", "a positive divisor of the number of prompts."
        )
    net = _torch_model(model)
    if direction is not None and not hookpoint:
        # a SubjectModel's hookpoint is where its SAE writes only when the SAE reads the module's output
        hookpoint = getattr(model, "hookpoint", "") if getattr(model, "reads", "") == "output" else ""
        if not hookpoint:
            raise AutointerpError(
                "A steering direction without the module to steer.",
                "hookpoint=<module name> (steering_target gives it), or a SubjectModel "
                "reading the output its SAE reconstructs.",
            )
    device = _device(net)
    ids, mask = _encode_left(tokenizer, prompts, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    eos = _eos_ids(net, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(eos[0])
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    new: list[torch.Tensor] = []
    steer = steering(net, hookpoint, direction, scale) if direction is not None else nullcontext()
    with steer:
        positions = _positions(mask)
        out = net(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        for step in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            if temperature > 0:
                rows = logits.shape[0] if noise_rows is None else noise_rows
                noise = logits.new_empty((rows, logits.shape[1])).exponential_(generator=generator)
                noise = noise.repeat(logits.shape[0] // rows, 1)
                token = (torch.log_softmax(logits / temperature, dim=-1) - noise.log()).argmax(-1)
            else:
                token = logits.argmax(-1)
            token = torch.where(done, torch.full_like(token, pad), token)
            new.append(token)
            done |= torch.isin(token, eos)
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            out = net(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
    tokens = torch.stack(new, dim=1).tolist() if new else [[] for _ in prompts]
    eos_set = set(eos.tolist())
    texts = []
    for row in tokens:
        cut = next((i for i, t in enumerate(row) if t in eos_set), len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return texts


def generate_clean_and_steered(
    model,
    tokenizer,
    prompts: Sequence[str],
    direction: torch.Tensor,
    scale: float,
    hookpoint: str | None = None,
    max_new_tokens: int = 20,
    seed: int = 0,
    temperature: float = 0.7,
) -> tuple[list[str], list[str]]:
    """(clean, steered) continuations of ``prompts``: ``generate_completions`` without and with
    ``scale * direction`` from one seed, run as one batch of 2 x len(prompts) rows whose clean rows are
    steered by 0 and share their noise with the steered rows. A decoding step of a small model on a CPU
    costs about the same for 10 rows as for 20 (each step reads all weights once), so this takes about
    half the time of the two calls."""
    n = len(prompts)
    scales = torch.tensor([0.0] * n + [float(scale)] * n)
    texts = generate_completions(
        model,
        tokenizer,
        list(prompts) * 2,
        direction,
        scales,
        hookpoint,
        max_new_tokens,
        seed,
        temperature,
        noise_rows=n,
    )
    return texts[:n], texts[n:]


def _eos_ids(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(sorted(set(ids)), device=_device(model), dtype=torch.long)


# ---------------------------------------------------------------------------------------------- surprisal


def render_surprisal(passage: str, explanation: str, template: str | None = None) -> tuple[str, str]:
    """(context, scored text) of the surprisal template: everything before ``$explanation`` is the
    context; the explanation and the rest of the template (whitespace before it included, so that
    " cooking" is one natural token) is scored."""
    text = template if template is not None else (PROMPTS_DIR / SURPRISAL_TEMPLATE).read_text(encoding="utf-8")
    head, mark, tail = text.rstrip("\n").partition("$explanation")
    if not mark:
        raise AutointerpError(
            "The surprisal template has no $explanation placeholder.",
            "a template ending with the explanation, e.g. 'The text above is about: $explanation'.",
        )
    context = string.Template(head).substitute(passage=passage)
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + explanation.strip() + string.Template(tail).substitute()


@torch.inference_mode()
def explanation_logprobs(
    scorer_model,
    tokenizer,
    explanation: str,
    passages: Sequence[str],
    template: str | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """log p(explanation | passage) in nats under the scorer LM, for each passage: the sum over the
    scored tokens (``render_surprisal``), each conditioned on everything before it. Context and scored
    text are tokenized apart (special tokens, e.g. a BOS, on the context only) and scored as one
    sequence. Sequences are left-padded, so every scored span ends at the last position and only the
    logits of the last (longest span + 1) positions are computed: the vocabulary projection and its
    softmax cost a few positions per passage instead of all of them."""
    net = _torch_model(scorer_model)
    device = _device(net)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    rows: list[tuple[list[int], int]] = []
    for passage in passages:
        context, scored = render_surprisal(passage, explanation, template)
        ctx = tokenizer(context).input_ids
        target = tokenizer(scored, add_special_tokens=False).input_ids
        if not target:
            raise AutointerpError("The explanation tokenizes to no token.", "a non-empty explanation.")
        rows.append((ctx + target, len(target)))
    values = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(r) for r, _ in chunk)
        keep = max(n for _, n in chunk) + 1
        ids = torch.tensor([[pad] * (width - len(r)) + r for r, _ in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r, _ in chunk], device=device)
        logits = net(
            input_ids=ids, attention_mask=mask, position_ids=_positions(mask), use_cache=False, logits_to_keep=keep
        ).logits  # positions width - keep .. width - 1
        logprobs = torch.log_softmax(logits.double(), -1)
        for i, (_, n) in enumerate(chunk):
            # the scored tokens are the last n; each is predicted by the logits one position earlier
            values.append(logprobs[i, keep - 1 - n : keep - 1].gather(-1, ids[i, width - n :, None]).sum())
    return torch.stack(values).cpu()


def surprisal_score(
    scorer_model,
    tokenizer,
    explanation: str,
    clean_completions: Sequence[str],
    steered_completions: Sequence[str],
    prompts: Sequence[str] | None = None,
    template: str | None = None,
) -> dict:
    """How much more a scorer LM expects ``explanation`` after steered text than after clean text:
    the mean over prompts of log p(explanation | steered passage) - log p(explanation | clean passage),
    in nats (delphi's intervention score, surprisal_clean - surprisal_steered). A passage is the
    completion, preceded by its prompt when ``prompts`` is given; the framing is
    ``prompts/intervention_surprisal.txt``.

    Chance level is 0: when the steering has nothing to do with the explanation, clean and steered
    passages are equally likely to evoke it. Positive: the explanation predicts the steered text.
    Returns ``score``, ``sem`` (standard error over prompts; NaN for one prompt), ``per_prompt``,
    ``logp_clean``, ``logp_steered`` (lists, nats), ``n_prompts`` and ``unit``.
    """
    if len(clean_completions) != len(steered_completions) or not clean_completions:
        raise AutointerpError(
            f"{len(clean_completions)} clean and {len(steered_completions)} steered completions.",
            "the same, non-zero number of each (one pair per prompt).",
        )
    if prompts is not None and len(prompts) != len(clean_completions):
        raise AutointerpError(
            f"{len(prompts)} prompts for {len(clean_completions)} completions.", "one prompt per completion pair."
        )
    heads = list(prompts) if prompts is not None else [""] * len(clean_completions)
    passages = [h + c for h, c in zip(heads, clean_completions, strict=True)] + [
        h + c for h, c in zip(heads, steered_completions, strict=True)
    ]
    logps = explanation_logprobs(scorer_model, tokenizer, explanation, passages, template)
    n = len(clean_completions)
    clean, steered = logps[:n], logps[n:]
    delta = steered - clean
    sem = float(delta.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.nan
    return {
        "score": float(delta.mean()),
        "sem": sem,
        "per_prompt": delta.tolist(),
        "logp_clean": clean.tolist(),
        "logp_steered": steered.tolist(),
        "n_prompts": n,
        "unit": "nats",
    }
