"""Any OpenAI-compatible chat-completions endpoint: OpenAI, OpenRouter, `vllm serve`, llama.cpp server.

One ``AsyncOpenAI`` client per backend (never one per request), with the client's own retries turned
off: retrying happens in one place, the queue. The API key is read from an environment variable when
the client is built and is kept nowhere else.
"""

from __future__ import annotations

import asyncio
import os

from ..errors import AutointerpError
from ..redact import redact, register_secret, register_url_credentials
from .base import Backend, Completion, GenerateOptions, PermanentError, TokenLogprob, TransientError


def _retry_after(headers) -> float | None:
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


class OpenAIBackend(Backend):
    kind = "openai"

    def __init__(
        self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0
    ):
        try:
            import openai
        except ImportError as exc:
            raise AutointerpError("The openai backend needs the openai package.", fix="pip install openai") from exc
        self._openai = openai
        key = os.environ.get(api_key_env)
        if not key:
            if base_url is None:
                raise AutointerpError(
                    f"No API key in the environment variable {api_key_env}.",
                    f"{api_key_env} set to your key (it is never stored).",
                    f"export {api_key_env}=... or pass --api-key-env NAME.",
                )
            key = "none"  # local servers (vllm serve, llama.cpp) accept any key
        register_secret(key)  # a server's error body may echo it
        register_url_credentials(base_url)
        self.model = model
        self.base_url = base_url
        self.timeout = timeout
        self._client = openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=timeout)

    async def generate(self, messages: list[dict], options: GenerateOptions) -> Completion:
        openai = self._openai
        kwargs = dict(
            model=self.model, messages=messages, max_tokens=options.max_tokens, temperature=options.temperature
        )
        if options.seed is not None:
            kwargs["seed"] = options.seed
        if options.logprobs:
            kwargs.update(logprobs=True, top_logprobs=options.top_logprobs or None)
        extra_body = {}  # extensions of `vllm serve` (OpenAI's own API has neither)
        if options.prefill:  # continue a final assistant message
            kwargs["messages"] = [*messages, {"role": "assistant", "content": options.prefill}]
            extra_body.update(continue_final_message=True, add_generation_prompt=False)
        if options.regex:
            extra_body["structured_outputs"] = {"regex": options.regex}
        if extra_body:
            kwargs["extra_body"] = extra_body
        try:
            # the client's own timeout bounds each read, not the request: a server sending a byte a
            # second never trips it, so the whole request (connect, send, read) gets a deadline here
            async with asyncio.timeout(self.timeout):
                response = await self._client.chat.completions.create(**kwargs)
        except TimeoutError as exc:
            raise TransientError(f"timed out: no whole answer within --timeout {self.timeout:g} s") from exc
        except openai.RateLimitError as exc:
            raise TransientError(
                f"rate limited (429): {redact(exc.message)}", _retry_after(exc.response.headers)
            ) from exc
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status >= 500 or status in (408, 409):
                raise TransientError(
                    f"server error ({status}): {redact(exc.message)}", _retry_after(exc.response.headers)
                ) from exc
            raise PermanentError(f"HTTP {status}: {redact(exc.message)}") from exc
        except openai.APITimeoutError as exc:
            raise TransientError("timed out") from exc
        except openai.APIConnectionError as exc:
            raise TransientError(redact(f"connection error: {exc}")) from exc
        except openai.APIResponseValidationError as exc:
            raise TransientError(redact(f"malformed response: {exc}")) from exc
        except ValueError as exc:  # a body that is not JSON
            raise TransientError(redact(f"malformed response: {exc}")) from exc
        return self._completion(response)

    @staticmethod
    def _completion(response) -> Completion:
        try:
            choice = response.choices[0]
            text = choice.message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise TransientError(f"malformed response: no choices[0].message.content ({exc})") from exc
        if text is None:
            raise TransientError("malformed response: empty message content")
        usage = getattr(response, "usage", None)
        logprobs = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:
            logprobs = [
                TokenLogprob(t.token, t.logprob, {a.token: a.logprob for a in (t.top_logprobs or [])}) for t in content
            ]
        return Completion(
            text=text,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            logprobs=logprobs,
            finish_reason=getattr(choice, "finish_reason", None),
            cached_tokens=_cached_tokens(usage),
        )

    async def aclose(self) -> None:
        await self._client.close()


def _cached_tokens(usage) -> int | None:
    """usage.prompt_tokens_details.cached_tokens (OpenAI, and vLLM's server with prefix caching), or None
    when the server does not report it."""
    details = getattr(usage, "prompt_tokens_details", None)
    if isinstance(details, dict):  # a field the client's model does not declare stays a dict
        value = details.get("cached_tokens")
    else:
        value = getattr(details, "cached_tokens", None)
    return int(value) if isinstance(value, int | float) and value >= 0 else None
