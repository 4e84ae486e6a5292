"""The collect stage: stream activations, keep each latent's contexts, write them to DuckDB.

``stage.py`` drives it (setup, shards, reduce), ``sampler.py`` and ``buffers.py`` keep the candidates,
``select.py`` draws the explain and test sets, ``writer.py`` stores them.

The package shares its name with the public function ``autointerp.collect`` (the CLI's name for the
stage). Importing any module of the package binds ``autointerp.collect`` to the package, so the package
itself is callable: ``autointerp.collect(config, db, ...)`` runs ``autointerp.collect.stage.collect``
whichever of the two a caller holds.
"""

from __future__ import annotations

import sys
import types


class _CallableStage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """Run the collect stage: ``autointerp.collect.stage.collect``."""
        from .stage import collect

        return collect(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableStage
