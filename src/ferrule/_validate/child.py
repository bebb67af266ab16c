"""The validator's child process: runs the checks that run plugin code and
writes one JSON line per event to the file descriptor it is given, so that
the plugin's own output on stdout and stderr cannot garble them."""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

from .runner import Options, Runner


def main() -> None:
    options = Options.from_json(json.loads(sys.argv[1]))
    if options.memory_limit:  # a plugin that allocates without bound fails its check, not the machine
        limit = options.memory_limit << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = os.fdopen(int(sys.argv[2]), "w", buffering=1, encoding="utf-8")

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    Runner(options, emit).run()
    out.close()
