"""The process that reads plugin descriptors for ``ferrule.scan``.

Run by scan.py in a fresh interpreter: reads a JSON list of paths on
stdin and writes one JSON object a line on stdout, ``{"start": path}``
before each library and then ``{"plugin": <the plugin spec's JSON>}`` or
``{"rejected": {...}}`` (with ``depends``, the places searched, for a
missing dependency). Opening a library runs its static constructors and the entry
point; a crash or hang there takes down only this process, and the
``start`` line tells the scanning process which file was to blame.

The plugin's init never runs. The worker leaves with ``os._exit`` so that
no library's static destructors run either.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

from .._abi.descriptor import describe as read_descriptor
from .._errors import FerruleError, MissingDependencyError
from .._loader import Library
from .deps import watched


def describe(path: str) -> dict[str, Any]:
    """One library's plugin spec, as JSON."""
    return read_descriptor(Library(path)).spec.to_json()


def _send(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()  # the scanner must see "start" before a crash


def main() -> None:
    # Keep the protocol on a private copy of stdout; whatever the libraries
    # print to fd 1 goes to stderr instead of corrupting it.
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    paths = json.load(sys.stdin)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # a library reading stdin gets EOF
    for path in paths:
        _send(channel, {"start": path})
        tried = time.time_ns()
        try:
            info = describe(path)
        except MissingDependencyError as exc:  # remembered until one of the places searched changes
            _send(channel, {"rejected": {"error": type(exc).__name__, "message": str(exc), "cache": True,
                                         "depends": list(watched(path)), "since": tried}})
        except FerruleError as exc:
            _send(channel, {"rejected": {"error": type(exc).__name__, "message": str(exc), "cache": True}})
        except Exception as exc:  # a ferrule bug or a passing OS failure: report it, do not remember it
            _send(channel, {"rejected": {"error": type(exc).__name__, "message": f"{path}: {exc}", "cache": False}})
        else:
            _send(channel, {"plugin": info})
    channel.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
