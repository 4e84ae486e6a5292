"""Reopen the subject model and dictionary that a database's collect read, for scorers that run them.

The intervention scorer steers the very model and latents that were collected, so it must load exactly
what ``autointerp collect`` loaded: the model named in the collect's stored configuration, the
dictionary from the files it read (checked against their stored SHA-256, so a dictionary changed since
the collect cannot silently steer other latents), or the MLP neurons it was built from, at the hookpoint
the collect resolved. Anything missing is an ``AutointerpError`` saying what and how to fix it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config import EMBEDDED
from ..errors import AutointerpError
from ..models import embedded


@dataclass(frozen=True)
class CollectSource:
    """What a database's latest complete collect ran: enough to load it again and to name it in hashes."""

    run_id: str
    identity: str  # the collect run's config hash: model, dictionary files, hookpoint, sampling
    model: str  # the --model spec ("embedded", a hub id or a folder)
    model_name: str  # the loaded model's display name
    sae: str  # the --sae spec
    sae_hookpoint: str
    sae_path: str  # the resolved dictionary path ("" for neurons)
    sae_sha256: str | None
    hookpoint: str  # the resolved hookpoint the dictionary read
    reads: str
    dtype: str  # the resolved dtype, e.g. "float32"

    def load(self, device: str = "auto"):
        """(SubjectModel without a reading hook, dictionary with its ``hookpoint`` set to the collect's)."""
        from ..models.dictionaries import load_dictionary, mlp_neurons
        from ..models.subject import load_subject_model
        from .dictionary import files_sha256, parse_neurons

        neurons = parse_neurons(self.sae)
        path = self._dictionary_path() if neurons is None else ""  # missing files fail before the model loads
        subject = load_subject_model(self.model, "", device, self.dtype)
        if neurons is not None:
            return subject, mlp_neurons(subject, neurons.module, neurons.k)
        # the stored path is the dictionary's own folder; the --sae spec may be a release folder
        pick = (self.sae_hookpoint or None) if path == self.sae else None
        dictionary = load_dictionary(path, hookpoint=pick)
        if self.sae_sha256 and files_sha256(dictionary.files) != self.sae_sha256:
            raise AutointerpError(
                f"The dictionary at {dictionary.source} is not the one collect {self.run_id} read (its files' "
                "SHA-256 differs).",
                "the unchanged dictionary files of the collect, so that latent indices mean the same latents.",
                "restore the original files, or collect again with this dictionary.",
            )
        if dictionary.reads == "output":
            dictionary.hookpoint = self.hookpoint  # collect may have been told --hookpoint
        return subject, dictionary

    def _dictionary_path(self) -> str:
        if self.sae_path and Path(self.sae_path).exists():
            return self.sae_path
        if self.sae == EMBEDDED and embedded.DEFAULT_SAE_DIR.exists():
            return str(embedded.DEFAULT_SAE_DIR)  # the repository moved since the collect
        if self.sae and self.sae != EMBEDDED and (Path(self.sae).exists() or not Path(self.sae).is_absolute()):
            return self.sae  # a hub id (downloaded again) or a relative path that still resolves
        raise AutointerpError(
            f"The dictionary files of collect {self.run_id} are gone: {self.sae_path or self.sae} does not exist.",
            "the dictionary the database was collected with, at the path stored in its runs row.",
            "put the files back at that path (or run from the machine that has them).",
        )


def read_collect_source(con) -> CollectSource:
    """The latest complete collect of the database ``con``."""
    row = con.execute(
        "SELECT r.run_id, r.config_hash, r.config, c.model FROM runs r JOIN collections c USING (run_id) "
        "WHERE r.stage = 'collect' AND r.status = 'complete' ORDER BY r.started_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise AutointerpError(
            "This database has no complete collect run, so its subject model and dictionary are unknown.",
            "a database written by `autointerp collect` (imported latents cannot be steered).",
            "run the intervention scorer on a collect database, or leave intervention out of --scorers.",
        )
    run_id, identity, config, model_name = row
    config = json.loads(config)
    resolved = config.get("resolved", {})
    dtype = str(resolved.get("dtype", config.get("dtype", "auto"))).removeprefix("torch.")
    return CollectSource(
        run_id=run_id,
        identity=identity,
        model=config.get("model", EMBEDDED),
        model_name=model_name,
        sae=config.get("sae", EMBEDDED),
        sae_hookpoint=config.get("sae_hookpoint", ""),
        sae_path=resolved.get("sae_path", ""),
        # with --planted, sae_sha256 covers the planted file too; the SAE's own files are checked on reload
        sae_sha256=resolved["sae_own_sha256"] if "sae_own_sha256" in resolved else resolved.get("sae_sha256"),
        hookpoint=config.get("hookpoint", ""),
        reads=resolved.get("reads", "output"),
        dtype=dtype,
    )
