"""The interfaces of the text pipeline example: what the host (app.py)
defines and plugins implement or use.

- Transform: one stage of the pipeline, rewrites text (not thread-safe: each
  instance keeps its options; the host serialises its calls).
- Analyzer: reports on a text (thread-safe, no state).
- Dictionary: a service the host implements in Python; plugins query it.

Everything else is generated from this file (run from examples/pipeline):

    ferrule generate pipeline_api --rust generated/pipeline_api.rs --rust-host generated/pipeline_host.rs \\
        --c generated/pipeline_api.h --c-prefix pipeline --python pipeline_proxies.py
"""

from __future__ import annotations

from typing import Protocol

from ferrule import idl


@idl.struct
class Stats:
    """Counts over a text."""

    words: idl.u32
    lines: idl.u32
    chars: idl.u32
    longest_word: idl.u32


@idl.interface("org.ferrule.example.pipeline.transform", revision=1)
class Transform(Protocol):
    """One stage of the pipeline: rewrites text."""

    def configure(self, option: str, value: str) -> None:
        """Set an option; fails for an option the stage does not know."""

    def apply(self, text: str) -> str:
        """The rewritten text."""


@idl.interface("org.ferrule.example.pipeline.analyzer", revision=1, thread_safe=True)
class Analyzer(Protocol):
    """Reports on a text without changing it."""

    def stats(self, text: str) -> Stats:
        """Word, line and character counts (characters are Unicode code points)."""

    def histogram(self, text: bytes, counts: idl.mutbuf[idl.u32]) -> None:
        """Add the number of times each byte value occurs in text to counts
        (256 elements)."""


@idl.interface("org.ferrule.example.pipeline.dictionary", revision=1, thread_safe=True)
class Dictionary(Protocol):
    """Word lists the host owns; plugins query it through the host."""

    def contains(self, word_list: str, word: str) -> bool:
        """Whether word (lowercase) is in the named list."""

    def expansion(self, word: str) -> str:
        """The long form of an abbreviation, or "" when there is none."""
