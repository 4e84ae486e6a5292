"""The collect stage: stream activations, keep each latent's contexts, write them to DuckDB.

``stage.py`` drives it (setup, shards, reduce), ``sampler.py`` and ``buffers.py`` keep the candidates,
``select.py`` draws the explain and test sets, ``writer.py`` stores them.
"""
