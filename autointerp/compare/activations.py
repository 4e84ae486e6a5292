"""Pearson correlation of matched latents' activations over a sample of corpus tokens.

The subject model runs once per batch with both dictionaries' hookpoints hooked (forward hooks, or
pre-hooks for dictionaries that read a module's input); each dictionary encodes its vectors, and only
the matched columns are kept. Per pair, running sums (x, y, x^2, y^2, xy, in float64) give the
correlation at the end: memory is O(matched pairs), never tokens x latents x latents.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import contextmanager

import numpy as np
import torch

from ..corpus import SequencePacker, open_corpus, texts_of
from ..models.subject import find_module


class PairSums:
    """Streaming sums for the Pearson correlation of many (x_j, y_j) pairs of columns."""

    def __init__(self, n_pairs: int) -> None:
        self.n = 0
        self.sx, self.sy, self.sxx, self.syy, self.sxy = (np.zeros(n_pairs) for _ in range(5))

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add rows (tokens) of ``x`` and ``y`` [tokens, n_pairs]."""
        x, y = x.double(), y.double()
        self.n += x.shape[0]
        self.sx += x.sum(0).numpy()
        self.sy += y.sum(0).numpy()
        self.sxx += (x * x).sum(0).numpy()
        self.syy += (y * y).sum(0).numpy()
        self.sxy += (x * y).sum(0).numpy()

    def correlation(self) -> np.ndarray:
        """Pearson r per pair; NaN where either column never varied (e.g. a latent that never fired)."""
        n = max(self.n, 1)
        cov = self.sxy / n - (self.sx / n) * (self.sy / n)
        var_x = self.sxx / n - (self.sx / n) ** 2
        var_y = self.syy / n - (self.sy / n) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.sqrt(var_x * var_y)
        r[(var_x <= 1e-12) | (var_y <= 1e-12)] = np.nan
        return np.clip(r, -1.0, 1.0)


@contextmanager
def reading(model: torch.nn.Module, hooks: dict[str, tuple[str, str]]):
    """Capture, for each key, the output (or input) of a module during forward passes run inside the
    block: ``hooks`` maps key -> (module name, 'output' | 'input'); yields the dict filled per pass."""
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for key, (name, reads) in hooks.items():
        module = find_module(model, name)
        if reads == "input":

            def pre(mod, args, kwargs, key=key):  # noqa: ARG001 - torch hook signature
                captured[key] = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))

            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:

            def post(mod, inputs, output, key=key):  # noqa: ARG001 - torch hook signature
                captured[key] = output[0] if isinstance(output, tuple) else output

            handles.append(module.register_forward_hook(post))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def token_batches(subject, corpus: dict, tokens: int, batch_size: int) -> Iterable[torch.Tensor]:
    """Batches of packed sequences [batch, seq_len] of the corpus a collect read, ``tokens`` in all."""
    seq_len = int(corpus.get("seq_len") or 256)
    texts = texts_of(
        open_corpus(
            corpus.get("dataset") or "embedded",
            corpus.get("split") or "train",
            corpus.get("text_column") or "text",
            corpus.get("dataset_config") or "",
        ),
        corpus.get("text_column") or "text",
    )
    wanted, batch = math.ceil(tokens / seq_len), []
    for seq in SequencePacker(subject.tokenizer, seq_len).sequences(texts):
        batch.append(seq)
        wanted -= 1
        if len(batch) == batch_size or wanted == 0:
            yield torch.from_numpy(np.stack(batch))
            batch = []
        if wanted == 0:
            return
    if batch:
        yield torch.from_numpy(np.stack(batch))


@torch.inference_mode()
def activation_correlation(
    subject, dict_a, dict_b, latent_a: np.ndarray, latent_b: np.ndarray, batches: Iterable[torch.Tensor]
) -> tuple[np.ndarray, int]:
    """(Pearson r of each matched pair's activations [m], tokens read). The first position of each
    sequence and special tokens are left out, as collect leaves them out."""
    special = torch.tensor(subject.special_token_ids(), dtype=torch.int64)
    cols_a = torch.as_tensor(latent_a, dtype=torch.int64)
    cols_b = torch.as_tensor(latent_b, dtype=torch.int64)
    sums = PairSums(len(latent_a))
    hooks = {"a": (dict_a.hookpoint, dict_a.reads), "b": (dict_b.hookpoint, dict_b.reads)}
    with reading(subject.model, hooks) as captured:
        for ids in batches:
            keep = ~torch.isin(ids, special)
            keep[:, 0] = False
            subject.model(input_ids=ids.to(subject.device), use_cache=False)
            x = captured["a"].float().cpu()[keep]
            y = captured["b"].float().cpu()[keep]
            sums.add(dict_a.encode(x)[:, cols_a], dict_b.encode(y)[:, cols_b])
    return sums.correlation(), sums.n
