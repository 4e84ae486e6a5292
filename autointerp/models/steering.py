"""Steering: add a latent's decoder direction, times a scale, to the output of the module it writes to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import AutointerpError
from .subject import find_module


def torch_module(model) -> torch.nn.Module:
    """The torch module of a ``SubjectModel`` or of a plain causal LM."""
    return model if isinstance(model, torch.nn.Module) else model.model


def model_device(model: torch.nn.Module) -> torch.device:
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
    module = find_module(torch_module(model), hookpoint)
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
    from .dictionaries import NeuronDictionary, resolve_module_names

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


@contextmanager
def adding_at_last_position(model, hookpoint: str, vectors: torch.Tensor) -> Iterator[None]:
    """Add ``vectors[b]`` [batch, d] to the output of module ``hookpoint`` at the last position of
    sequence ``b`` only, for every forward pass run inside the ``with`` block: one batched forward
    scores several latents' edits of the same right-aligned prompt (Arad et al.'s output score). The
    hook is removed on exit, even on an error."""
    vectors = vectors.detach()
    module = find_module(torch_module(model), hookpoint)

    def hook(mod, inputs, output):  # noqa: ARG001 - torch hook signature
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.dim() != 3 or hidden.shape[0] != vectors.shape[0] or hidden.shape[-1] != vectors.shape[-1]:
            raise AutointerpError(
                f"{tuple(vectors.shape)} vectors to add at the last position of an output of shape "
                f"{tuple(hidden.shape)} at {hookpoint}.",
                "one vector per sequence of the batch, as wide as the module's output.",
            )
        edited = hidden.clone()
        edited[:, -1, :] += vectors.to(device=hidden.device, dtype=hidden.dtype)
        return (edited, *output[1:]) if isinstance(output, tuple) else edited

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
