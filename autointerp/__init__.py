"""autointerp: explain every latent of a sparse autoencoder and score the explanations.

Public API (imported lazily, so ``import autointerp`` stays light):

- ``collect``, ``explain``, ``score``: the three stages, each ``stage(config, db)`` (synchronous; see
  ``autointerp.pipeline``), configured by ``CollectConfig``, ``ExplainConfig``, ``ScoreConfig``, with
  ``ExecutorConfig`` for where they run;
- ``connect``: open a database (migrating its schema);
- ``load_saelens``, ``save_saelens``: SAEs in SAELens format (as a ``LinearDictionary``);
- ``load_dictionary``, ``mlp_neurons``, ``Dictionary``: dictionaries of every supported format
  (SAELens, sparsify, Gemma Scope, Llama Scope, BatchTopK) and the model's MLP neurons;
- ``open_db``, ``Database``: read a database's views as DuckDB relations, pandas DataFrames or Arrow
  tables; ``refresh_latent_summary``: bring the stored ``latent_summary`` up to date after writing;
- ``AutointerpError``: every user-facing error.
"""

from __future__ import annotations

import importlib
import importlib.util
import types

__version__ = "0.1.0"

_EXPORTS = {
    "collect": "autointerp.pipeline",
    "explain": "autointerp.pipeline",
    "score": "autointerp.pipeline",
    "CollectConfig": "autointerp.config",
    "ExplainConfig": "autointerp.config",
    "ScoreConfig": "autointerp.config",
    "ExecutorConfig": "autointerp.config",
    "connect": "autointerp.store.db",
    "load_saelens": "autointerp.models.dictionaries.saelens",
    "save_saelens": "autointerp.models.dictionaries.saelens",
    "load_dictionary": "autointerp.models.dictionaries",
    "mlp_neurons": "autointerp.models.dictionaries",
    "Dictionary": "autointerp.models.dictionaries",
    "AutointerpError": "autointerp.errors",
    "open_db": "autointerp.query.api",
    "Database": "autointerp.query.api",
    "SearchHit": "autointerp.similarity.search",
    "refresh_latent_summary": "autointerp.store.summary",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'autointerp' has no attribute {name!r}")


class _CallableStage(types.ModuleType):
    """A stage's subpackage that is also the stage's function: ``autointerp.explain(config, db)``.

    A stage function and its subpackage share a name, and Python binds ``autointerp.explain`` to the
    subpackage as soon as anything imports it, so the subpackage itself forwards calls to
    ``autointerp.pipeline`` and both ``autointerp.explain(...)`` and ``autointerp.explain.stage`` work."""

    def __call__(self, *args, **kwargs):
        from . import pipeline

        return getattr(pipeline, self.__name__.rpartition(".")[2])(*args, **kwargs)


for _stage in ("collect", "explain", "score"):
    if importlib.util.find_spec(f"{__name__}.{_stage}") is not None:  # the subpackages' __init__ are light
        importlib.import_module(f"{__name__}.{_stage}").__class__ = _CallableStage
