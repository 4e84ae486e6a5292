"""The embedding scorer: no LLM; cosine similarity of the explanation and each test context's raw text
under a sentence-embedding model (``score.embedding``); AUROC is the headline."""

from __future__ import annotations

import asyncio

from .. import classifier
from ..base import ScoreContext, ScoreOutcome, binary_outcome


class EmbeddingScorer:
    name = "embedding"
    needs = frozenset({"embeddings"})

    def __init__(self, context: ScoreContext):
        from ..embedding import EmbeddingScorer as Embedder

        model = context.config.embedding_model or None
        self.embedder = context.resource("embedder", lambda: Embedder(model))
        self.model = self.embedder.path.name

    def identity(self) -> dict:
        from ..embedding import model_digest

        # the folder's name is not the model (the default's folder is called "model"): hash its files
        return {"scorer": self.name, "model": model_digest(self.embedder.path), "threshold": "median"}

    def chance(self) -> dict:
        return {"score": 0.5, "auroc": 0.5}

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:
        samples = classifier.detection_samples(contexts)
        result = await asyncio.to_thread(
            self.embedder.score,
            explanation,
            ["".join(c.tokens) for c in contexts],
            [s.label for s in samples],
            [s.quantile if s.label else None for s in samples],
        )
        rows = [
            dict(
                context_id=s.context_id,
                variant=s.variant,
                marked=None,
                quantile=s.quantile,
                label=s.label,
                prediction=p,
                probability=sim,
                batch=0,
                item=None,
                reason=None,
            )
            for s, p, sim in zip(samples, result["prediction"], result["similarity"], strict=True)
        ]
        return binary_outcome(rows, "auroc")
