"""autointerp: explain every latent of a sparse autoencoder and score the explanations.

Public API (imported lazily, so ``import autointerp`` stays light):

- ``CollectConfig``, ``collect``: the collect stage;
- ``connect``: open a database (migrating its schema);
- ``load_saelens``, ``Sae``: SAEs in SAELens format;
- ``load_dictionary``, ``mlp_neurons``, ``Dictionary``: dictionaries of every supported format
  (SAELens, sparsify, Gemma Scope, Llama Scope, BatchTopK) and the model's MLP neurons;
- ``open_db``, ``Database``: read a database's views as DuckDB relations, pandas DataFrames or Arrow
  tables; ``refresh_latent_summary``: bring the stored ``latent_summary`` up to date after writing;
- ``AutointerpError``: every user-facing error.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CollectConfig": "autointerp.config",
    "collect": "autointerp.collect.stage",
    "connect": "autointerp.store.db",
    "load_saelens": "autointerp.models.sae",
    "Sae": "autointerp.models.sae",
    "load_dictionary": "autointerp.models.dictionaries",
    "mlp_neurons": "autointerp.models.dictionaries",
    "Dictionary": "autointerp.models.dictionaries",
    "AutointerpError": "autointerp.errors",
    "open_db": "autointerp.query.api",
    "Database": "autointerp.query.api",
    "refresh_latent_summary": "autointerp.store.summary",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'autointerp' has no attribute {name!r}")
