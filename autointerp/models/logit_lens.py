"""The logit lens of decoder directions: which tokens a latent's output promotes and suppresses.

Following Arad et al. (shared/specs/intervention-and-output-scores.md, section A, step 0) and Gur-Arieh
et al.'s VocabProj (section C): the bare decoder row ``d_i`` (no decoder bias) goes through the model's
final norm as if it were a hidden state, then through the unembedding: ``logits_i = W_U · norm(d_i)``.
No final-logit softcap is applied (it keeps the order). Values stored are these logits; the top-k by
softmax probability is the top-k by logit.

The latents x vocabulary matrix is never built: directions go through in chunks of ``chunk_size`` rows,
so peak memory is ``chunk_size x vocabulary`` floats (plus the unembedding itself), whatever the number
of latents. ``reaches_residual`` says whether a direction written at a module enters the residual stream
directly, where the lens means something; elsewhere callers record why instead of a meaningless ranking.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import AutointerpError

#: The attribute paths of the final norm in common Hugging Face causal LMs, tried in order.
FINAL_NORMS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.final_layernorm", "norm")
#: Children of a decoder layer whose output the layer adds straight into the residual stream (with their
#: output projections). A model that normalises a sublayer's output before the add (Gemma 2 and 3:
#: ``post_feedforward_layernorm``) breaks this, which ``reaches_residual`` checks.
SUBLAYERS = {"mlp", "self_attn", "attn", "attention", "feed_forward"}
PROJECTIONS = {"down_proj", "o_proj", "c_proj", "dense", "dense_4h_to_h", "out_proj", "w2"}
POST_NORMS = {"mlp": "post_feedforward_layernorm", "feed_forward": "post_feedforward_layernorm"}


@dataclass
class Unembedding:
    """The model's path from a residual vector to next-token logits: ``norm`` (None when the model has
    none we can find, then the lens is the bare unembedding) and ``weight`` [vocabulary, d_model]."""

    weight: torch.Tensor
    norm: torch.nn.Module | None
    bias: torch.Tensor | None = None

    @property
    def vocabulary(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, directions: torch.Tensor) -> torch.Tensor:
        """[n, vocabulary] logits of ``directions`` [n, d_model], in float32."""
        x = directions.to(device=self.weight.device, dtype=self.weight.dtype)
        if self.norm is not None:
            x = self.norm(x)
        out = x @ self.weight.T
        if self.bias is not None:
            out = out + self.bias
        return out.float()


def unembedding_of(model: torch.nn.Module) -> Unembedding:
    """The final norm and unembedding of a Hugging Face causal LM (or a ``SubjectModel``)."""
    model = getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not hasattr(head, "weight"):
        raise AutointerpError(
            f"The model {type(model).__name__} has no output embedding (lm_head) to read a logit lens through.",
            "a causal language model with an unembedding matrix.",
        )
    modules = dict(model.named_modules())
    norm = next((modules[name] for name in FINAL_NORMS if name in modules), None)
    return Unembedding(head.weight.detach(), norm, getattr(head, "bias", None))


def reaches_residual(model: torch.nn.Module, module_name: str) -> str | None:
    """None when a vector added to the output of ``module_name`` enters the residual stream directly (a
    decoder layer's output, or an attention or MLP block's output or output projection, which the layer
    adds to the residual); otherwise the reason the logit lens does not apply there."""
    model = getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model
    modules = dict(model.named_modules())
    if module_name not in modules:
        return f"the model has no module named {module_name!r}"
    layers = _decoder_layers(model)
    parts = module_name.split(".")
    for prefix, layer in layers.items():
        if module_name == prefix:
            return None
        if not module_name.startswith(prefix + "."):
            continue
        rest = parts[len(prefix.split(".")) :]
        if rest[0] not in SUBLAYERS or len(rest) > 2 or (len(rest) == 2 and rest[1] not in PROJECTIONS):
            return (
                f"{module_name} is inside decoder layer {prefix} but its output is not added to the residual "
                "stream directly (only the layer's output, or an attention or MLP block's output, is)"
            )
        post = POST_NORMS.get(rest[0])
        if post and hasattr(layer, post):
            return f"{module_name}'s output passes through {prefix}.{post} before it reaches the residual stream"
        return None
    return f"{module_name} is not a decoder layer or one of its attention or MLP blocks"


def _decoder_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """name -> module of each decoder layer: the items of the longest ModuleList of the model."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        return {}
    name, longest = max(lists, key=lambda item: len(item[1]))
    return {f"{name}.{i}": layer for i, layer in enumerate(longest)}


@dataclass
class LensChunk:
    """The lens of rows ``start .. start + n`` of the directions: top and bottom ``k`` token ids and their
    logits, each [n, k]; top in descending order, bottom in ascending order (the most suppressed first)."""

    start: int
    top_ids: torch.Tensor
    top_values: torch.Tensor
    bottom_ids: torch.Tensor
    bottom_values: torch.Tensor


@torch.inference_mode()
def logit_lens(
    directions: torch.Tensor, unembedding: Unembedding, k: int = 20, chunk_size: int = 256
) -> Iterator[LensChunk]:
    """The top and bottom ``k`` tokens of each row of ``directions`` [n, d_model], ``chunk_size`` rows at a
    time on the unembedding's device (peak memory ``chunk_size x vocabulary`` logits)."""
    if k < 1 or chunk_size < 1:
        raise AutointerpError(f"logit lens k={k}, chunk_size={chunk_size}.", "both at least 1.")
    k = min(k, unembedding.vocabulary)
    for start in range(0, directions.shape[0], chunk_size):
        logits = unembedding.logits(directions[start : start + chunk_size])
        top = logits.topk(k, dim=-1)
        bottom = logits.topk(k, dim=-1, largest=False)
        yield LensChunk(start, top.indices.cpu(), top.values.cpu(), bottom.indices.cpu(), bottom.values.cpu())
        del logits
