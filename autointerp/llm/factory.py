"""Create a backend by name, importing its library only then."""

from __future__ import annotations

from ..endpoints import parse_endpoints
from ..errors import AutointerpError
from .base import Backend

BACKENDS = ("local", "openai", "vllm")


def make_backend(
    kind: str,
    model: str = "",
    base_url: str = "",
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 120.0,
    max_batch: int = 8,
) -> Backend:
    if kind == "local":
        from .local_backend import LocalBackend

        return LocalBackend(model or "embedded", max_batch=max_batch)
    if kind == "openai":
        if not model:
            raise AutointerpError("The openai backend needs --model.", "the model name the endpoint serves.")
        return _openai(model, base_url, api_key_env, timeout)
    if kind == "vllm":
        if not model:
            raise AutointerpError("The vllm backend needs --model.", "a Hugging Face model id or local folder.")
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model)
    raise AutointerpError(f"Unknown backend {kind!r}.", "one of " + ", ".join(BACKENDS))


def _openai(model: str, base_url: str, api_key_env: str, timeout: float) -> Backend:
    """One client for one endpoint; one per endpoint, behind a ``MultiEndpointBackend``, for several or
    for a capped one (``URL@N``)."""
    from .openai_backend import OpenAIBackend

    specs = parse_endpoints(base_url)
    if len(specs) <= 1 and not (specs and specs[0].limit):
        return OpenAIBackend(model, specs[0].url if specs else None, api_key_env, timeout)
    from .multi_backend import MultiEndpointBackend

    return MultiEndpointBackend(
        [OpenAIBackend(model, s.url, api_key_env, timeout) for s in specs], limits=[s.limit for s in specs]
    )
