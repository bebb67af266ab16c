"""The example host script runs against the example plugins, as the demo does."""

from __future__ import annotations

import re
import subprocess
import sys

from .conftest import ROOT, Built, run


def test_example_host_script(built: Built) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "host.py"), str(built.greeter), str(built.calc)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    pids = re.search(r"isolated calc.mul\(6, 7\)   = 42 \(host pid (\d+), plugin pid (\d+)\)", out)
    assert pids is not None and pids.group(1) != pids.group(2), out
    for line in [
        "greeter.greet('Ada')      = Hello, Ada!",
        "greeter.add(2, 3)         = 5",
        "greeter.divide(1.0, 0.0)  raised PluginCallError: division by zero: b must not be 0",
        "greeter.mean(values)      = 3.0",
        "after greeter.scale(values, 10.0): [10.0, 20.0, 60.0]",
        "greeter.count_if(odd, 10) = 5",
        "[log ferrule.plugin.org.ferrule.examples.greeter] greeting Ada",
        "calc.reverse('stressed')  = desserts",
        "calc.checked_div(1, 0)    raised PluginCallError: checked_div: division by zero",
        "calc.calls()              = 5",
        "[log ferrule.plugin.org.ferrule.examples.calc] calc shutting down",
        "isolated calc.reverse('stressed') = desserts",
        "ferrule.scan found: org.ferrule.examples.calc 0.1.0",
    ]:
        assert line in out, out


def test_rust_example_host(built: Built) -> None:
    """examples/rust_host: a Rust program loads the greeter, calculator and pipeline plugin the Python demo
    loads, and provides the pipeline's Dictionary service."""
    run(["cargo", "build", "--release", "--quiet", "-p", "rust-host", "-p", "textkit"], cwd=ROOT)
    proc = subprocess.run([str(built.rust / "rust-host"), str(built.greeter), str(built.calc),
                           str(built.rust / "libtextkit.so")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for line in [
        "loaded Greeter 0.1.0 (org.ferrule.examples.greeter), ABI 1.2",
        "greeter add(2, 3)          = 5",
        "  [log ferrule.plugin.org.ferrule.examples.greeter] greeting Ada",
        'greeter greet("Ada")       = Hello, Ada!',
        "after greeter scale(.., 10): [10.0, 20.0, 60.0]",
        "greeter count_if(odd, 10)  = I64(5)",
        "greeter divide(1, 0)       failed (PluginCall): division by zero: b must not be 0",
        "greeter add(1, \"two\")      refused (Type): add() argument 'b' must be int (i64), got str",
        "calc mul(6, 7)             = 42",
        "  [log ferrule.plugin.org.ferrule.examples.calc] calc shutting down",
        # The plugin's Transform expands words through the Dictionary this host provides.
        "  [log ferrule.plugin.org.ferrule.example.textkit] expanded 2 words",
        'textkit expand.apply       = "THE APPLICATION BINARY INTERFACE, NOT THE FOREIGN FUNCTION INTERFACE"',
        "textkit expand.configure   failed (PluginCall): case must be keep or upper, got 'title'",
        "textkit words.stats        = 3 words, 2 lines, 13 chars",
    ]:
        assert line in proc.stdout, proc.stdout


def test_async_example_host(built: Built) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "async_host.py"), str(built.greeter), str(built.calc)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for line in [
        "greetings: ['Hello, Ada!', 'Hello, Grace!', 'Hello, Edsger!']",
        "squares:   [1, 4, 9, 16, 25]",
        "greeter.aio.count_if(odd, 10) = 5",
        "calc.aio.reverse('stressed') = desserts",
    ]:
        assert line in proc.stdout, proc.stdout


def test_readme_c_quickstart_builds_and_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ferrule

    from .conftest import compile_plugin

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quickstart for plugin authors: C"):]
    snippet = re.search(r"```c\n(.*?)```", section, re.S)
    assert snippet is not None
    source = tmp_path / "calc.c"
    source.write_text(snippet.group(1))
    with ferrule.load(compile_plugin(source, tmp_path / "libquick.so")) as plugin:
        assert plugin.id == "org.example.calc"
        assert plugin.mul(6, 7) == 42


def test_example_cpp_host_script(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from .conftest import INCLUDE, run

    library = tmp_path / "libwordstat.so"
    run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-fvisibility=hidden", "-O2",
         f"-I{INCLUDE}", f"-Wl,--version-script={INCLUDE / 'ferrule.map'}",
         str(ROOT / "examples" / "cpp_plugin" / "wordstat.cpp"), "-o", str(library)])
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "cpp_plugin" / "use.py"), str(library)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "stats.add(...)       = 5",
        "stats.count('cat')   = 2",
        "stats.top(2)         = 'cat 2\\nand 1\\n'",
        "stats.load(...)      raised PluginCallError: line 1 'dog three': expected 'word count', a word, a space "
        "and a decimal count",
    ]
