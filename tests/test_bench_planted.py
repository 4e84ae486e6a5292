"""bench/planted.py end to end on the embedded default, with a few planted latents (issue 15)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_planted_bench_runs_end_to_end_and_reports_every_part(tmp_path):
    db = tmp_path / "planted.duckdb"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "planted.py"),
            "--db",
            str(db),
            "--per-family",
            "1",
            "--families",
            "word_list,structural,gated",
            "--densities",
            "0.01,0.003",
            "--tokens",
            "200000",
        ],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["latents"] == 3 and report["score_runs_failed"] == []
    # every planted latent of these densities reaches the minimum at 200k tokens and is ok
    assert sum(c["ok"] for c in report["coverage"].values()) == 3
    embedding = report["validity"]["embedding"]
    assert embedding["n_latents"] == 3 and -1 <= embedding["kendall_tau"] <= 1
    assert embedding["chance"] == 0.5 and embedding["empty_control"] is not None
    assert not embedding["needs_capable_model"]  # the embedding scorer needs no LLM
    # the fidelities differ between the three latents, and both the truth and the own explanations are scored
    assert len(embedding["by_fidelity"]["truth"]) == 3
    assert report["recovery"]["n"] >= 1 and report["recovery"]["chance_mean_rank"] == 2.0
    probes = report["cue_probes"]["mean_balanced_accuracy"]
    assert "cue:fuzzing:peak_position" in probes and all(0 <= v <= 1 for v in probes.values())
