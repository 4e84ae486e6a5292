"""Create a backend by name, importing its library only then."""

from __future__ import annotations

from ..errors import AutointerpError
from .base import Backend

BACKENDS = ("local", "openai", "vllm")


def make_backend(kind: str, model: str = "", base_url: str = "", api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, max_batch: int = 8) -> Backend:
    if kind == "local":
        from .local_backend import LocalBackend

        return LocalBackend(model or "embedded", max_batch=max_batch)
    if kind == "openai":
        if not model:
            raise AutointerpError("The openai backend needs --model.", "the model name the endpoint serves.")
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(model, base_url or None, api_key_env, timeout)
    if kind == "vllm":
        if not model:
            raise AutointerpError("The vllm backend needs --model.", "a Hugging Face model id or local folder.")
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model)
    raise AutointerpError(f"Unknown backend {kind!r}.", "one of " + ", ".join(BACKENDS))
