"""JSON as the browser sends and writes it.

NaN and infinities are not JSON: they become null, the same "missing" the pages show for NULL.
For data embedded in ``.js`` files (the static site), ``<``, ``>`` and ``&`` are written as ``\\u003c``
etc.: the decoded strings are unchanged, and no corpus text can close a script element or be read as
HTML by anything that sniffs the file.
"""

from __future__ import annotations

import math

from .. import jsonio


def finite(obj):
    """``obj`` with every non-finite float replaced by None (lists and dicts walked)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj) -> str:
    """Strict JSON text of ``obj`` (UTF-8 characters kept as they are)."""
    return jsonio.dumps(obj)


def script_literal(obj) -> str:
    """JSON text safe to embed in JavaScript source."""
    return (
        dumps(obj)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
