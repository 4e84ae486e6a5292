"""Who is running: a process identity that a reused pid cannot impersonate.

A pid alone names a process only while it lives: after it ends, the kernel may give the same pid to any
other process. On Linux the identity adds the process's start time (field 22 of ``/proc/<pid>/stat``,
clock ticks since boot) and the boot id, so neither a reused pid nor a reboot (which restarts the tick
count) can alias it. Elsewhere there is no portable start time: the identity is pid and host only, and
a reused pid still looks alive (the old, conservative behaviour).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class ProcessIdentity:
    """A process: its pid, its host, and on Linux ``"<boot id>/<start ticks>"`` (None elsewhere)."""

    pid: int
    host: str
    start: str | None


def start_token(pid: int) -> str | None:
    """``"<boot id>/<start ticks>"`` of the live process ``pid`` on this host, or None when there is no
    such process or this system does not tell (no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = _BOOT_ID.read_text().strip()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": split after the last one.
    fields = stat[stat.rfind(")") + 2 :].split()
    return f"{boot}/{fields[19]}"  # field 22 of the whole line; fields[0] is field 3


def current() -> ProcessIdentity:
    """The identity of this process."""
    return ProcessIdentity(os.getpid(), socket.gethostname(), start_token(os.getpid()))


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def is_alive(identity: ProcessIdentity) -> bool | None:
    """Whether the process ``identity`` still runs: True or False on this host, None (cannot tell) on
    another. Without a recorded start time (another system, or a row written before it was recorded)
    a live pid counts as alive."""
    if identity.host != socket.gethostname():
        return None
    if identity.start is not None:
        live = start_token(identity.pid)
        if live is not None or Path("/proc/self/stat").exists():
            return live == identity.start
    return _pid_exists(identity.pid)
