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

A keys-only buffer (``with_tokens=False``) keeps the key, sequence, start, value and document of each
candidate and no window: its chosen windows are replayed after selection (``replay.py``).

Ties are broken by sequence number, then window start (on equal keys the earlier context ranks first:
with several windows per sequence one sequence offers several candidates), in the merge and in
``canonicalize``, so that what is kept and the order it is read in never depend on the order the
candidates arrived in: a run split into shards (``absorb``) keeps exactly what one pass keeps, row for
row, even where activations tie (frequent in bf16).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EMPTY = -1  # keys are non-negative; an empty slot holds -1
PAYLOAD = ("sequence", "start", "value", "document", "tokens", "activations")


class KeyedBuffer:
    """``capacity`` best candidates per latent with their payload.

    Keys are int64 (hash keys) or float32 (activation values); a candidate offered with a key of
    ``EMPTY`` never enters.
    """

    def __init__(
        self,
        n_latents: int,
        capacity: int,
        window: int,
        device: torch.device,
        key_dtype: torch.dtype,
        with_activations: bool = True,
        merge_every: int = 8,
        with_tokens: bool = True,
    ):
        self.capacity = capacity
        self.window = window
        self.merge_every = merge_every
        self.key = torch.full((n_latents, capacity), EMPTY, dtype=key_dtype, device=device)
        self.floor = torch.full((n_latents,), EMPTY, dtype=key_dtype, device=device)
        self.sequence = torch.full((n_latents, capacity), -1, dtype=torch.int64, device=device)
        self.start = torch.zeros((n_latents, capacity), dtype=torch.int32, device=device)
        self.value = torch.zeros((n_latents, capacity), dtype=torch.float32, device=device)
        self.document = torch.full((n_latents, capacity), -1, dtype=torch.int64, device=device)  # source document
        # The windows' payload; None in a keys-only buffer, whose chosen windows are replayed (replay.py).
        self.tokens = (
            torch.zeros((n_latents, capacity, window), dtype=torch.int32, device=device) if with_tokens else None
        )
        self.activations = (
            torch.zeros((n_latents, capacity, window), dtype=torch.float32, device=device)
            if with_activations and with_tokens
            else None
        )
        self._pending: list[dict[str, torch.Tensor]] = []
        self._batches_pending = 0
        self._canonical = False  # slots in canonical order and nothing merged since

    def offer(self, keys: torch.Tensor, fill: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]) -> None:
        """Offer one batch of candidates, ``keys`` [latents, batch].

        ``fill(latent_idx, batch_idx)`` returns the payload of the candidates that pass the floor:
        ``sequence``, ``start``, ``value``, ``document``, and (if kept) ``tokens`` and ``activations``.
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
        self._canonical = False
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
        sequences = torch.full((n_latents, width), -1, dtype=torch.int64, device=lat.device)
        sequences[lat, col] = pending["sequence"][order]
        starts = torch.zeros((n_latents, width), dtype=torch.int32, device=lat.device)
        starts[lat, col] = pending["start"][order].to(torch.int32)
        # Per latent, drop the `width` last of old + pending in the buffer's order (key descending, then
        # sequence, then start ascending): the rest is kept.
        both = torch.cat([self.key, keys], dim=1)
        last_first = _order(
            both, torch.cat([self.sequence, sequences], dim=1), torch.cat([self.start, starts], dim=1), descending=False
        )
        dropped = torch.zeros_like(both, dtype=torch.bool)
        dropped.scatter_(1, last_first[:, :width], True)
        incoming = ~dropped[:, self.capacity :] & (keys > EMPTY)
        evicted = dropped[:, : self.capacity]
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
            self.document[in_lat, slot] = pending["document"][src]
            if self.tokens is not None:
                self.tokens[in_lat, slot] = pending["tokens"][src].to(torch.int32)
            if self.activations is not None:
                self.activations[in_lat, slot] = pending["activations"][src]
        self.floor = self.key.min(dim=1).values

    def absorb(self, rows: dict[str, torch.Tensor]) -> None:
        """Merge another buffer's kept candidates (``rows()`` of a shard) into this one."""
        if self.capacity == 0 or rows["latent"].numel() == 0:
            return
        device = self.key.device
        dropped = {name for name in ("tokens", "activations") if getattr(self, name) is None}
        self._pending.append({k: v.to(device) for k, v in rows.items() if k not in dropped})
        self.flush()

    def rows(self) -> dict[str, torch.Tensor]:
        """The kept candidates as flat rows (latent, key and payload), for a shard's part file."""
        lat, slot = (self.key > EMPTY).nonzero(as_tuple=True)
        out = {
            "latent": lat,
            "key": self.key[lat, slot],
            "sequence": self.sequence[lat, slot],
            "start": self.start[lat, slot],
            "value": self.value[lat, slot],
            "document": self.document[lat, slot],
        }
        for name in ("tokens", "activations"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)[lat, slot]
        return out

    def nbytes(self) -> int:
        """Bytes of the buffer's fixed state (keys, payload, floor); pending candidates aside, which a
        flush every ``merge_every`` batches bounds."""
        names = ("key", "floor", "sequence", "start", "value", "document", "tokens", "activations")
        return sum(t.nelement() * t.element_size() for t in (getattr(self, n) for n in names) if t is not None)

    def canonicalize(self) -> None:
        """Reorder each latent's slots by key descending, then sequence and start ascending, empty slots last:
        the order readers see no longer depends on arrival order. Call after the last flush; again, it
        costs nothing until more candidates are merged."""
        self.flush()
        if self._canonical:
            return
        order = _order(self.key, self.sequence, self.start, descending=True)
        for name in ("key", "sequence", "start", "value", "document"):
            setattr(self, name, torch.gather(getattr(self, name), 1, order))
        for name in ("tokens", "activations"):
            matrix = getattr(self, name)
            if matrix is not None:
                index = order.unsqueeze(2).expand(-1, -1, matrix.shape[2])
                setattr(self, name, torch.gather(matrix, 1, index))
        self.floor = self.key.min(dim=1).values
        self._canonical = True


def _order(key: torch.Tensor, sequence: torch.Tensor, start: torch.Tensor, descending: bool) -> torch.Tensor:
    """Per row, the indices that sort by key (descending or ascending) with ties broken by sequence, then
    start, so that the earlier context always ranks higher: ascending order is exactly descending order
    reversed."""
    by_start = torch.sort(start, dim=1, descending=not descending, stable=True).indices
    sequences = torch.gather(sequence, 1, by_start)
    by_sequence = torch.gather(
        by_start, 1, torch.sort(sequences, dim=1, descending=not descending, stable=True).indices
    )
    keys = torch.gather(key, 1, by_sequence)
    return torch.gather(by_sequence, 1, torch.sort(keys, dim=1, descending=descending, stable=True).indices)


def _first_index(sorted_rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """For row ids sorted ascending, the index where each row's run starts ([n_rows])."""
    counts = torch.bincount(sorted_rows, minlength=n_rows)
    return torch.cumsum(counts, 0) - counts
