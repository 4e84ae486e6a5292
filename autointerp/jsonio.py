"""JSON where its volume grows with the dictionary: the Neuronpedia export, the browser's JSON API,
import, and the call log. orjson writes and reads it several times faster than the standard library.

What differs from ``json``, on purpose:
- NaN and infinities are written as ``null`` (``json`` writes the non-JSON ``NaN`` or, with
  ``allow_nan=False``, raises); every caller here already treats them as missing.
- Text is UTF-8 with characters kept as they are (``ensure_ascii=False``), compact separators.
- numpy scalars and arrays are written as numbers and lists; any other unknown object as ``str(obj)``.

Hashes keep the standard library: a key that was ``json.dumps(..., sort_keys=True)`` stays so, because
changing its bytes would change every stored identity (``store.llm_log.request_key``).
"""

from __future__ import annotations

import orjson

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
#: What ``loads`` raises on bad JSON (a subclass of ``json.JSONDecodeError`` and of ``ValueError``).
JSONDecodeError = orjson.JSONDecodeError


def dump_bytes(obj) -> bytes:
    """UTF-8 JSON of ``obj``."""
    return orjson.dumps(obj, default=str, option=OPTIONS)


def dumps(obj) -> str:
    """JSON text of ``obj``."""
    return orjson.dumps(obj, default=str, option=OPTIONS).decode("utf-8")


def loads(data: str | bytes):
    """The value of one JSON text; raises ``JSONDecodeError``. Unlike ``json.loads`` it refuses the
    non-JSON ``NaN`` and ``Infinity`` tokens."""
    return orjson.loads(data)
