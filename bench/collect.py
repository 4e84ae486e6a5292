"""Benchmark of the collect stage on the embedded default.

Measured in one run, on the same corpus slice:
  (a) forward to the hookpoint + SAE encode alone, in tokens/s;
  (b) the whole collect (tokenization, forward, encode, selection, statistics, database write), in
      tokens/s, model loading excluded; target (b) >= 0.85 x (a);
  peak RSS of a fresh collect process for N and 4N tokens; target 4N <= 1.15 x N;
  database size per million tokens processed.

    python bench/collect.py [--tokens 100000]

Sampler memory (no model, no database): with ``--latents N [N ...]``, a synthetic random TopK dictionary of
N latents (64-wide random inputs, 32 active latents per token) streams ``--tokens`` tokens (default 512)
through a keys-only sampler (``--sampler-memory keys``), each N in a fresh process; reported per latent:
the sampler's own accounting of its state (``StreamingSampler.nbytes``) before (every window kept, the
one-pass layout; its accounting is from the shapes, on the meta device, as that many windows do not fit
in this machine's memory) and after (keys only, measured on the sampler that streamed), the process's peak
RSS and the update rate. An N whose keys-only state exceeds ``--max-gib`` is accounted on the meta device
only (said in the output).

    python bench/collect.py --latents 131072 1048576

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.collect.stage import collect  # noqa: E402
from autointerp.config import CollectConfig  # noqa: E402
from autointerp.corpus import SequencePacker, open_corpus, texts_of  # noqa: E402
from autointerp.models.dictionaries.saelens import load_saelens  # noqa: E402
from autointerp.models.embedded import DEFAULT_HOOKPOINT, DEFAULT_SAE_DIR  # noqa: E402
from autointerp.models.subject import load_subject_model  # noqa: E402


def forward_and_encode(tokens: int, batch_size: int) -> float:
    subject = load_subject_model("embedded", DEFAULT_HOOKPOINT)
    sae = load_saelens(DEFAULT_SAE_DIR).to(subject.device)
    packer = SequencePacker(subject.tokenizer, 256)
    n_seqs = math.ceil(tokens / 256)
    seqs = []
    for seq in packer.sequences(texts_of(open_corpus("embedded"), "text")):
        seqs.append(seq)
        if len(seqs) == n_seqs:
            break
    ids = torch.from_numpy(np.stack(seqs))
    start = time.perf_counter()
    for i in range(0, n_seqs, batch_size):
        sae.encode(subject.read(ids[i : i + batch_size]))
    return n_seqs * 256 / (time.perf_counter() - start)


def whole_collect(tokens: int, batch_size: int, db: Path) -> tuple[float, float]:
    """tokens/s of collect() without model loading, and the streaming part alone."""
    import autointerp.collect.setup as collect_module

    loaded = {}
    original = collect_module.load_subject_model

    def timed_load(*args, **kwargs):
        t = time.perf_counter()
        model = original(*args, **kwargs)
        loaded["seconds"] = time.perf_counter() - t
        return model

    collect_module.load_subject_model = timed_load
    try:
        start = time.perf_counter()
        result = collect(CollectConfig(tokens=tokens, batch_size=batch_size), db, progress=False)
        total = time.perf_counter() - start - loaded["seconds"]
    finally:
        collect_module.load_subject_model = original
    return result.n_tokens / total, result.tokens_per_second


def peak_rss_mib(tokens: int, db: Path) -> float:
    """Peak RSS of a fresh process running `autointerp collect`."""
    code = (
        "import resource, sys; from autointerp.cli import main; rc = main(sys.argv[1:]); "
        "print('RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "collect", "--db", str(db), "--tokens", str(tokens), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        sys.exit(f"collect failed:\n{out.stderr[-3000:]}")
    kib = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("RSS_KIB")))
    return kib / 1024


SYNTHETIC_WIDTH, SYNTHETIC_K, SYNTHETIC_SEQ_LEN = 64, 32, 64


def synthetic_topk_batches(n_latents: int, tokens: int, batch_size: int, seed: int = 0):
    """Batches (activations [B, T, N], token ids, counted) of a random TopK dictionary over random inputs."""
    g = torch.Generator().manual_seed(seed)
    encoder = torch.randn(SYNTHETIC_WIDTH, n_latents, generator=g)
    n_seqs = math.ceil(tokens / SYNTHETIC_SEQ_LEN)
    for first in range(0, n_seqs, batch_size):
        b = min(batch_size, n_seqs - first)
        x = torch.randn(b, SYNTHETIC_SEQ_LEN, SYNTHETIC_WIDTH, generator=g)
        top = (x @ encoder).relu_().topk(SYNTHETIC_K, dim=-1)
        acts = torch.zeros(b, SYNTHETIC_SEQ_LEN, n_latents).scatter_(-1, top.indices, top.values)
        ids = torch.randint(3, 50_000, (b, SYNTHETIC_SEQ_LEN), generator=g)
        counted = torch.ones(b, SYNTHETIC_SEQ_LEN, dtype=torch.bool)
        counted[:, 0] = False
        yield first, acts, ids, counted


def sampler_memory_child(n_latents: int, tokens: int, batch_size: int, max_gib: float) -> dict:
    """One N's figures (run in a fresh process, so that its peak RSS is its own)."""
    import resource

    from autointerp.collect.sampler import StreamingSampler
    from autointerp.collect.stream import sampler_bytes_per_latent, sampler_sizes

    config = CollectConfig(seq_len=SYNTHETIC_SEQ_LEN, sampler_memory="keys")
    keys = sampler_sizes(config, n_latents, signed=False)
    windows = dataclasses.replace(keys, keep_windows=True)
    out = {
        "latents": n_latents,
        "bytes_per_latent_before": sampler_bytes_per_latent(windows),
        "gib_before": round(sampler_bytes_per_latent(windows) * n_latents / 2**30, 2),
    }
    if sampler_bytes_per_latent(keys) * n_latents > max_gib * 2**30:
        out.update(bytes_per_latent_after=sampler_bytes_per_latent(keys), after_measured_on="meta device (shapes)")
    else:
        rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        sampler = StreamingSampler(keys, torch.device("cpu"))
        seconds, done = 0.0, 0
        for first, acts, ids, counted in synthetic_topk_batches(n_latents, tokens, batch_size):
            start = time.perf_counter()
            sampler.update(acts, ids, counted, torch.arange(first, first + ids.shape[0]))
            seconds += time.perf_counter() - start
            done += ids.numel()
        start = time.perf_counter()
        sampler.finish()
        seconds += time.perf_counter() - start
        out.update(
            bytes_per_latent_after=sampler.nbytes() / n_latents,
            after_measured_on="the sampler that streamed",
            tokens=done,
            sampler_update_tokens_per_s=round(done / seconds, 1),
            peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            rss_gib_before_sampler=round(rss_start, 2),
        )
    out["gib_after"] = round(out["bytes_per_latent_after"] * n_latents / 2**30, 2)
    # the merge driver holds the merged sampler and one shard's state (the same rows, flat) at a time
    out["merge_driver_gib_after"] = round(2 * out["gib_after"], 2)
    return out


def sampler_memory(latents: list[int], tokens: int, batch_size: int, max_gib: float) -> None:
    rows = []
    for n in latents:
        args = ["--sampler-child", str(n), "--tokens", str(tokens), "--batch-size", str(batch_size)]
        out = subprocess.run(
            [sys.executable, __file__, *args, "--max-gib", str(max_gib)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if out.returncode != 0:
            sys.exit(f"sampler bench at {n} latents failed:\n{out.stderr[-3000:]}")
        row = json.loads(out.stdout.splitlines()[-1])
        print(
            f"{n:,} latents: {row['bytes_per_latent_before']:,} bytes/latent before, "
            f"{row['bytes_per_latent_after']:,.0f} after ({row['after_measured_on']}); "
            f"{row['gib_before']} -> {row['gib_after']} GiB",
            flush=True,
        )
        rows.append(row)
    print(json.dumps({"sampler_memory": rows, "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tokens", type=int, default=None, help="N (>= 100k for the memory figure; 512 with --latents)"
    )
    parser.add_argument("--batch-size", type=int, default=CollectConfig.batch_size)
    parser.add_argument("--latents", type=int, nargs="+", help="sampler memory of synthetic TopK dictionaries")
    parser.add_argument("--max-gib", type=float, default=6.0, help="largest keys-only state to allocate (--latents)")
    parser.add_argument("--sampler-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sampler_child:
        print(json.dumps(sampler_memory_child(args.sampler_child, args.tokens, args.batch_size, args.max_gib)))
        return
    if args.latents:
        sampler_memory(args.latents, args.tokens or 512, args.batch_size, args.max_gib)
        return
    args.tokens = args.tokens or 100_000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = forward_and_encode(args.tokens, args.batch_size)
        print(f"(a) forward + encode: {a:,.0f} tokens/s", flush=True)
        b, b_stream = whole_collect(args.tokens, args.batch_size, tmp / "b.duckdb")
        print(f"(b) whole collect: {b:,.0f} tokens/s (streaming part {b_stream:,.0f})", flush=True)
        rss_n = peak_rss_mib(args.tokens, tmp / "n.duckdb")
        print(f"peak RSS at N={args.tokens:,}: {rss_n:,.0f} MiB", flush=True)
        rss_4n = peak_rss_mib(4 * args.tokens, tmp / "4n.duckdb")
        print(f"peak RSS at 4N={4 * args.tokens:,}: {rss_4n:,.0f} MiB", flush=True)
        db_mib = (tmp / "4n.duckdb").stat().st_size / 2**20
        db_mib_n = (tmp / "n.duckdb").stat().st_size / 2**20
    figures = {
        "tokens_N": args.tokens,
        "forward_encode_tokens_per_s": round(a, 1),
        "collect_tokens_per_s": round(b, 1),
        "collect_streaming_tokens_per_s": round(b_stream, 1),
        "collect_over_forward_encode": round(b / a, 3),
        "target_collect_over_forward_encode": 0.85,
        "peak_rss_mib_N": round(rss_n, 1),
        "peak_rss_mib_4N": round(rss_4n, 1),
        "rss_4N_over_N": round(rss_4n / rss_n, 3),
        "target_rss_4N_over_N": 1.15,
        "db_mib_N": round(db_mib_n, 2),
        "db_mib_4N": round(db_mib, 2),
        "db_mib_per_million_tokens_at_4N": round(db_mib / (4 * args.tokens / 1e6), 2),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
