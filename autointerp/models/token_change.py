"""TokenChange: which next tokens a latent's output makes more and less likely when it is steered.

After Gur-Arieh et al. (shared/specs/intervention-and-output-scores.md, section C, "TokenChange"): run the
subject model on a batch of neutral windows, once clean and once with the latent steered at every
position, and rank the vocabulary by the mean change of the next-token log-probability over the batch
and its positions. Deliberate differences from the reference code:

- the latent's decoder direction is *added* at ``scale`` (the caller ties it to the latent's own
  activation scale, e.g. its largest activation), where the reference clamps the latent to +-10 whatever
  its scale, too weak for high-norm latents and too strong for low-norm ones (the spec's pitfall);
- only the positive direction is steered, and the promoted and suppressed tokens are kept apart, in
  order, where the reference mixes both signs' top and bottom tokens into one unordered set;
- log-probabilities rather than logits, so a shift shared by every logit (which changes nothing) does
  not move the ranking.

The mean change is linear in the two runs, so the clean mean is computed once per batch of windows and
each latent costs one steered pass; memory is bounded by ``batch_size x window x vocabulary``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .steering import model_device, steering, torch_module


@dataclass
class TokenChange:
    """The ``k`` tokens whose mean log-probability rose most (``promoted``, largest rise first) and fell
    most (``suppressed``, largest fall first), as (token id, mean change in nats) pairs."""

    promoted: list[tuple[int, float]]
    suppressed: list[tuple[int, float]]


class TokenChangeProbe:
    """Token windows [n, length] run clean once; ``change(...)`` steers one direction over them.

    ``bos_id``: prepended to every window (when given and not already first) so that no window token
    stands in as the attention sink; its position is left out of the mean, as it predicts nothing of
    the window. ``batch_size``: windows per forward pass (bounds memory)."""

    def __init__(self, model, windows: torch.Tensor, bos_id: int | None = None, batch_size: int = 8):
        self.model = torch_module(model)
        windows = windows.long()
        self.skip = 0
        if bos_id is not None and not bool((windows[:, 0] == bos_id).all()):
            windows = torch.cat([torch.full((windows.shape[0], 1), bos_id, dtype=torch.long), windows], dim=1)
            self.skip = 1
        self.windows = windows.to(model_device(self.model))
        self.batch_size = batch_size
        self.clean = self._mean_logprobs()

    @torch.inference_mode()
    def _mean_logprobs(self) -> torch.Tensor:
        """[vocabulary] mean next-token log-probability over every window and counted position (float64)."""
        total, count = None, 0
        for start in range(0, self.windows.shape[0], self.batch_size):
            ids = self.windows[start : start + self.batch_size]
            logits = self.model(input_ids=ids, use_cache=False).logits[:, self.skip :]
            logprobs = torch.log_softmax(logits.double(), dim=-1).reshape(-1, logits.shape[-1])
            part = logprobs.sum(0)
            total = part if total is None else total + part
            count += logprobs.shape[0]
        return total / count

    def change(self, hookpoint: str, direction: torch.Tensor, scale: float, k: int) -> TokenChange:
        """Steer ``scale * direction`` at the output of ``hookpoint`` at every position and keep the ``k``
        most promoted and ``k`` most suppressed tokens by mean change of log-probability."""
        with steering(self.model, hookpoint, direction, scale):
            steered = self._mean_logprobs()
        delta = (steered - self.clean).float().cpu()
        k = min(k, delta.numel())
        top = delta.topk(k)
        bottom = delta.topk(k, largest=False)
        return TokenChange(
            promoted=list(zip(top.indices.tolist(), top.values.tolist(), strict=True)),
            suppressed=list(zip(bottom.indices.tolist(), bottom.values.tolist(), strict=True)),
        )
