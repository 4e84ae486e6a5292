"""One exception type for every mistake a user can make.

Each message says what was wrong, what was expected and how to fix it; the CLI prints it and exits
with status 2 without a traceback.
"""

from __future__ import annotations


class AutointerpError(Exception):
    """A problem with the user's input or environment, explained for the user."""

    def __init__(self, what: str, expected: str | None = None, fix: str | None = None):
        self.what = what
        self.expected = expected
        self.fix = fix
        parts = [what]
        if expected:
            parts.append(f"Expected: {expected}")
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__("\n".join(parts))
