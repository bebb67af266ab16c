"""The text pipeline example (examples/pipeline): the host app runs the Rust
and the C plugin, both built only from generated code, as the demo does."""

from __future__ import annotations

import array
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import ferrule

from .conftest import ROOT, Built, compile_plugin

PIPELINE = ROOT / "examples" / "pipeline"
MISSING = "the host provides no org.ferrule.example.pipeline.dictionary/1"


@pytest.fixture(scope="module")
def textkit_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "libtextkit_c.so"
    return compile_plugin(PIPELINE / "c_plugin" / "textkit.c", out, f"-I{PIPELINE / 'generated'}")


@pytest.fixture(scope="module")
def textkit_rust(built: Built) -> Path:
    return built.rust / "libtextkit.so"


@pytest.fixture(scope="module")
def app() -> Iterator[ModuleType]:
    """examples/pipeline/app.py as a module (it puts its directory on sys.path
    for pipeline_api and pipeline_proxies)."""
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location("pipeline_app", PIPELINE / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path[:] = saved


@pytest.mark.parametrize("mode", ["in-process", "--isolated", "--sandbox"])
def test_pipeline_app(textkit_rust: Path, textkit_c: Path, mode: str) -> None:
    """The same output whether the plugins run in process, each in a child
    (instances there, the Dictionary service through the channel), or sandboxed."""
    if mode == "--sandbox":
        from ferrule._sandbox import launch

        if launch.bwrap()[0] is None:
            pytest.skip(f"no sandbox here: {launch.bwrap()[1]}")
    proc = subprocess.run(
        [sys.executable, str(PIPELINE / "app.py"), str(textkit_rust), str(textkit_c),
         *([] if mode == "in-process" else [mode])],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for line in [
        "loaded org.ferrule.example.textkit 0.1.0 from ",
        ": transform 'expand', analyzer 'words'\n",
        "loaded org.ferrule.example.textkit_c 0.1.0 from ",
        ": transform 'censor', analyzer 'bytes'\n",
        "input:\n  fyi the darn build is green\n  btw ship it asap\n",
        "after expand (org.ferrule.example.textkit):\n"
        "  for your information the darn build is green\n"
        "  by the way ship it as soon as possible\n",
        "after censor (org.ferrule.example.textkit_c):\n"
        "  for your information the #### build is green\n"
        "  by the way ship it as soon as possible\n",
        "words (org.ferrule.example.textkit): 17 words, 2 lines, 83 chars, longest word 11; "
        "most common letters 's' x7, 'o' x7, 'i' x7\n",
        "bytes (org.ferrule.example.textkit_c): 17 words, 2 lines, 83 chars, longest word 11; "
        "most common letters 's' x7, 'o' x7, 'i' x7\n",
    ]:
        assert line in out, out
    assert out.index("after expand") < out.index("after censor") < out.index("words (")


@pytest.mark.parametrize(("lang", "name"), [("c", "censor"), ("rust", "expand")])
def test_transform_without_dictionary(
    app: ModuleType, textkit_rust: Path, textkit_c: Path, lang: str, name: str
) -> None:
    plugin = ferrule.PluginHost().load(textkit_rust if lang == "rust" else textkit_c)  # no Dictionary
    with plugin.create(app.proxies.Transform, name) as stage, pytest.raises(ferrule.PluginCallError, match=MISSING):
        stage.apply("fyi the darn build")


def test_expand_options(app: ModuleType, textkit_rust: Path) -> None:
    host = ferrule.PluginHost()
    host.provide(app.api.Dictionary, app.Dictionary())
    plugin = host.load(textkit_rust)
    with plugin.create(app.proxies.Transform, "expand") as stage:
        expanded = stage.apply("FYI: ship it ASAP!\tbtw2 é")
        assert expanded == "for your information: ship it as soon as possible!\tbtw2 é"
        stage.configure("case", "upper")
        assert stage.apply("btw, ok") == "BY THE WAY, OK"
        stage.configure("case", "keep")
        assert stage.apply("btw") == "by the way"
        with pytest.raises(ferrule.PluginCallError, match="case must be keep or upper, got 'lower'"):
            stage.configure("case", "lower")
        with pytest.raises(ferrule.PluginCallError, match="unknown option 'mask'"):
            stage.configure("mask", "#")


def test_words_analyzer(app: ModuleType, textkit_rust: Path) -> None:
    plugin = ferrule.PluginHost().load(textkit_rust)
    with plugin.create(app.proxies.Analyzer, "words") as words:
        stats = words.stats("héllo  wörld\n\nbye")
        assert (stats.words, stats.lines, stats.chars, stats.longest_word) == (3, 3, 17, 5)
        empty = words.stats("")
        assert (empty.words, empty.lines, empty.chars, empty.longest_word) == (0, 0, 0, 0)
        counts = array.array("I", bytes(4 * 256))
        words.histogram(b"abca", counts)
        words.histogram(b"a", counts)
        assert (counts[ord("a")], counts[ord("b")], counts[ord("c")], sum(counts)) == (3, 1, 1, 5)
        with pytest.raises(ferrule.PluginCallError, match="counts must have 256 elements, got 3"):
            words.histogram(b"x", array.array("I", [0, 0, 0]))
