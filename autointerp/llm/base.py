"""The backend interface: ``await backend.generate(messages, options) -> Completion``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import AutointerpError


@dataclass(frozen=True)
class GenerateOptions:
    """Sampling options of one request."""

    max_tokens: int = 300
    temperature: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0
    prefill: str = ""
    """Text the assistant's answer starts with (the model continues it; the completion's text does not
    repeat it). Pins small models to the answer format; needs a backend that can continue a message."""
    seed: int | None = None
    """Sampling seed, where the backend takes one (openai, vllm): best-of-k candidates of one prompt
    differ in it, so each is its own request in the call log. None: the backend's own randomness (and
    left out of the request hash, so requests made before this field existed keep their hash)."""
    regex: str = ""
    """A regular expression the completion (after the prefill) must match in full: guided decoding.
    The local backend enforces it for answers made of digits, spaces, newlines and colons; vllm and
    `vllm serve` enforce any regex."""


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)  # alternative token -> logprob


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    endpoint: str | None = None
    """Which endpoint answered, when a backend spreads requests over several (its URL without user info)."""
    cached_tokens: int | None = None
    """Prompt tokens the backend's prefix cache served, as it reports them; None when it reports nothing."""


class TransientError(Exception):
    """A failure worth retrying: rate limit, server error, timeout, lost connection, garbled reply."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """A failure that a retry will not fix (bad request, unknown model, refused key): fail the item."""


class BackendGone(AutointerpError):
    """The backend can serve no request any more (every Ray worker of the run died): the queue does not
    turn this into a failed item; it stops the run, which is marked failed, and a rerun resumes it."""


class Backend:
    """Base class of LLM backends."""

    kind: str = ""
    model: str = ""

    @property
    def executor_info(self) -> dict:
        """What a run stores about where its calls are answered (runs.config, under "resolved"): nothing
        for a backend in this process; a Ray worker pool names its workers."""
        return {}

    async def generate(self, messages: list[dict], options: GenerateOptions) -> Completion:
        raise NotImplementedError

    def count_tokens(self, messages: list[dict], generation_prompt: bool = True) -> int | None:
        """Prompt tokens ``messages`` would cost with the chat framing, or None when this backend cannot
        tell (a remote API); the score stage reports the share of prompts a prefix cache serves with it.
        ``generation_prompt=False`` counts ``messages`` as the start of a longer prompt (without the
        assistant's opening that follows the last message)."""
        return None

    async def aclose(self) -> None:
        """Release connections, engines or threads."""
