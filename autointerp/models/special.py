"""Which token ids of a collect are special (BOS, EOS, padding), so that excerpts never show them."""

from __future__ import annotations

import logging

from . import embedded

log = logging.getLogger(__name__)


def collect_special_ids(config: dict | None) -> frozenset[int]:
    """The special token ids of the subject model of a collect, from its stored configuration: the
    ``resolved.special_token_ids`` a collect records, or, for a collect made before it recorded them, its
    model's tokenizer (loaded alone). Empty without a collect (imported latents)."""
    if config is None:
        return frozenset()
    recorded = config.get("resolved", {}).get("special_token_ids")
    if recorded is not None:
        return frozenset(int(i) for i in recorded)
    name = config.get("model", embedded.EMBEDDED)
    try:
        return frozenset(_tokenizer(name).all_special_ids or [])
    except (OSError, ValueError) as exc:
        log.warning("special tokens of %s unknown (its tokenizer did not load: %s); excerpts may show them", name, exc)
        return frozenset()


def _tokenizer(name: str):
    from transformers import AutoTokenizer

    if name != embedded.EMBEDDED:
        return AutoTokenizer.from_pretrained(name)
    cached = embedded.plain_model_dir()
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cached)
    gguf = embedded.smollm2_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
