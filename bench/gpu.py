"""GPU-ready benchmark: measures, on the machine it runs on, what docs/scaling.md otherwise assumes.

Needs only torch and transformers (no internet, no vLLM, no model download: every model here has random
weights in the shape of a real one), plus this repository's ``autointerp`` package on the path.

  (a) collect: a Llama-3.1-8B-shaped model (random weights, bf16 on CUDA) stopped at layer 16, with a
      random 131,072-latent TopK SAE, over a synthetic token stream. Tokens/s of the bare forward +
      encode, and of forward + encode + the project's streaming sampler (``collect.sampler``), in the
      same run; their ratio; peak GPU memory; the sampler's state in bytes per latent (its own
      accounting). Above ~14k latents the sampler keeps keys only and collect replays the chosen windows
      afterwards: the ratio with that replay is bounded by counting it as one more bare pass.
  (b) LLM throughput proxy: an 8B-shaped model's prefill and decode tokens/s with Hugging Face
      transformers at the project's prompt shapes: a batch of detection prompts that share a prefix
      (instructions + explanation), prefilled whole, and prefilled as suffixes after the prefix's cached
      keys and values (what a prefix-caching engine saves), then decoded. transformers has no paged
      attention or continuous batching: vLLM or SGLang reach more; treat these as a floor.
  (c) logit lens at full size: 131,072 decoder directions of width 4096 against a 128,256-token
      vocabulary (``models.logit_lens``), in latents/s, with peak GPU memory at two chunk sizes.

    python bench/gpu.py                 # full sizes on CUDA; tiny sizes on a CPU-only machine
    python bench/gpu.py --tiny          # tiny sizes anywhere (what CI runs, to keep it working)
    python bench/gpu.py --parts a,c --tokens 262144

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.collect.sampler import StreamingSampler  # noqa: E402
from autointerp.collect.stream import sampler_sizes  # noqa: E402
from autointerp.config import CollectConfig  # noqa: E402
from autointerp.models.logit_lens import Unembedding, logit_lens  # noqa: E402


@dataclass(frozen=True)
class Shape:
    """Model and dictionary sizes of one run."""

    d_model: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    collect_layers: int  # layers built for collect: the SAE reads the output of the last one
    llm_layers: int  # layers of the throughput proxy
    latents: int
    topk: int
    seq_len: int
    batch: int  # sequences per collect forward
    prefix_tokens: int  # detection prompt: instructions + explanation (shared, cacheable)
    suffix_tokens: int  # detection prompt: the excerpts and the question (per call)
    prompts: int  # detection prompts of one latent prefilled together
    decode_tokens: int


FULL = Shape(4096, 14336, 32, 8, 128256, 17, 32, 131072, 64, 256, 16, 420, 1000, 8, 24)
TINY = Shape(64, 128, 4, 2, 1000, 3, 2, 1024, 8, 64, 4, 24, 48, 4, 4)


def llama(shape: Shape, layers: int, device: torch.device, dtype: torch.dtype):
    """A LlamaForCausalLM of ``shape`` with random weights, built on ``device``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=shape.d_model,
        intermediate_size=shape.intermediate,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        num_hidden_layers=layers,
        vocab_size=shape.vocab,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None


class TopKSAE:
    """A random TopK SAE: ``encode`` gives dense latents [..., n] with the k largest pre-activations kept."""

    def __init__(self, d_model: int, n: int, k: int, device: torch.device, dtype: torch.dtype):
        g = torch.Generator(device="cpu").manual_seed(0)
        self.W_enc = (torch.randn(d_model, n, generator=g) / math.sqrt(d_model)).to(device, dtype)
        self.b_enc = torch.zeros(n, device=device, dtype=dtype)
        self.k = k

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(x.to(self.W_enc.dtype) @ self.W_enc + self.b_enc)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre, dtype=torch.float32).scatter_(-1, top.indices, top.values.float())


def collect_part(shape: Shape, tokens: int, device: torch.device, dtype: torch.dtype) -> dict:
    """(a): bare forward + encode, then forward + encode + sampler, over the same synthetic batches."""
    print(f"(a) collect: {shape.collect_layers} layers of width {shape.d_model}, {shape.latents} latents", flush=True)
    reset_peak(device)
    model = llama(shape, shape.collect_layers, device, dtype)
    sae = TopKSAE(shape.d_model, shape.latents, shape.topk, device, dtype)
    layer = model.model.layers[-1]
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o))
    g = torch.Generator(device="cpu").manual_seed(1)
    n_batches = max(1, math.ceil(tokens / (shape.batch * shape.seq_len)))
    batches = [torch.randint(0, shape.vocab, (shape.batch, shape.seq_len), generator=g) for _ in range(n_batches)]

    @torch.inference_mode()
    def run(sampler: StreamingSampler | None) -> float:
        start = time.perf_counter()
        for i, ids in enumerate(batches):
            ids = ids.to(device)
            captured.clear()
            model.model(input_ids=ids, use_cache=False)  # the decoder stack; no unembedding
            acts = sae.encode(captured[-1])
            if sampler is not None:
                counted = torch.ones_like(ids, dtype=torch.bool)
                counted[:, 0] = False
                seq_ids = torch.arange(i * shape.batch, (i + 1) * shape.batch, device=device)
                sampler.update(acts, ids, counted, seq_ids)
            else:
                acts.max()  # use the result, as the sampler would
        sync(device)
        return time.perf_counter() - start

    run(None)  # warm-up (kernels, allocator)
    bare = run(None)
    sampler = StreamingSampler(sampler_sizes(CollectConfig(), shape.latents, False), device)
    with_sampler = run(sampler)
    handle.remove()
    n = n_batches * shape.batch * shape.seq_len
    state = sampler.nbytes()
    keys_only = not sampler.keeps_windows
    # keys-only (--sampler-memory auto above ~14k latents): the chosen windows are replayed after selection,
    # at most one more forward + encode over the corpus (collect/replay.py); its upper bound is one bare pass
    with_replay = with_sampler + (bare if keys_only else 0.0)
    result = {
        "tokens": n,
        "bare_tokens_per_s": round(n / bare, 1),
        "collect_tokens_per_s": round(n / with_sampler, 1),
        "collect_over_bare": round(bare / with_sampler, 3),
        "sampler_mode": "keys (windows replayed after selection)" if keys_only else "windows (one pass)",
        "collect_with_replay_over_bare_at_most": round(bare / with_replay, 3),
        "peak_gpu_gib": peak_gib(device),
        "sampler_bytes_per_latent": round(state / shape.latents, 1),
        "sampler_gib": round(state / 2**30, 3),
        "note": "forward stops after the last built layer (the SAE's hookpoint); the sampler is the project's own",
    }
    return result


def llm_part(shape: Shape, device: torch.device, dtype: torch.dtype) -> dict:
    """(b): prefill whole prompts, prefill suffixes after a cached shared prefix, then decode."""
    from transformers import DynamicCache

    print(f"(b) LLM proxy: {shape.llm_layers} layers, prompts {shape.prefix_tokens}+{shape.suffix_tokens}", flush=True)
    reset_peak(device)
    model = llama(shape, shape.llm_layers, device, dtype)
    g = torch.Generator(device="cpu").manual_seed(2)
    prefix = torch.randint(0, shape.vocab, (1, shape.prefix_tokens), generator=g).to(device)
    suffix = torch.randint(0, shape.vocab, (shape.prompts, shape.suffix_tokens), generator=g).to(device)
    whole = torch.cat([prefix.expand(shape.prompts, -1), suffix], dim=1)

    @torch.inference_mode()
    def prefill_whole() -> tuple[float, object]:
        start = time.perf_counter()
        out = model(input_ids=whole, use_cache=True, logits_to_keep=1)
        sync(device)
        return time.perf_counter() - start, out.past_key_values

    @torch.inference_mode()
    def prefill_after_prefix() -> float:
        start = time.perf_counter()
        cache = DynamicCache()
        model(input_ids=prefix, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(shape.prompts)
        model(input_ids=suffix, past_key_values=cache, use_cache=True, logits_to_keep=1)
        sync(device)
        return time.perf_counter() - start

    @torch.inference_mode()
    def decode(cache) -> float:
        token = torch.zeros(shape.prompts, 1, dtype=torch.long, device=device)
        start = time.perf_counter()
        for _ in range(shape.decode_tokens):
            logits = model(input_ids=token, past_key_values=cache, use_cache=True).logits
            token = logits[:, -1:].argmax(-1)
        sync(device)
        return time.perf_counter() - start

    prefill_whole()  # warm-up
    seconds_whole, cache = prefill_whole()
    seconds_decode = decode(cache)
    del cache
    prefill_after_prefix()
    seconds_suffix = prefill_after_prefix()
    prompt_tokens = whole.numel()
    result = {
        "prompts": shape.prompts,
        "prompt_tokens": prompt_tokens,
        "prefill_tokens_per_s": round(prompt_tokens / seconds_whole, 1),
        "prefill_with_cached_prefix_tokens_per_s": round(prompt_tokens / seconds_suffix, 1),
        "uncached_share": round(suffix.numel() / prompt_tokens, 3),
        "decode_tokens_per_s": round(shape.prompts * shape.decode_tokens / seconds_decode, 1),
        "peak_gpu_gib": peak_gib(device),
        "note": "Hugging Face transformers, eager batch, random weights: a floor for vLLM/SGLang",
    }
    return result


def lens_part(shape: Shape, device: torch.device, dtype: torch.dtype, chunks: list[int]) -> dict:
    """(c): the logit lens of every latent, at each chunk size."""
    print(f"(c) logit lens: {shape.latents} x {shape.d_model} against {shape.vocab} tokens", flush=True)
    g = torch.Generator(device="cpu").manual_seed(3)
    directions = torch.randn(shape.latents, shape.d_model, generator=g).to(device, dtype)
    weight = torch.randn(shape.vocab, shape.d_model, generator=g).to(device, dtype)
    norm = torch.nn.RMSNorm(shape.d_model, device=device, dtype=dtype)
    unembedding = Unembedding(weight, norm)
    out = {}
    for chunk in chunks:
        reset_peak(device)
        before = torch.cuda.memory_allocated() if device.type == "cuda" else 0
        start = time.perf_counter()
        n = sum(c.top_ids.shape[0] for c in logit_lens(directions, unembedding, k=20, chunk_size=chunk))
        sync(device)
        seconds = time.perf_counter() - start
        extra = (torch.cuda.max_memory_allocated() - before) / 2**30 if device.type == "cuda" else None
        out[f"chunk_{chunk}"] = {
            "latents_per_s": round(n / seconds, 1),
            "seconds": round(seconds, 2),
            "peak_gpu_gib_above_weights": None if extra is None else round(extra, 3),
            "chunk_logits_gib": round(chunk * shape.vocab * 4 / 2**30, 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (default on a machine without CUDA)")
    parser.add_argument("--parts", default="a,b,c", help="which parts to run: a (collect), b (LLM), c (lens)")
    parser.add_argument("--tokens", type=int, default=0, help="collect tokens (default 65536; tiny 2048)")
    parser.add_argument("--chunks", default="", help="logit-lens chunk sizes (default 1024,4096; tiny 64,256)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    shape = TINY if tiny else FULL
    device = torch.device("cuda" if cuda and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"a", "b", "c"}
    if unknown:
        parser.error(f"--parts {args.parts}: unknown part(s) {sorted(unknown)}; expected a, b and/or c")
    chunks = [int(c) for c in args.chunks.split(",") if c] or ([64, 256] if tiny else [1024, 4096])
    tokens = args.tokens or (2048 if tiny else 65536)
    result: dict = {
        "bench": "gpu",
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "sizes": "tiny (CPU smoke test)" if tiny else "full (Llama-3.1-8B shape, 131k-latent SAE)",
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
    }
    if "a" in parts:
        result["collect"] = collect_part(shape, tokens, device, dtype)
    if "b" in parts:
        result["llm"] = llm_part(shape, device, dtype)
    if "c" in parts:
        result["logit_lens"] = lens_part(shape, device, dtype, chunks)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
