"""Dictionaries named by a Hugging Face Hub id (``owner/repo`` or ``owner/repo/sub/folder``)."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import AutointerpError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.=-]+)*/?")


def looks_like_hub_id(spec: str) -> bool:
    """``owner/repo[/subfolder...]``: relative, forward slashes, hub-legal characters."""
    return bool(_HUB_ID.fullmatch(spec)) and ".." not in spec.split("/")


def download(spec: str) -> Path:
    """Download ``owner/repo`` (only ``sub/folder`` when given) and return the local folder it names."""
    parts = spec.strip("/").split("/")
    repo_id, sub = "/".join(parts[:2]), "/".join(parts[2:])
    from huggingface_hub import snapshot_download

    try:
        local = Path(snapshot_download(repo_id, allow_patterns=[f"{sub}/*"] if sub else None))
    except Exception as exc:  # offline, unknown repo, network: all mean nothing usable came down
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise AutointerpError(
            f"{spec!r} is not a local path, and nothing could be downloaded from the Hugging Face Hub for it "
            f"({type(exc).__name__}{': ' + reason if reason else ''}).",
            "a local folder or file holding a dictionary, or a hub id owner/repo[/subfolder] reachable online.",
            f"on a machine with internet run `huggingface-cli download {repo_id}"
            f"{f' --include {sub!r}/*' if sub else ''} --local-dir DIR` and pass the local path "
            f"DIR{'/' + sub if sub else ''}.",
        ) from exc
    target = local / sub if sub else local
    if not target.exists():
        raise AutointerpError(
            f"The hub repository {repo_id} has no folder {sub!r}.", "a sub-folder that exists in the repository."
        )
    return target
