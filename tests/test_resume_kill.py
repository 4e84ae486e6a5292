"""The resume-under-kill experiment for score (bench/resume_kill.py): SIGKILL `autointerp score` five
times at random moments (seeded), then a last run to completion; no answered request may be sent twice,
no score stored twice, and every run must end in a final state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the database comes from a collect on the embedded model
def test_score_killed_five_times_resumes_without_paying_twice(collected_db):
    args = [sys.executable, str(ROOT / "bench" / "resume_kill.py"), "--db", str(collected_db), "--seed", "0"]
    child = subprocess.run(
        args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["kills"] == 5, result
    assert result["last_run_status"] == 0, result["last_run_stderr"]
    assert result["scores"] == result["scores_expected"]
    assert result["duplicate_score_rows"] == 0 and result["duplicate_score_example_rows"] == 0
    assert result["runs_not_final"] == 0, result["run_statuses"]
    assert result["duplicate_answered_hashes"] == 0, result  # item 5: fails until score reuses answered calls
    assert result["ok"] and child.returncode == 0
