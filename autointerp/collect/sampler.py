"""Streaming selection of every latent's contexts from batches of SAE activations.

Memory is fixed by the number of latents and the buffer sizes, never by the number of tokens:

- ``top``: the ``top_k`` activating contexts with the largest maximum activation;
- ``reservoir``: a uniform sample of ``reservoir`` activating contexts (largest hash keys);
- ``negatives``: a uniform sample of non-activating windows (a random window per sequence on which
  the latent is zero and which overlaps none of that sequence's activating windows);
- exact running statistics and a log-spaced histogram of token activations.

Quantiles need the whole activation distribution, which a single streaming pass does not have. The
reservoir is a uniform sample of the latent's activating contexts, so its equal-count quantiles estimate
the population's; when the latent has at most ``reservoir`` activating contexts the reservoir holds all
of them and the quantiles are exact. This keeps collection to one pass over the corpus (a second pass
would double the model's cost) with memory independent of corpus size.

Each sequence is cut into ``windows_per_sequence`` segments (N; segment n covers positions
n * T // N .. (n + 1) * T // N - 1, so lengths differ by at most one). An activating context is the window
of ``window`` tokens around a segment's peak for that latent, clamped into the segment, so a latent has
at most N activating contexts per sequence (one with the default N = 1) and its contexts never share
tokens. ``n_active_contexts`` counts the segments in which the latent fires. A context is numbered
sequence * N + segment (the sequence itself when N = 1) wherever a hash needs it.

The peak's index inside its window is ``peak_offset``, or with ``jitter_peak`` a hash of (seed, context
number, latent) mapped uniformly onto ``window // 4`` .. ``window - 2`` (``peak_range``): a fixed index
would tell a scorer which windows are activating without reading anything else. The window is then
clamped into its segment, which moves the peak nearer the window's edge only at a segment's edges.

Every context also carries its source document (``document``: the index of the document among the
corpus's non-empty texts, ``SequencePacker.sequences_with_documents``): the document of the peak token
for an activating context, of the window's middle token for a non-activating one.

Signed latents (``signed=True``: AbsTopK SAEs, MLP neurons) are ranked by magnitude: a latent fires
where it is non-zero, a sequence's peak is its largest |activation|, and the context's value is the
signed activation there. Top contexts are kept for each sign (``top`` for positive peaks,
``top_negative`` for negative ones, ``top_k`` each); the reservoir, the non-activating windows and the
statistics (count, sum, maximum and histogram of |activation|) treat both signs alike. For non-negative
activations the magnitude is the activation itself, so an unsigned run does exactly what it always did.

Keys only (``keep_windows`` False, ``--sampler-memory keys``): the buffers keep each candidate's key,
sequence, window start, value and document, which is all selection reads, and not its window's token ids
and activations (9.8 KB instead of 75.7 KB per latent at default sizes, ``nbytes``); the chosen windows
are replayed afterwards (``replay.py``), with bitwise the same activations.

Shards: a corpus split by sequence ranges over workers (``stage.py``, ``scale/shards.py``) gives one sampler
per shard; ``state()`` is what a shard keeps and ``absorb(state)`` merges it. Every choice is a
largest-keys selection with ties broken by sequence, counts add, maxima take the maximum, and the sum
of activations is kept with its rounding error (Neumaier's compensated sum), so the merge of any
sharding selects and reports exactly what one pass does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..hashing import hash31, hash62
from .buffers import EMPTY, KeyedBuffer

# Salts of the independent random choices (see hashing.py).
SALT_RESERVOIR = 1
SALT_NEGATIVE = 2
SALT_NEGATIVE_START = 3
SALT_SPLIT = 4
SALT_PEAK_OFFSET = 5

HISTOGRAM_LOW, HISTOGRAM_HIGH = 1e-3, 1e4


def histogram_edges(bins: int) -> torch.Tensor:
    """Inner edges of the log-spaced histogram: bin 0 is (0, 1e-3), the last is [1e4, inf)."""
    return torch.logspace(math.log10(HISTOGRAM_LOW), math.log10(HISTOGRAM_HIGH), bins + 1, dtype=torch.float64)


@dataclass
class SamplerSizes:
    n_latents: int
    seq_len: int
    window: int
    peak_offset: int
    top_k: int
    reservoir: int
    negatives: int
    histogram_bins: int
    seed: int
    signed: bool = False
    jitter_peak: bool = False
    windows_per_sequence: int = 1
    keep_windows: bool = True  # False: keys only, the chosen windows are replayed afterwards (replay.py)

    @property
    def peak_range(self) -> tuple[int, int]:
        """Lowest and highest index of the peak in an activating window under ``jitter_peak``."""
        low = min(self.window // 4, self.window - 1)
        return low, max(low, self.window - 2)

    def segment_bounds(self, seq_len: int) -> list[int]:
        """The N + 1 positions that cut a sequence into ``windows_per_sequence`` segments."""
        n = self.windows_per_sequence
        return [i * seq_len // n for i in range(n + 1)]


class StreamingSampler:
    """Accumulates candidates and statistics batch by batch; see the module docstring."""

    def __init__(self, sizes: SamplerSizes, device: torch.device):
        s = self.sizes = sizes
        self.device = device
        L, keep = s.n_latents, s.keep_windows
        self.top = KeyedBuffer(L, s.top_k, s.window, device, torch.float32, with_tokens=keep)
        self.top_negative = (
            KeyedBuffer(L, s.top_k, s.window, device, torch.float32, with_tokens=keep) if s.signed else None
        )
        self.reservoir = KeyedBuffer(L, s.reservoir, s.window, device, torch.int64, with_tokens=keep)
        self.negatives = KeyedBuffer(
            L, s.negatives, s.window, device, torch.int64, with_activations=False, with_tokens=keep
        )
        self.n_firing = torch.zeros(L, dtype=torch.int64, device=device)
        self.n_active_contexts = torch.zeros(L, dtype=torch.int64, device=device)
        self.sum_activation = torch.zeros(L, dtype=torch.float64, device=device)
        self.sum_error = torch.zeros(L, dtype=torch.float64, device=device)  # rounding error of the sum
        self.max_activation = torch.zeros(L, dtype=torch.float32, device=device)
        self.edges = histogram_edges(s.histogram_bins).to(device=device, dtype=torch.float32)
        self.histogram = torch.zeros(L, s.histogram_bins + 2, dtype=torch.int64, device=device)
        self.n_tokens = 0  # positions that count (not first, not special)
        self.n_sequences = 0
        self._offsets = torch.arange(s.window, device=device)

    def update(
        self,
        acts: torch.Tensor,
        token_ids: torch.Tensor,
        counted: torch.Tensor,
        sequence_ids: torch.Tensor,
        document_ids: torch.Tensor | None = None,
    ) -> None:
        """Take one batch: ``acts`` [B, T, L] (float32), ``token_ids`` [B, T], ``counted`` [B, T] bool
        (positions that may count as activations), ``sequence_ids`` [B] global sequence numbers,
        ``document_ids`` [B, T] the source document of each position (None: unknown, stored as -1)."""
        s = self.sizes
        acts = acts.masked_fill_(~counted.unsqueeze(-1), 0)  # BOS, padding, first position never count
        B, T, L = acts.shape
        N = s.windows_per_sequence
        if document_ids is None:
            document_ids = torch.full((B, T), -1, dtype=torch.int64, device=acts.device)
        magnitude = acts.abs() if s.signed else acts
        bounds = s.segment_bounds(T)
        if N == 1:
            seg_max, peak = magnitude.max(dim=1, keepdim=True)  # [B, 1, L]
        else:
            parts = [magnitude[:, lo:hi].max(dim=1) for lo, hi in zip(bounds, bounds[1:], strict=False)]
            seg_max = torch.stack([p.values for p in parts], 1)  # [B, N, L]
            peak = torch.stack([p.indices + lo for p, lo in zip(parts, bounds, strict=False)], 1)
        # the signed activation at the peak: what a context's value and the sign of its side are
        seg_value = acts.gather(1, peak) if s.signed else seg_max
        active = seg_max > 0
        # A context's number: sequence * N + segment, the sequence itself when N = 1.
        context = (sequence_ids.view(B, 1) * N + torch.arange(N, device=acts.device)).view(B, N, 1)
        lat_row = torch.arange(L, device=acts.device).view(1, 1, L)
        peak_start = self._window_starts(peak, context, lat_row, bounds)  # [B, N, L]
        self._update_stats(acts, magnitude, seg_max.view(B * N, L), active.view(B * N, L), counted)
        # Candidates are rows r = b * N + n of the [B * N, L] views.
        peak_rows, start_rows = peak.view(B * N, L), peak_start.view(B * N, L)
        value_rows = seg_value.view(B * N, L)

        def fill_activating(lat: torch.Tensor, r: torch.Tensor) -> dict[str, torch.Tensor]:
            b = r // N
            start = start_rows[r, lat]
            payload = {
                "sequence": sequence_ids[b],
                "start": start,
                "value": value_rows[r, lat],
                "document": document_ids[b, peak_rows[r, lat]],
            }
            if s.keep_windows:
                flat_pos = (b * T + start).unsqueeze(1) + self._offsets  # [n, W] into [B * T]
                payload["tokens"] = token_ids.reshape(-1)[flat_pos]
                payload["activations"] = acts.reshape(-1)[flat_pos * L + lat.unsqueeze(1)]
            return payload

        empty = torch.tensor(float(EMPTY), device=acts.device)
        magnitude_rows, active_rows = seg_max.view(B * N, L), active.view(B * N, L)
        if self.top_negative is None:
            self.top.offer(torch.where(active_rows, magnitude_rows, empty).T, fill_activating)
        else:
            positive = value_rows > 0
            self.top.offer(torch.where(active_rows & positive, magnitude_rows, empty).T, fill_activating)
            self.top_negative.offer(torch.where(active_rows & ~positive, magnitude_rows, empty).T, fill_activating)
        if s.reservoir:
            res_key = torch.where(active, hash62(s.seed, context, lat_row, SALT_RESERVOIR), EMPTY)
            self.reservoir.offer(res_key.view(B * N, L).T, fill_activating)
        if s.negatives:
            self._offer_negatives(magnitude, token_ids, sequence_ids, document_ids, peak_start, active)
        self.n_sequences += B

    def _window_starts(self, peak, context, lat_row, bounds) -> torch.Tensor:
        """Where each activating window starts ([B, N, L]): the peak at its offset, clamped into the
        peak's segment."""
        s = self.sizes
        if s.jitter_peak:
            low, high = s.peak_range
            offset = low + hash31(s.seed, context, lat_row, SALT_PEAK_OFFSET) % (high - low + 1)
        else:
            offset = s.peak_offset
        if s.windows_per_sequence == 1:
            return (peak - offset).clamp(0, bounds[1] - s.window)
        edges = torch.tensor(bounds, device=peak.device)
        lowest, highest = edges[:-1].view(1, -1, 1), (edges[1:] - s.window).view(1, -1, 1)
        return torch.minimum(torch.maximum(peak - offset, lowest), highest)

    def buffers(self) -> dict[str, KeyedBuffer]:
        named = {
            "top": self.top,
            "top_negative": self.top_negative,
            "reservoir": self.reservoir,
            "negatives": self.negatives,
        }
        return {name: buf for name, buf in named.items() if buf is not None}

    @property
    def keeps_windows(self) -> bool:
        """Whether the buffers hold their windows' token ids and activations; if not, the chosen windows
        are replayed after selection (``replay.py``)."""
        return self.top.tokens is not None

    def drop_windows(self) -> None:
        """Become keys-only: forget every buffer's windows (they are replayed after selection)."""
        for buffer in self.buffers().values():
            buffer.flush()
            buffer.tokens = buffer.activations = None
        self.sizes = dataclasses.replace(self.sizes, keep_windows=False)

    def finish(self) -> None:
        """Merge every pending candidate and put each latent's slots in canonical order; call once after
        the last batch (or the last ``absorb``)."""
        for buffer in self.buffers().values():
            buffer.canonicalize()

    @property
    def total_activation(self) -> torch.Tensor:
        """Sum of |activation| per latent (float64), with its accumulated rounding error added back."""
        return self.sum_activation + self.sum_error

    def nbytes(self) -> int:
        """Bytes of the sampler's per-latent state: every buffer and every statistic (what a shard hands
        to the merge, and what the merge driver holds once)."""
        stats = sum(getattr(self, name).nelement() * getattr(self, name).element_size() for name in self.STAT_FIELDS)
        return stats + sum(buffer.nbytes() for buffer in self.buffers().values())

    STAT_FIELDS = ("n_firing", "n_active_contexts", "sum_activation", "sum_error", "max_activation", "histogram")

    def state(self) -> dict:
        """What a shard hands to the merge: per-latent statistics, counts and every buffer's rows."""
        for buffer in self.buffers().values():
            buffer.flush()
        return {
            "stats": {name: getattr(self, name) for name in self.STAT_FIELDS},
            "n_tokens": self.n_tokens,
            "n_sequences": self.n_sequences,
            "buffers": {name: buf.rows() for name, buf in self.buffers().items()},
        }

    def absorb(self, state: dict) -> None:
        """Merge a shard's ``state()`` into this sampler (any number of shards, in any order)."""
        stats = {k: v.to(self.device) for k, v in state["stats"].items()}
        self.n_firing += stats["n_firing"]
        self.n_active_contexts += stats["n_active_contexts"]
        self._add_to_sum(stats["sum_activation"])
        self.sum_error += stats["sum_error"]
        self.max_activation = torch.maximum(self.max_activation, stats["max_activation"])
        self.histogram += stats["histogram"]
        self.n_tokens += state["n_tokens"]
        self.n_sequences += state["n_sequences"]
        mine = self.buffers()
        if self.keeps_windows and any("tokens" not in rows for rows in state["buffers"].values()):
            self.drop_windows()  # a keys-only shard: the merged sampler is keys-only too
        if set(mine) != set(state["buffers"]):
            raise ValueError(f"shard buffers {sorted(state['buffers'])} do not match {sorted(mine)}")
        for name, rows in state["buffers"].items():
            mine[name].absorb(rows)

    def _add_to_sum(self, values: torch.Tensor) -> None:
        """Neumaier's compensated addition: ``sum_error`` collects what rounding dropped, so the total
        does not depend on how the corpus was split into batches and shards."""
        total = self.sum_activation + values
        big = self.sum_activation.abs() >= values.abs()
        error = torch.where(big, (self.sum_activation - total) + values, (values - total) + self.sum_activation)
        self.sum_activation = total
        self.sum_error += error

    def _offer_negatives(self, magnitude, token_ids, sequence_ids, document_ids, peak_start, active) -> None:
        s = self.sizes
        B, T, L = magnitude.shape
        span = T - s.window + 1
        start = hash62(s.seed, sequence_ids, SALT_NEGATIVE_START) % span  # [B], one per sequence
        pos = start.unsqueeze(1) + self._offsets  # [B, W]
        window_max = magnitude[torch.arange(B, device=magnitude.device).unsqueeze(1), pos].amax(dim=1)  # [B, L]
        apart = (peak_start - start.view(B, 1, 1)).abs() >= s.window  # from each segment's window
        ok = (window_max == 0) & (~active | apart).all(dim=1)
        lat_row = torch.arange(L, device=magnitude.device).view(1, L)
        key = torch.where(ok, hash62(s.seed, sequence_ids.view(B, 1), lat_row, SALT_NEGATIVE), EMPTY)
        middle = document_ids.gather(1, (start + s.window // 2).view(B, 1)).view(B)

        def fill(lat: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
            payload = {
                "sequence": sequence_ids[b],
                "start": start[b],
                "value": torch.zeros_like(b, dtype=torch.float32),
                "document": middle[b],
            }
            if s.keep_windows:
                payload["tokens"] = token_ids[b.unsqueeze(1), pos[b]]
            return payload

        self.negatives.offer(key.T, fill)

    def _update_stats(self, acts, magnitude, seq_max, active, counted) -> None:
        """``seq_max`` and ``active`` are per context ([B * N, L]), the rest per position."""
        # Work on the non-zeros only: SAE activations are sparse.
        self.n_tokens += int(counted.sum())
        b, t, lat = acts.nonzero(as_tuple=True)
        values = magnitude[b, t, lat]
        self.n_firing += torch.bincount(lat, minlength=self.sizes.n_latents)
        batch_sum = torch.zeros_like(self.sum_activation).index_add_(0, lat, values.to(torch.float64))
        self._add_to_sum(batch_sum)
        self.max_activation = torch.maximum(self.max_activation, seq_max.amax(dim=0))
        self.n_active_contexts += active.sum(dim=0)
        bins = torch.bucketize(values, self.edges, right=True)
        n_bins = self.histogram.shape[1]
        self.histogram.view(-1).index_add_(0, lat * n_bins + bins, torch.ones_like(lat))
