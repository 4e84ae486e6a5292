"""Collect's setup phase: load the subject model, the dictionary and the corpus once.

The one loader of the stage, wherever its shards run: in this process, or once per job on each Ray
worker (``CollectStep.setup``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import CollectConfig
from ..corpus import open_corpus
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
    return Loaded(config, subject, dictionary, corpus, hookpoint, resolved)
