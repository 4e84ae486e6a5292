"""Data shipped with autointerp (the embedded SAE), installed as the package data ``autointerp.data``."""
