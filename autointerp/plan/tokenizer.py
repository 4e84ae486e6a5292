"""How ``autointerp plan`` counts prompt tokens: the target model's own tokenizer when it is on this
machine (no network), framed as the backends frame a prompt, or else a stated approximation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import AutointerpError

log = logging.getLogger(__name__)

#: Characters per token of the approximation used when no tokenizer is available.
CHARS_PER_TOKEN = 4


@dataclass
class PromptTokenizer:
    """Turns one request (chat messages and the answer's prefill) into the units the plan counts.

    With a Hugging Face tokenizer the units are token ids of the chat template with the generation
    prompt and the prefill appended, exactly as the local and vllm backends build the prompt. Without
    one (``hf is None``) they are characters of the messages' text, and ``per_token`` characters count
    as one token."""

    name: str
    """What counts: the tokenizer's name, or the approximation."""
    hf: Any = None
    per_token: int = 1
    exact: bool = True
    """Whether the counts are the model's own (False: an approximation)."""

    def encode(self, messages: list[dict], prefill: str = "") -> list:
        """The units of one request's prompt (token ids, or characters when approximating)."""
        if self.hf is None:
            text = "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages) + "<assistant>\n" + prefill
            return list(text)
        text = self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill
        return self.hf(text, add_special_tokens=False).input_ids

    def tokens(self, units: int) -> int:
        """Tokens that ``units`` units of ``encode`` make."""
        return -(-units // self.per_token)


def approximate() -> PromptTokenizer:
    return PromptTokenizer(f"approximation: {CHARS_PER_TOKEN} characters per token", None, CHARS_PER_TOKEN, False)


def load_tokenizer(backend: str, model: str, tokenizer: str = "") -> PromptTokenizer:
    """The tokenizer the plan counts with: ``tokenizer`` (a local Hugging Face folder or cached hub name)
    when given; for the local backend with no model, the embedded SmolLM2's; else ``model`` when it is
    on this machine (local files only); else the approximation. A ``tokenizer`` that cannot be loaded is
    an error, a model's missing tokenizer is not (the plan says it approximates)."""
    if tokenizer:
        hf = _hub_tokenizer(tokenizer)
        if hf is None:
            raise AutointerpError(
                f"--tokenizer {tokenizer!r} cannot be loaded from this machine.",
                "a local Hugging Face folder with a tokenizer, or a hub name already in the local cache.",
                "check the path, or leave --tokenizer out to count with the model's tokenizer or an approximation.",
            )
        return PromptTokenizer(tokenizer, hf)
    if backend == "local" and model in ("", "embedded"):
        return PromptTokenizer("SmolLM2-135M-Instruct (embedded)", _embedded_tokenizer())
    hf = _hub_tokenizer(model) if model else None
    return PromptTokenizer(model, hf) if hf is not None else approximate()


def _hub_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:  # not on this machine, or no tokenizer there
        log.info("no local tokenizer for %s: %s", name, exc)
        return None


def _embedded_tokenizer():
    from transformers import AutoTokenizer

    from ..models import embedded

    cached = embedded.plain_model_dir()
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cached)
    gguf = embedded.smollm2_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
