"""The validator's child process: runs the checks that run plugin code and
writes one JSON line per event to the file descriptor it is given, so that
the plugin's own output on stdout and stderr cannot garble them.

Each event carries this process's pid: a plugin that forks leaves a copy
that the parent can tell apart. The channel is moved to a high descriptor
closed on exec, out of the way of a plugin that writes to low ones. None of
this stops a plugin that sets out to fool the validator: it runs in this
process and can do what this process can (docs/validate.md).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import sys
import threading
from typing import Any

from .runner import Options, Runner

_CHANNEL_FD = 200  # the lowest descriptor the channel may move to
_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Be the parent of every orphan the plugin leaves (a double fork
    included), so that lifecycle.processes finds them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: no library search
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def main() -> None:
    options = Options.from_json(json.loads(sys.argv[1]))
    given = int(sys.argv[2])
    fd = fcntl.fcntl(given, fcntl.F_DUPFD_CLOEXEC, _CHANNEL_FD)
    os.close(given)
    out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
    if options.memory_limit:  # a plugin that allocates without bound fails its check, not the machine
        limit = options.memory_limit << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    lock = threading.Lock()  # thread checks tick from several threads
    pid = os.getpid()

    def emit(event: dict[str, Any]) -> None:
        line = json.dumps({**event, "pid": os.getpid()}) + "\n"
        with lock:
            out.write(line)
            out.flush()

    reaper = _become_subreaper()
    runner = Runner(options, emit, own_process=reaper)  # kept: freeing it would shut the plugin down here
    runner.run()
    out.close()
    if "lifecycle.shutdown" in options.done or os.getpid() != pid:
        # The plugin's shutdown crashed or hung in an earlier child, and at
        # exit the interpreter would run it again: leave without it.
        os._exit(0)
