"""autointerp: explain every latent of a sparse autoencoder and score the explanations.

Public API (imported lazily, so ``import autointerp`` stays light):

- ``CollectConfig``, ``collect``: the sample stage;
- ``connect``: open a database (migrating its schema);
- ``load_saelens``, ``Sae``: SAEs in SAELens format;
- ``AutointerpError``: every user-facing error.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CollectConfig": "autointerp.config",
    "collect": "autointerp.sample.collect",
    "connect": "autointerp.store.db",
    "load_saelens": "autointerp.models.sae",
    "Sae": "autointerp.models.sae",
    "AutointerpError": "autointerp.errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'autointerp' has no attribute {name!r}")
