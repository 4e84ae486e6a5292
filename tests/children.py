"""Child processes of tests never outlive them."""

from __future__ import annotations

import contextlib
import signal
import subprocess


@contextlib.contextmanager
def interrupted_at_end(proc: subprocess.Popen, timeout: float):
    """Run the body, then stop ``proc`` with SIGINT and wait for it; if it has not ended within
    ``timeout`` seconds (for example because it runs with SIGINT ignored, as under ``nohup ... &``),
    or the body failed, kill it so that it cannot keep running after the suite."""
    try:
        yield proc
    finally:
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
