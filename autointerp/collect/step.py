"""What runs where an executor puts a collect's shards: ``CollectStep`` (an ``executor.ShardStep``).

``setup`` loads the model, dictionary and corpus (``setup.py``), ``run`` streams one shard
(``stream.py``), ``save`` keeps its sampler's state as a Parquet part (``parts.py``) that ``load``
reads back in the driver and that a rerun of the same collect reuses (``saved``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import CollectConfig
from ..executor import Shard
from . import dictionary as dictionaries
from .parts import read_manifest, read_part, shard_name, write_part
from .setup import Loaded, setup
from .stream import stream


@dataclass
class ShardResult:
    """One shard's sampler (in this process) or its state (read back from a part), and how many of the
    shard's sequences the corpus held."""

    first: int
    last: int
    made: int
    seconds: float
    sampler: Any = None  # a finished StreamingSampler
    state: dict | None = None  # StreamingSampler.state(), from a part

    def sampler_state(self) -> dict:
        return self.state if self.state is not None else self.sampler.state()


def plan_shards(n_seqs: int, batch_size: int, seq_len: int, shards: int, shard_tokens: int) -> list[Shard]:
    """Sequence ranges covering 0 .. n_seqs, each a whole number of batches: about ``shards`` of them,
    or ``shard_tokens`` tokens each when not 0."""
    if shard_tokens:
        per_shard = math.ceil(shard_tokens / seq_len)
    else:
        per_shard = math.ceil(n_seqs / max(shards, 1))
    per_shard = max(1, math.ceil(per_shard / batch_size)) * batch_size
    return [Shard(first, min(first + per_shard, n_seqs)) for first in range(0, n_seqs, per_shard)]


@dataclass
class CollectStep:
    """A collect's shard work: its configuration, identity and parts folder. Pickled to Ray workers;
    ``request`` (the dictionary the driver already read) stays in this process."""

    config: CollectConfig
    identity: str
    parts: Path
    request: dictionaries.Request | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "request": None}

    def setup(self) -> Loaded:
        return setup(self.config, self.request)

    def run(self, loaded: Loaded, shard: Shard, progress: bool) -> ShardResult:
        sampler, made, seconds = stream(
            self.config,
            loaded.subject,
            loaded.dictionary,
            loaded.corpus,
            shard.first,
            shard.last,
            progress,
            position=shard.start,
        )
        return ShardResult(shard.first, shard.last, made, seconds, sampler=sampler)

    def save(self, result: ShardResult, shard: Shard) -> None:
        manifest = {
            "first": shard.first,
            "last": shard.last,
            "made": result.made,
            "seconds": result.seconds,
            "identity": self.identity,
            "pid": os.getpid(),
        }
        write_part(self.parts / shard_name(shard.first, shard.last), result.sampler_state(), manifest)

    def saved(self, shard: Shard) -> bool:
        manifest = read_manifest(self.parts / shard_name(shard.first, shard.last))
        return bool(manifest) and manifest.get("identity") == self.identity

    def load(self, shard: Shard) -> ShardResult:
        state, manifest = read_part(self.parts / shard_name(shard.first, shard.last))
        return ShardResult(shard.first, shard.last, manifest["made"], manifest["seconds"], state=state)


def locate(loaded: Loaded, starts: list[int]) -> tuple[list, int | None]:
    """Where each of the sequences ``starts`` begins in the corpus (``SequencePacker.locate``)."""
    from ..corpus import SequencePacker, texts_of

    packer = SequencePacker(loaded.subject.tokenizer, loaded.config.seq_len)
    return packer.locate(texts_of(loaded.corpus, loaded.config.text_column), starts)


def count_sequences(loaded: Loaded, wanted: int | None) -> int:
    """Whole sequences the corpus holds, counted up to ``wanted`` (None: all) by tokenizing only."""
    from ..corpus import available_sequences

    config = loaded.config
    return available_sequences(loaded.subject.tokenizer, loaded.corpus, config.text_column, config.seq_len, wanted)


def decode(loaded: Loaded, ids: list[int]) -> list[str]:
    return loaded.decode(ids)
