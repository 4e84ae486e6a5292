"""Counting planned requests: calls, prompt tokens (split into what a prefix cache can serve and the
uncached rest) and the completion-token budget, per purpose, per latent and in total."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from .requests import PlannedCall
from .tokenizer import PromptTokenizer


@dataclass
class Tally:
    """Totals of a set of requests."""

    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens a prefix cache can serve: each request's longest prefix shared with an earlier
    request (the first request of each purpose, or an earlier request of the same latent)."""
    completion_budget: int = 0
    """max_tokens summed over the requests: an upper bound of the completion tokens."""

    @property
    def uncached_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens

    def add(self, prompt: int, cached: int, budget: int) -> None:
        self.calls += 1
        self.prompt_tokens += prompt
        self.cached_tokens += cached
        self.completion_budget += budget

    def to_dict(self) -> dict:
        return {**asdict(self), "uncached_tokens": self.uncached_tokens}


@dataclass
class Counts:
    """Tallies by purpose and by latent, and the total."""

    by_purpose: dict[str, Tally] = field(default_factory=dict)
    by_latent: dict[int, Tally] = field(default_factory=dict)
    total: Tally = field(default_factory=Tally)
    samples: dict[str, list[PlannedCall]] = field(default_factory=dict)
    """The first ``SAMPLES`` requests of each purpose (the shapes ``--calibrate`` sends)."""


#: Requests kept per purpose in ``Counts.samples``.
SAMPLES = 16


def shared_prefix(a: list, b: list) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    return len(os.path.commonprefix([a, b]))


def count(calls: Iterable[PlannedCall], tokenizer: PromptTokenizer, counts: Counts | None = None) -> Counts:
    """Tokenize every request and add it to ``counts`` (a new one when None).

    A request's cached part is its longest prefix shared with the first request of any purpose (the
    fixed instructions every latent repeats) or with an earlier request of its own latent (what its
    requests share, e.g. a latent's explanation in front of its excerpts). An engine caches whole blocks
    (vLLM: 16 tokens), so it serves up to a block less per request than counted here."""
    counts = counts or Counts()
    firsts: dict[str, list] = {}
    latent, earlier = None, []  # the requests of one latent come together
    for call in calls:
        units = tokenizer.encode(call.messages, call.options.prefill)
        if call.latent != latent:
            latent, earlier = call.latent, []
        cached_units = max((shared_prefix(units, e) for e in [*firsts.values(), *earlier]), default=0)
        firsts.setdefault(call.purpose, units)
        earlier.append(units)
        kept = counts.samples.setdefault(call.purpose, [])
        if len(kept) < SAMPLES:
            kept.append(call)
        prompt = tokenizer.tokens(len(units))
        cached = min(prompt, tokenizer.tokens(cached_units))
        for tally in (
            counts.by_purpose.setdefault(call.purpose, Tally()),
            counts.by_latent.setdefault(call.latent, Tally()),
            counts.total,
        ):
            tally.add(prompt, cached, call.options.max_tokens)
    return counts
