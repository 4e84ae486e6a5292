"""Ctrl-C must stop a server, even when the shell started it with SIGINT ignored (``nohup ... &``)."""

from __future__ import annotations

import signal
import threading


def restore_ctrl_c() -> None:
    """Make SIGINT raise KeyboardInterrupt again, whatever handler the process inherited."""
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        signal.signal(signal.SIGINT, signal.default_int_handler)
