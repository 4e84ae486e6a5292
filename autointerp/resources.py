"""The data that ships with autointerp: prompt templates and the embedded SAE.

Both live at the repository's top level (``prompts/``, ``data/``) and are installed as the packages
``autointerp.prompts`` and ``autointerp.data`` (setup.py maps them), so they are read through
``importlib.resources`` the same way from a wheel, an editable install or a checkout.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Traversable

EMBEDDED_SAE = "sae-smollm2-layer14"


def _package_files(package: str, folder: str) -> Traversable:
    """The files of ``package``. Imported from a checkout (``setup.py`` beside the package), its own
    folder: an editable install of another checkout (a git worktree run with ``PYTHONPATH=checkout``)
    would otherwise map ``package`` to that checkout's folder, and the prompts read would not be the
    code's."""
    root = Path(__file__).resolve().parents[1]
    if (root / "setup.py").is_file() and (root / folder / "__init__.py").is_file():
        return root / folder
    return resources.files(package)


def prompts() -> Traversable:
    """The folder of prompt templates (``prompts/`` in the repository)."""
    return _package_files("autointerp.prompts", "prompts")


@cache
def prompt_text(name: str) -> str:
    """The text of the prompt template ``prompts/name``."""
    return prompts().joinpath(name).read_text(encoding="utf-8")


@cache
def embedded_sae_dir() -> Path:
    """The embedded SAE's folder (``data/sae-smollm2-layer14``) as a real filesystem path, as the
    dictionary loaders need. An installed wheel is unpacked, so this is the installed folder; only
    a package imported from a zip archive is copied out, once per process."""
    folder = _package_files("autointerp.data", "data").joinpath(EMBEDDED_SAE)
    if isinstance(folder, Path):
        return folder
    copy = Path(tempfile.mkdtemp(prefix="autointerp-sae-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    for entry in folder.iterdir():
        (copy / entry.name).write_bytes(entry.read_bytes())
    return copy
