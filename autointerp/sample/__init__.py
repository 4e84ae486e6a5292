"""Sample stage: stream activations, keep each latent's contexts, write them to DuckDB."""
