"""``ferrule new``: write a plugin project (Rust, C or C++) that builds, tests
and packages as it is. ``project`` holds the templates and the command."""

from .project import LANGUAGES, Names, ScaffoldError, add_parser, find_sdk, names, scaffold

__all__ = ["LANGUAGES", "Names", "ScaffoldError", "add_parser", "find_sdk", "names", "scaffold"]
