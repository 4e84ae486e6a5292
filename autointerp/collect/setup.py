"""Collect's setup phase: load the subject model, the dictionary and the corpus once.

The one loader of the stage, wherever its shards run: in this process, or once per job on each Ray
worker (``CollectStep.setup``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..config import ALL_TOKENS, CollectConfig
from ..corpus import SequencePacker, open_corpus, texts_of
from ..models.dictionaries.planted import planted_part
from ..models.dictionaries.planted_rules import Vocabulary
from ..models.subject import SubjectModel, load_subject_model
from . import dictionary as dictionaries


@dataclass
class Loaded:
    """What every shard of a collect reads: the model hooked at ``hookpoint``, the dictionary on the
    model's device, the open corpus, and the resolved facts stored with the run."""

    config: CollectConfig
    subject: SubjectModel
    dictionary: object
    corpus: object
    hookpoint: str
    resolved: dict

    def decode(self, ids: list[int]) -> list[str]:
        """Each token id as its own string (the stored ``token_strings``)."""
        return self.subject.tokenizer.batch_decode([[int(i)] for i in ids])


def setup(config: CollectConfig, req: dictionaries.Request | None = None) -> Loaded:
    """Load the model, attach the dictionary (``req``, when the caller already read it) and open the
    corpus."""
    req = req or dictionaries.request(config)
    subject = load_subject_model(config.model, "", config.device, config.dtype)
    dictionary, hookpoint = dictionaries.attach(req, config, subject)
    corpus = open_corpus(config.dataset, config.split, config.text_column, config.dataset_config)
    dictionary.to(subject.device)
    resolved = {
        **dictionaries.describe(req, dictionary, config),
        "model": subject.name,
        "device": str(subject.device),
        "dtype": str(subject.dtype),
        "special_token_ids": subject.special_token_ids(),  # hidden from every excerpt shown
    }
    loaded = Loaded(config, subject, dictionary, corpus, hookpoint, resolved)
    planted = planted_part(dictionary)
    if planted is not None:
        special = subject.special_token_ids()
        sequences = partial(calibration_sequences, loaded)  # read at first use: --tokens all is resolved by then
        planted[1].bind(Vocabulary.of(subject.tokenizer), special, config.exclude_first_position, sequences)
    return loaded


def calibration_sequences(loaded: Loaded, batch: int = 256):
    """The collect's own sequences, [batch, seq_len] token ids at a time, for the planted latents'
    calibration (``models.dictionaries.planted``): as many as the collect reads (all with --tokens all)."""
    config = loaded.config
    wanted = None if config.tokens == ALL_TOKENS else math.ceil(config.tokens / config.seq_len)
    packer = SequencePacker(loaded.subject.tokenizer, config.seq_len)
    rows = []
    for i, seq in enumerate(packer.sequences(texts_of(loaded.corpus, config.text_column))):
        if wanted is not None and i >= wanted:
            break
        rows.append(seq)
        if len(rows) == batch:
            yield torch.from_numpy(np.stack(rows))
            rows = []
    if rows:
        yield torch.from_numpy(np.stack(rows))
