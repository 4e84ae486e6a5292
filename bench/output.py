"""Benchmark of the output side: the logit lens of every latent (collect/logit_lens.py), its speed and
its peak memory.

1. The embedded SAE (2,304 latents) on the embedded model (vocabulary 49,152, d_model 576): the whole
   ``compute_logit_lens`` (chunks through the final norm and unembedding, top/bottom 20, token strings),
   in latents/s.
2. A synthetic dictionary against a synthetic vocabulary, for every pair of --latents and --chunk: the
   chunked top/bottom-k alone (``models.logit_lens.logit_lens``). Peak memory should depend on the chunk
   size (chunk x vocabulary logits) and not on the number of latents. The defaults are scaled down for a
   2-core CPU: a 131,072 x 4,096 SAE on a 128k vocabulary is 131,072 x 4,096 x 131,072 = 70 T
   multiply-adds (141 TFLOP); time scales linearly in latents x d_model x vocabulary, so
   seconds(full) = seconds(run) x (131072 x 4096) / (latents x d_model) at the same vocabulary (the JSON's
   full_size_estimate). On a GPU: ``--d-model 4096 --latents 131072 --device cuda``.

Peak memory: on CPU the rise of the process's peak resident set (VmHWM, reset just before the lens)
over its resident set before it, in a fresh process per configuration; on CUDA
``torch.cuda.max_memory_allocated`` over the memory allocated before. Both include the [latents, 2, k]
result kept on the host (CPU only), which does grow with latents: 16 bytes x 2k per latent.

    python bench/output.py [--latents 2048,4096] [--d-model 1024] [--vocab 131072] [--chunk 64,256]
                           [--k 20] [--device cpu] [--skip-embedded]

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_kb(field: str) -> int:
    """VmRSS or VmHWM of this process, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class PeakMemory:
    """The rise of peak memory over the level at ``start()``, in MB (see the module docstring)."""

    def __init__(self, device: str):
        import torch

        self.cuda = device.startswith("cuda")
        self.torch = torch

    def start(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self.base = self.torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.base = rss_kb("VmRSS") * 1024

    def rise_mb(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
            peak = self.torch.cuda.max_memory_allocated()
        else:
            peak = rss_kb("VmHWM") * 1024
        return round((peak - self.base) / 2**20, 1)


def child_synthetic(args) -> dict:
    """One synthetic configuration (run in a fresh process, so its peak is its own)."""
    import numpy as np
    import torch

    from autointerp.models.logit_lens import Unembedding, logit_lens

    torch.manual_seed(0)
    device = torch.device(args.device)
    weight = torch.randn(args.vocab, args.d_model, device=device) / args.d_model**0.5
    norm = torch.nn.RMSNorm(args.d_model, device=device)
    unembedding = Unembedding(weight, norm)
    directions = torch.randn(args.latents, args.d_model, device=device)
    list(logit_lens(directions[: args.chunk], unembedding, args.k, args.chunk))  # warm-up (allocator, kernels)
    ids = np.empty((args.latents, 2, args.k), dtype=np.int32)  # what compute_logit_lens keeps
    values = np.empty((args.latents, 2, args.k), dtype=np.float32)
    memory = PeakMemory(args.device)
    memory.start()
    start = time.perf_counter()
    for chunk in logit_lens(directions, unembedding, args.k, args.chunk):
        rows = slice(chunk.start, chunk.start + chunk.top_ids.shape[0])
        ids[rows, 0], values[rows, 0] = chunk.top_ids.numpy(), chunk.top_values.numpy()
        ids[rows, 1], values[rows, 1] = chunk.bottom_ids.numpy(), chunk.bottom_values.numpy()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "latents": args.latents,
        "d_model": args.d_model,
        "vocab": args.vocab,
        "chunk": args.chunk,
        "k": args.k,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 2),
        "latents_per_s": round(args.latents / seconds, 1),
        "tflop_per_s": round(2 * args.latents * args.d_model * args.vocab / seconds / 1e12, 4),
        "peak_memory_rise_mb": memory.rise_mb(),
        "chunk_logits_mb": round(args.chunk * args.vocab * 4 / 2**20, 1),
        "result_mb": round(ids.nbytes * 2 / 2**20, 1),
    }


def child_embedded(args) -> dict:
    """The embedded SAE's lens through ``compute_logit_lens`` (fresh process)."""
    import torch

    from autointerp.collect.logit_lens import compute_logit_lens
    from autointerp.models import embedded
    from autointerp.models.dictionaries import load_dictionary
    from autointerp.models.subject import load_subject_model

    subject = load_subject_model("embedded", "", args.device, "float32")
    dictionary = load_dictionary(str(embedded.DEFAULT_SAE_DIR)).to(subject.device)
    memory = PeakMemory(args.device)
    memory.start()
    start = time.perf_counter()
    lens = compute_logit_lens(subject, dictionary, args.k, 256, embedded.DEFAULT_HOOKPOINT)
    seconds = time.perf_counter() - start
    return {
        "latents": int(dictionary.d_sae),
        "vocab": int(subject.model.get_output_embeddings().weight.shape[0]),
        "d_model": int(dictionary.d_in),
        "chunk": 256,
        "k": args.k,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "rows": lens.rows.num_rows,
        "seconds": round(seconds, 2),
        "latents_per_s": round(lens.ranked / seconds, 1),
        "peak_memory_rise_mb": memory.rise_mb(),
    }


def run_child(kind: str, **options) -> dict:
    command = [sys.executable, __file__, "--child", kind]
    for key, value in options.items():
        command += ["--" + key.replace("_", "-"), str(value)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def spread(values: list[float]) -> float:
    """max / min of a list of positive figures (1.0 = all equal)."""
    return round(max(values) / max(min(values), 1e-9), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", default="2048,4096", help="synthetic latent counts, comma-separated")
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=131072)
    parser.add_argument("--chunk", default="64,256", help="chunk sizes, comma-separated")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--child", choices=["synthetic", "embedded"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "synthetic":
        args.latents, args.chunk = int(args.latents), int(args.chunk)
        print(json.dumps(child_synthetic(args)))
        return
    if args.child == "embedded":
        print(json.dumps(child_embedded(args)))
        return

    result: dict = {}
    if not args.skip_embedded:
        print("embedded SAE ...", flush=True)
        result["embedded"] = run_child("embedded", k=args.k, device=args.device)
    counts = [int(x) for x in args.latents.split(",")]
    chunks = [int(x) for x in args.chunk.split(",")]
    runs = []
    for chunk in chunks:
        for latents in counts:
            print(f"synthetic {latents} x {args.d_model} against {args.vocab}, chunk {chunk} ...", flush=True)
            runs.append(
                run_child(
                    "synthetic",
                    latents=latents,
                    d_model=args.d_model,
                    vocab=args.vocab,
                    chunk=chunk,
                    k=args.k,
                    device=args.device,
                )
            )
    by_chunk = {c: [r["peak_memory_rise_mb"] for r in runs if r["chunk"] == c] for c in chunks}
    rate = max(r["tflop_per_s"] for r in runs)
    full_flop = 2 * 131072 * 4096 * 131072
    result["synthetic"] = runs
    result["memory"] = {
        # the same chunk with more latents: ~1.0 (bounded by the chunk); more chunk: grows with it
        "peak_rise_mb_by_chunk": {str(c): v for c, v in by_chunk.items()},
        "latent_count_spread_per_chunk": {str(c): spread(v) for c, v in by_chunk.items()},
        "measure": "CUDA max_memory_allocated rise" if args.device.startswith("cuda") else "VmHWM rise over VmRSS",
    }
    result["full_size_estimate"] = {
        "shape": "131072 latents x 4096 d_model against a 131072 vocabulary",
        "tflop": round(full_flop / 1e12, 1),
        "seconds_at_best_measured_rate": round(full_flop / (rate * 1e12)),
        "measured_tflop_per_s": rate,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
