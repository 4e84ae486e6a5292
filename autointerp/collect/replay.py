"""The second pass of a keys-only sampler: the chosen windows' token ids and activations, replayed.

A keys-only sampler (``--sampler-memory keys``, ``SamplerSizes.keep_windows`` False) keeps each
candidate's key, sequence, window start, value and document (~10 KB per latent at default sizes instead
of ~76 KB), which is all that selection (``select.py``) reads. Once the explain and test sets are chosen,
the batches that hold a chosen context's sequence run through model -> dictionary again
(``stream.encode_batch``), cut exactly as the first pass cut them (batch k holds sequences
k * batch_size .. (k + 1) * batch_size - 1, which a sharded collect keeps too: ``step.plan_shards``), so
the same inputs give bitwise the same activations and the stored rows equal those of a one-pass collect.

Cost: one forward + encode per batch holding a chosen sequence, plus tokenizing the corpus up to the last
such batch. That is at most the first pass again; it is all of it once latents x contexts per latent
(~180 at default sizes) exceed the corpus's sequences, as they do for a wide SAE on a corpus of up to a
few billion tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .select import RANDOM, Selection
from .stream import _batches, encode_batch, n_sequences


@dataclass
class WindowRequest:
    """The windows to replay, one per selected row: its sequence, window start and latent, and whether
    its activations are stored (non-activating windows store zeros)."""

    sequence: np.ndarray  # int64 [rows]
    start: np.ndarray  # int64 [rows]
    latent: np.ndarray  # int64 [rows]
    with_activations: np.ndarray  # bool [rows]
    window: int

    @classmethod
    def of(cls, selection: Selection, window: int) -> WindowRequest:
        return cls(
            sequence=selection.sequence.astype(np.int64),
            start=selection.start.astype(np.int64),
            latent=selection.latent.astype(np.int64),
            with_activations=selection.kind != RANDOM,
            window=window,
        )

    def batches(self, batch_size: int) -> np.ndarray:
        """Indices of the batches (of ``batch_size`` sequences from sequence 0) that hold a chosen
        sequence, ascending."""
        return np.unique(self.sequence // batch_size)


class WindowCutter:
    """Fills the requested windows batch by batch (``cut``), in any batch order; ``tokens`` and
    ``activations`` ([rows, window]) are complete once every batch of ``request.batches`` was cut."""

    def __init__(self, request: WindowRequest):
        self.request = request
        self.order = np.argsort(request.sequence, kind="stable")
        self.sorted_sequence = request.sequence[self.order]
        rows, window = len(request.sequence), request.window
        self.tokens = np.zeros((rows, window), dtype=np.int32)
        self.activations = np.zeros((rows, window), dtype=np.float32)

    def cut(self, first: int, acts: torch.Tensor, token_ids: torch.Tensor, counted: torch.Tensor) -> None:
        """Take the batch of sequences ``first`` .. ``first`` + B - 1: ``acts`` [B, T, L] as the dictionary
        returned them, ``token_ids`` [B, T], ``counted`` [B, T] (``stream.encode_batch``)."""
        lo, hi = np.searchsorted(self.sorted_sequence, [first, first + acts.shape[0]])
        if lo == hi:
            return
        rows = self.order[lo:hi]
        r = self.request
        device = acts.device
        b = torch.from_numpy(r.sequence[rows] - first).to(device).unsqueeze(1)
        pos = torch.from_numpy(r.start[rows]).to(device).unsqueeze(1) + torch.arange(r.window, device=device)
        self.tokens[rows] = token_ids[b, pos].to(torch.int32).cpu().numpy()
        with_acts = torch.from_numpy(r.with_activations[rows]).to(device).unsqueeze(1)
        latent = torch.from_numpy(r.latent[rows]).to(device).unsqueeze(1)
        # the sampler zeroes positions that do not count before it keeps a window (sampler.update)
        values = torch.where(counted[b, pos] & with_acts, acts[b, pos, latent], 0)
        self.activations[rows] = values.float().cpu().numpy()


def replay_windows(loaded, request: WindowRequest) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run the batches that hold a requested window again (``loaded``: ``setup.Loaded``, called where the
    job is set up): the windows' token ids and activations ([rows, window]) and what the replay cost."""
    config, subject, dictionary = loaded.config, loaded.subject, loaded.dictionary
    start = time.perf_counter()
    cutter = WindowCutter(request)
    wanted = request.batches(config.batch_size)
    if len(wanted) == 0:
        return cutter.tokens, cutter.activations, {"batches": 0, "sequences": 0, "seconds": 0.0}
    device = subject.device
    special = torch.tensor(subject.special_token_ids(), dtype=torch.int64, device=device)
    last = min((int(wanted[-1]) + 1) * config.batch_size, n_sequences(config))
    wanted_set = set(wanted.tolist())
    first, replayed = 0, 0
    with torch.inference_mode():
        for ids, _documents in _batches(config, subject, loaded.corpus, 0, last):
            if first // config.batch_size in wanted_set:
                ids = ids.to(device)
                acts, counted = encode_batch(config, subject, dictionary, ids, special)
                cutter.cut(first, acts, ids, counted)
                replayed += ids.shape[0]
            first += ids.shape[0]
    cost = {"batches": len(wanted), "sequences": replayed, "seconds": round(time.perf_counter() - start, 2)}
    return cutter.tokens, cutter.activations, cost
