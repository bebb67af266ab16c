"""The loader: a safe ``Library`` (library.py) over a raw per-OS layer
(posix.py; a Windows one would go beside it), and the file checks that
explain a refused file (elf.py). Knows nothing of the ferrule ABI."""

from .library import LIBRARY_SUFFIX, Library, library_file_name

__all__ = ["LIBRARY_SUFFIX", "Library", "library_file_name"]
