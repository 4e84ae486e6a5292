"""``autointerp plan``: count what an explain and score run will cost before it runs, and compare a
finished run's actual totals with its plan.

The names below are imported on first use, so that building the CLI's parser (which imports
``plan.command``) loads no torch.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "Plan": ".plan",
    "make_plan": ".plan",
    "PromptTokenizer": ".tokenizer",
    "load_tokenizer": ".tokenizer",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
