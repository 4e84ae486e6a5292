"""bench/search.py runs end to end at a tiny size and reports every figure (issue 18)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_search_bench_reports_every_figure():
    args = [
        "--rows",
        "3000",
        "--queries",
        "3",
        "--duckdb-rows",
        "1000",
        "--explanations",
        "12",
        "--binary-rerank",
        "300",
    ]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "search.py"), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["rows"] == 3000 and figures["scan"]["planted_first"] is True
    assert figures["scan"]["end_to_end"]["p50_ms"] >= figures["scan"]["scan_only"]["min_ms"] > 0
    assert figures["memory"]["vectors_mb"] == round(3000 * 384 * 4 / 2**20, 1)
    assert figures["duckdb_scan"]["rows"] == 1000 and 0 <= figures["binary_then_rerank"]["recall_at_k"] <= 1
    assert (figures["embed"]["incremental_new"], figures["embed"]["incremental_reused"]) == (10, 12)
    assert figures["embed"]["per_second"] > 0 and isinstance(figures["meets_target"], bool)
