"""Subject models, SAEs and the embedded default."""
