"""Load the C++ wordstat plugin and call it; its exceptions arrive as Python errors.

    python examples/cpp_plugin/use.py build/libwordstat.so
"""

from __future__ import annotations

import sys

import ferrule


def main(path: str) -> None:
    with ferrule.load(path, config="the a of") as stats:  # the config is the stopwords
        print(f"loaded {stats.name} {stats.version} ({stats.id}), a C++ plugin")
        print("stats.add(...)       =", stats.add("The cat and the hat; a Cat, of course."))
        print("stats.count('cat')   =", stats.count("cat"))
        print("stats.top(2)         =", repr(stats.top(2)))
        try:
            stats.load("dog three\n")
        except ferrule.PluginCallError as exc:  # a std::invalid_argument, caught by ferrule::guard
            print("stats.load(...)      raised PluginCallError:", exc.plugin_message)


if __name__ == "__main__":
    main(*sys.argv[1:])
