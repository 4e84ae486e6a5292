"""An estimate of the prompt tokens a prefix cache could serve, for backends that report none.

A call's prompt shares a prefix with the earlier calls for the same latent in the same run (best-of-k
candidates send one prompt k times; scorers repeat the system prompt and explanation). The estimate is
the call's prompt tokens times the share of its messages' text that the longest such shared prefix
covers: characters stand in for tokens, which a remote API does not let us count. It is labelled an
estimate wherever it is shown (``llm_calls.cached_tokens_estimate``, the ``llm_costs`` view).
"""

from __future__ import annotations

import re
from collections import OrderedDict

_LATENT = re.compile(r"^latent -?\d+")


def latent_key(item: str) -> str:
    """The latent a call's item is for ('latent 12 detection batch 0' -> 'latent 12'); other items as they are."""
    match = _LATENT.match(item)
    return match.group(0) if match else item


def messages_text(messages: list[dict]) -> str:
    """The chat messages as one text in prompt order (role markers between contents, as a template puts them)."""
    return "".join(f"<{m.get('role', '')}>\n{m.get('content', '')}\n" for m in messages)


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (a binary search over slice comparisons,
    which run in C, rather than a character loop)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def estimate_cached_tokens(text: str, earlier: list[str], prompt_tokens: int) -> int:
    """``prompt_tokens`` times the share of ``text`` its longest common prefix with one of ``earlier`` covers."""
    if not text or not earlier or prompt_tokens <= 0:
        return 0
    shared = max(common_prefix_length(text, e) for e in earlier)
    return round(prompt_tokens * shared / len(text))


class PrefixMemory:
    """The distinct prompts of each latent's earlier successful calls in one run, for the estimate. Keeps
    the ``max_latents`` latents called most recently (a run works on a bounded window of latents at a
    time) and up to ``per_latent`` prompts each, so memory stays bounded on runs of any size."""

    def __init__(self, max_latents: int = 4096, per_latent: int = 8):
        self.max_latents = max_latents
        self.per_latent = per_latent
        self._prompts: OrderedDict[str, list[str]] = OrderedDict()

    def estimate(self, item: str, messages: list[dict], prompt_tokens: int) -> int:
        """The estimate for a successful call of ``item``, which is then remembered for later calls."""
        key, text = latent_key(item), messages_text(messages)
        earlier = self._prompts.pop(key, [])
        estimate = estimate_cached_tokens(text, earlier, prompt_tokens)
        if text not in earlier:
            earlier = [*earlier, text][-self.per_latent :]
        self._prompts[key] = earlier
        while len(self._prompts) > self.max_latents:
            self._prompts.popitem(last=False)
        return estimate
