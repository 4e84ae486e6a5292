"""bench/gpu.py keeps working where CI runs: its tiny sizes on the CPU, all three parts, one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_tiny_runs_and_reports_every_part():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--tokens", "1024", "--chunks", "100,400"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["sizes"].startswith("tiny")
    collect = result["collect"]
    assert collect["tokens"] >= 1024
    assert collect["collect_over_bare"] > 0  # a ratio of timings: its value is the bench's to report, not a test's
    assert collect["sampler_bytes_per_latent"] > 0
    llm = result["llm"]
    assert llm["prefill_tokens_per_s"] > 0 and llm["decode_tokens_per_s"] > 0
    assert 0 < llm["uncached_share"] < 1
    lens = result["logit_lens"]
    assert set(lens) == {"chunk_100", "chunk_400"} and all(v["latents_per_s"] > 0 for v in lens.values())


def test_gpu_bench_refuses_an_unknown_part():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--parts", "a,x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "unknown part" in done.stderr
