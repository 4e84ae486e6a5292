"""The static checks CI runs with the tests, each configured in pyproject.toml: ruff's lint rules,
ruff's formatting, and import-linter's layering contracts. Each runs the tool of this interpreter's
environment (scripts/setup.sh installs them with the test extras) on the whole repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKS = {
    "ruff-lint": ["ruff", "check", "."],
    "ruff-format": ["ruff", "format", "--check", "."],
    "layering": ["lint-imports", "--no-cache", "--no-logo"],
}


@pytest.mark.parametrize("name", CHECKS)
def test_check_passes(name):
    tool, *args = CHECKS[name]
    executable = shutil.which(tool, path=str(Path(sys.executable).parent)) or shutil.which(tool)
    assert executable, f"{tool} is not installed: bash scripts/setup.sh (or pip install -e '.[test]')"
    done = subprocess.run([executable, *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join([tool, *args])} failed:\n{done.stdout}\n{done.stderr}"
