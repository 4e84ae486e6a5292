"""Per-latent candidate buffers: keep, for every latent, the ``capacity`` candidates with the largest key.

One structure serves three purposes:
- top contexts: the key is the context's maximum activation;
- a uniform reservoir of activating contexts: the key is a hash of (seed, sequence, latent), so the
  kept set is a uniform sample without replacement (bottom-k / priority sampling);
- random non-activating contexts: likewise with another hash.

Work per batch is small and whole-tensor: candidates whose key does not beat the latent's current
smallest kept key (``floor``) are dropped at once; the few that do have their payload (token ids and
activations of the window) cut out and wait in a pending list. Every ``merge_every`` batches the pending
candidates are merged into the buffer: slots are stable, a newcomer takes the slot of the entry it
evicts, so the buffer is never copied. Keeping the largest keys is also what makes shards mergeable:
the union of shard buffers, cut to the capacity, is the single-pass buffer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EMPTY = -1  # keys are non-negative; an empty slot holds -1
PAYLOAD = ("sequence", "start", "value", "tokens", "activations")


class KeyedBuffer:
    """``capacity`` best candidates per latent with their payload.

    Keys are int64 (hash keys) or float32 (activation values); a candidate offered with a key of
    ``EMPTY`` never enters.
    """

    def __init__(self, n_latents: int, capacity: int, window: int, device: torch.device,
                 key_dtype: torch.dtype, with_activations: bool = True, merge_every: int = 8):
        self.capacity = capacity
        self.merge_every = merge_every
        self.key = torch.full((n_latents, capacity), EMPTY, dtype=key_dtype, device=device)
        self.floor = torch.full((n_latents,), EMPTY, dtype=key_dtype, device=device)
        self.sequence = torch.full((n_latents, capacity), -1, dtype=torch.int64, device=device)
        self.start = torch.zeros((n_latents, capacity), dtype=torch.int32, device=device)
        self.value = torch.zeros((n_latents, capacity), dtype=torch.float32, device=device)
        self.tokens = torch.zeros((n_latents, capacity, window), dtype=torch.int32, device=device)
        self.activations = (torch.zeros((n_latents, capacity, window), dtype=torch.float32, device=device)
                            if with_activations else None)
        self._pending: list[dict[str, torch.Tensor]] = []
        self._batches_pending = 0

    def offer(self, keys: torch.Tensor, fill: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]) -> None:
        """Offer one batch of candidates, ``keys`` [latents, batch].

        ``fill(latent_idx, batch_idx)`` returns the payload of the candidates that pass the floor:
        ``sequence``, ``start``, ``value``, ``tokens`` and (if kept) ``activations``.
        """
        if self.capacity == 0:
            return
        keys = keys.to(self.key.dtype)
        lat, b = ((keys > EMPTY) & (keys > self.floor.unsqueeze(1))).nonzero(as_tuple=True)
        if lat.numel():
            payload = fill(lat, b)
            payload["latent"] = lat
            payload["key"] = keys[lat, b]
            self._pending.append(payload)
        self._batches_pending += 1
        if self._batches_pending >= self.merge_every:
            self.flush()

    def flush(self) -> None:
        """Merge the pending candidates into the buffer."""
        self._batches_pending = 0
        if not self._pending:
            return
        pending = {k: torch.cat([p[k] for p in self._pending]) for k in self._pending[0]}
        self._pending = []
        n_latents = self.key.shape[0]
        # Lay the pending keys out as [latents, width], padded with EMPTY.
        order = torch.argsort(pending["latent"], stable=True)
        lat = pending["latent"][order]
        col = torch.arange(lat.numel(), device=lat.device) - _first_index(lat, n_latents)[lat]
        width = int(col.max()) + 1
        keys = torch.full((n_latents, width), EMPTY, dtype=self.key.dtype, device=lat.device)
        keys[lat, col] = pending["key"][order]
        source = torch.full((n_latents, width), -1, dtype=torch.int64, device=lat.device)
        source[lat, col] = order
        # Per latent, drop the `width` smallest of old + pending: the rest is kept.
        both = torch.cat([self.key, keys], dim=1)
        dropped = torch.zeros_like(both, dtype=torch.bool)
        dropped.scatter_(1, both.topk(width, dim=1, largest=False).indices, True)
        incoming = ~dropped[:, self.capacity:] & (keys > EMPTY)
        evicted = dropped[:, :self.capacity]
        in_lat, in_col = incoming.nonzero(as_tuple=True)
        if in_lat.numel():
            # Pair the j-th newcomer of a latent with its j-th evicted slot. An EMPTY pad can only
            # displace an EMPTY slot, so a latent has at least as many evicted slots as newcomers.
            ev_lat, ev_slot = evicted.nonzero(as_tuple=True)
            n_in = torch.bincount(in_lat, minlength=n_latents)
            ev_rank = torch.arange(ev_lat.numel(), device=lat.device) - _first_index(ev_lat, n_latents)[ev_lat]
            slot = ev_slot[ev_rank < n_in[ev_lat]]
            src = source[in_lat, in_col]
            self.key[in_lat, slot] = pending["key"][src]
            self.sequence[in_lat, slot] = pending["sequence"][src]
            self.start[in_lat, slot] = pending["start"][src].to(torch.int32)
            self.value[in_lat, slot] = pending["value"][src]
            self.tokens[in_lat, slot] = pending["tokens"][src].to(torch.int32)
            if self.activations is not None:
                self.activations[in_lat, slot] = pending["activations"][src]
        self.floor = self.key.min(dim=1).values


def _first_index(sorted_rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """For row ids sorted ascending, the index where each row's run starts ([n_rows])."""
    counts = torch.bincount(sorted_rows, minlength=n_rows)
    return torch.cumsum(counts, 0) - counts
