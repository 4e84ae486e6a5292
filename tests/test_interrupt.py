"""Ctrl-C stops the CLI's servers even when SIGINT was inherited as ignored (``nohup ... &``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from .children import interrupted_at_end

pytestmark = pytest.mark.slow


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_browse_stops_on_sigint_even_when_it_was_ignored(collected_db):
    proc = subprocess.Popen(
        [sys.executable, "-m", "autointerp.cli", "browse", "--db", str(collected_db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=ignore_sigint,
    )
    with interrupted_at_end(proc, timeout=20):
        line = proc.stdout.readline()
        assert re.search(r"http://127\.0\.0\.1:\d+/", line), line
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the server ignored SIGINT")
    assert rc == 0 and "stopped" in proc.stderr.read()
