"""One encoder that every file format maps onto: an affine map followed by an activation function.

    x' = x - input_bias                           (SAELens' apply_b_dec_to_input, sparsify's centring)
    pre = x' @ W_enc + b_enc                      [..., d_sae]
    latents = activation(pre)                     relu | jumprelu(threshold) | topk(k) | abstopk(k) | groupmax(k)
                                                  | gated: relu(pre) * (x' @ W_gate + b_gate > 0)

Loaders fold whatever their format does differently (decoder-norm rescaling, dataset-norm scaling of
inputs and biases) into these tensors, so there is one encode to test and to keep fast.
"""

from __future__ import annotations

import torch

from ...errors import AutointerpError
from . import activations as act
from .base import Dictionary, Reads

_TENSORS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "input_bias", "W_gate", "b_gate", "W_skip")


class LinearDictionary(Dictionary):
    """An SAE or transcoder given by its weights; see the module docstring for the computation.

    ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec`` [d_sae, d_out], ``b_dec`` [d_out],
    ``threshold`` [d_sae] or [] (jumprelu), ``input_bias`` [d_in] or None, ``W_gate``/``b_gate`` (gated),
    ``W_skip`` [d_in, d_out] or None (a transcoder's linear skip connection, used by ``decode``).
    """

    def __init__(
        self,
        *,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        W_dec: torch.Tensor,
        b_dec: torch.Tensor,
        activation: str,
        k: int = 0,
        threshold: torch.Tensor | None = None,
        input_bias: torch.Tensor | None = None,
        W_gate: torch.Tensor | None = None,
        b_gate: torch.Tensor | None = None,
        W_skip: torch.Tensor | None = None,
        hookpoint: str = "",
        hookpoint_out: str = "",
        reads: Reads = "output",
        format: str = "",
        source: str = "",
        files: tuple[str, ...] = (),
    ):
        if activation not in act.ACTIVATIONS:
            raise AutointerpError(
                f"Unknown activation function {activation!r} in {source}.", f"one of {', '.join(act.ACTIVATIONS)}."
            )
        self.W_enc, self.b_enc, self.W_dec, self.b_dec = W_enc, b_enc, W_dec, b_dec
        self.activation, self.k, self.threshold = activation, int(k), threshold
        self.input_bias = input_bias
        self.W_gate, self.b_gate, self.W_skip = W_gate, b_gate, W_skip
        self.d_in, self.d_sae = int(W_enc.shape[0]), int(W_enc.shape[1])
        self.hookpoint, self.hookpoint_out, self.reads = hookpoint, hookpoint_out, reads
        self.signed = activation == "abstopk"
        self.format, self.source, self.files = format, source, tuple(str(f) for f in files)
        self._validate()

    def _validate(self) -> None:
        where = self.source or self.format
        if self.activation in act.SELECTING and not 0 < self.k <= self.d_sae:
            raise AutointerpError(
                f"{self.activation} dictionary with k={self.k} and {self.d_sae} latents ({where}).",
                f"1 <= k <= {self.d_sae}.",
            )
        if self.activation == "groupmax" and self.d_sae % self.k:
            raise AutointerpError(
                f"GroupMax dictionary with {self.d_sae} latents in k={self.k} groups ({where}).",
                "a number of latents divisible by k.",
            )
        if self.activation == "jumprelu" and self.threshold is None:
            raise AutointerpError(f"JumpReLU dictionary without a threshold ({where}).", "a threshold tensor.")
        if self.activation == "gated" and (self.W_gate is None or self.b_gate is None):
            raise AutointerpError(f"Gated dictionary without gate weights ({where}).", "W_gate and b_gate.")

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> LinearDictionary:
        for name in _TENSORS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device=device, dtype=dtype))
        return self

    def _encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        if self.input_bias is not None:
            x = x - self.input_bias
        return x

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """[..., d_sae] before the activation function (the magnitude path of a gated SAE)."""
        return self._encoder_input(x) @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation in act.SELECTING:
            values, indices = self.encode_sparse(x)
            return act.scatter(values, indices, self.d_sae)
        if self.activation == "gated":
            x_in = self._encoder_input(x)
            gate = (x_in @ self.W_gate + self.b_gate) > 0
            return torch.relu(x_in @ self.W_enc + self.b_enc) * gate
        pre = self.pre_activations(x)
        if self.activation == "relu":
            return torch.relu(pre)
        return act.jumprelu(pre, self.threshold)

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.activation == "topk":
            return act.topk(self.pre_activations(x), self.k)
        if self.activation == "abstopk":
            return act.abstopk(self.pre_activations(x), self.k)
        if self.activation == "groupmax":
            return act.groupmax(self.pre_activations(x), self.k)
        return super().encode_sparse(x)

    def decode(self, latents: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction [..., d_out]; a transcoder with a skip connection needs its input ``x`` too."""
        out = latents.to(self.W_dec.dtype) @ self.W_dec + self.b_dec
        if self.W_skip is not None:
            if x is None:
                raise AutointerpError("This transcoder has a skip connection: decode needs its input x.")
            out = out + x.to(self.W_skip.dtype) @ self.W_skip
        return out

    def decoder_directions(self) -> torch.Tensor:
        return self.W_dec
