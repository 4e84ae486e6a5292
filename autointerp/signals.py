"""SIGTERM as an exception while a stage runs, so the stage records its run as failed before it exits.

By default SIGTERM ends the process at once, leaving the stage's run ``running``. Inside
``sigterm_raises()`` it raises ``Terminated`` instead: in plain code directly; under a running asyncio
loop by cancelling the loop's tasks with the message ``"terminated (SIGTERM)"`` (an exception raised
from the loop's own machinery would skip the tasks' except-paths), and ``Terminated`` is raised when the
loop has unwound. Either way the stage's except-path marks the run failed with the reason
``"terminated (SIGTERM)"`` (``store.runs.failure_reason``), and the CLI exits with status 143.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from contextlib import contextmanager

TERMINATED = "terminated (SIGTERM)"
SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM  # 143, what a shell reports for a process ended by SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived while a stage ran. A BaseException, like KeyboardInterrupt, so that code which
    records a failed item and goes on (``except Exception``) does not swallow it."""

    run_reason = TERMINATED

    def __init__(self) -> None:
        super().__init__(TERMINATED)


@contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises ``Terminated``; the previous handler is restored after. Outside the
    main thread (where Python cannot set handlers) it does nothing. A block that finishes its work although
    cancelled (the signal came after its last await) returns normally: its run is complete."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = threading.Event()

    def on_sigterm(signum, frame) -> None:
        received.set()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise Terminated() from None
        # call_soon_threadsafe wakes the loop from its select(), which this handler interrupted.
        loop.call_soon_threadsafe(_cancel_all, loop)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except asyncio.CancelledError as exc:
        if received.is_set():
            raise Terminated() from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel(TERMINATED)
