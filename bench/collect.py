"""Benchmark of the collect stage on the embedded default.

Measured in one run, on the same corpus slice:
  (a) forward to the hookpoint + SAE encode alone, in tokens/s;
  (b) the whole collect (tokenization, forward, encode, selection, statistics, database write), in
      tokens/s, model loading excluded; target (b) >= 0.85 x (a);
  peak RSS of a fresh collect process for N and 4N tokens; target 4N <= 1.15 x N;
  database size per million tokens processed.

    python bench/collect.py [--tokens 100000]

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=100_000, help="N (>= 100k for the memory figure)")
    parser.add_argument("--batch-size", type=int, default=CollectConfig.batch_size)
    args = parser.parse_args()
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
