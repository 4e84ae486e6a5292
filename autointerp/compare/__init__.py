"""Compare two dictionaries of one subject model: one-to-one latent matching by decoder cosine (PW-MCC),
activation correlation and explanation similarity of matched pairs (``autointerp compare``)."""

from .command import compare
from .matching import Matching, match_decoders, pw_mcc, random_matching

__all__ = ["Matching", "compare", "match_decoders", "pw_mcc", "random_matching"]
