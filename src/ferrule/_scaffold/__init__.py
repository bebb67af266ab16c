"""``ferrule new``: write a plugin project (Rust, C or C++) that builds, tests
and packages as it is. ``project`` holds the templates and the command,
``interfaces`` what ``--interface`` adds: host-defined interfaces, implemented
with stubs."""

from .interfaces import Bindings, resolve
from .project import LANGUAGES, Names, ScaffoldError, add_parser, find_sdk, names, scaffold

__all__ = ["LANGUAGES", "Bindings", "Names", "ScaffoldError", "add_parser", "find_sdk", "names", "resolve", "scaffold"]
