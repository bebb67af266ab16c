"""A text pipeline whose stages are plugins.

The host (this file) declares the interfaces in pipeline_api.py, provides the
Dictionary service, loads a Rust and a C plugin built only from the generated
code, runs every Transform they offer in turn, then every Analyzer.

    python3 examples/pipeline/app.py [PLUGIN.so ...] [--text TEXT]

Without plugin paths it loads the two built by scripts/demo.sh.
"""

from __future__ import annotations

import argparse
import array
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ferrule  # noqa: E402
import pipeline_api as api  # noqa: E402
import pipeline_proxies as proxies  # noqa: E402

ROOT = HERE.parent.parent
DEFAULT_PLUGINS = [ROOT / "target" / "release" / "libtextkit.so", ROOT / "build" / "libtextkit_c.so"]
DEFAULT_TEXT = "fyi the darn build is green\nbtw ship it asap"


class Dictionary:
    """The host's word lists, offered to plugins as a service."""

    LISTS = {"banned": {"darn", "heck", "drat"}}
    EXPANSIONS = {"asap": "as soon as possible", "btw": "by the way", "fyi": "for your information"}

    def contains(self, word_list: str, word: str) -> bool:
        if word_list not in self.LISTS:
            raise KeyError(f"no word list {word_list!r}")
        return word in self.LISTS[word_list]

    def expansion(self, word: str) -> str:
        return self.EXPANSIONS.get(word, "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("plugins", nargs="*", type=Path, help="plugin libraries (default: the demo's two)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the text to process")
    parser.add_argument("--isolated", action="store_true", help="run each plugin in a child process of its own")
    parser.add_argument("--sandbox", action="store_true", help="... and in ferrule.Sandbox()'s defaults")
    args = parser.parse_args(argv)

    host = ferrule.PluginHost()
    host.provide(api.Dictionary, Dictionary())
    for path in args.plugins or DEFAULT_PLUGINS:
        if args.isolated or args.sandbox:  # the same API; the Dictionary is reached through the channel
            plugin = host.load(path, isolated=True, sandbox=args.sandbox or None)
        else:
            plugin = host.load(path)
        offers = ", ".join(f"{o.id.rsplit('.', 1)[1]} {o.name!r}" for o in plugin.interfaces)
        print(f"loaded {plugin.id} {plugin.version} from {os.path.relpath(path)}: {offers}")

    text = args.text
    print(f"\ninput:\n  {text.replace(chr(10), chr(10) + '  ')}")
    for impl in host.implementations(proxies.Transform):
        with impl.create() as stage:
            if impl.name == "censor":
                stage.configure("mask", "#")
            text = stage.apply(text)
        print(f"after {impl.name} ({impl.plugin.id}):\n  {text.replace(chr(10), chr(10) + '  ')}")

    print()
    for analyzer_impl in host.implementations(proxies.Analyzer):
        with analyzer_impl.create() as analyzer:
            stats = analyzer.stats(text)
            counts = array.array("I", bytes(4 * 256))
            analyzer.histogram(text.encode(), counts)
        common = sorted(((n, chr(b)) for b, n in enumerate(counts) if n and chr(b).isalpha()), reverse=True)[:3]
        print(f"{analyzer_impl.name} ({analyzer_impl.plugin.id}): {stats.words} words, {stats.lines} lines, "
              f"{stats.chars} chars, longest word {stats.longest_word}; most common letters "
              + ", ".join(f"{c!r} x{n}" for n, c in common))
    return 0


if __name__ == "__main__":
    sys.exit(main())
