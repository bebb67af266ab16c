"""One plugin spec: descriptor validation makes it, and the in-process
plugin, the isolated child, the scan worker and cache, and ``inspect
--json`` all carry the same one. Its JSON form round-trips, and anything
else is refused with SpecError (a hostile isolated child may send anything)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrule
from ferrule._abi.descriptor import describe
from ferrule._abi.signature import parse_signature
from ferrule._abi.spec import FunctionSpec, OfferSpec, PluginSpec, SpecError
from ferrule._loader import Library
from ferrule._scan import cache

from .conftest import Built

PLUGINS = ["greeter", "kitchen", "calc", "ifaces_c", "parity"]


@pytest.mark.parametrize("name", PLUGINS)
def test_every_path_carries_the_same_spec(built: Built, name: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = getattr(built, name)
    spec = describe(Library(path)).spec
    assert spec.path == str(path) and spec.functions
    with ferrule.load(path, config="ok") as local:
        assert local._spec == spec
    with ferrule.load(path, isolated=True, config="ok") as iso:
        assert iso._spec == spec and iso.interfaces == spec.offers
    # The scan worker's, as the cache keeps it.
    monkeypatch.setenv("FERRULE_CACHE_DIR", str(tmp_path / "cache"))
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / path.name).symlink_to(path)
    result = ferrule.scan([plugins])
    entries, _ = cache.load_cache(cache.cache_file())
    scanned = entries[str(plugins / path.name)].result
    assert scanned == spec._replace(path=str(plugins / path.name))
    info = result.plugins[0]
    assert (info.id, info.functions) == (spec.id, tuple((f.name, str(f.signature)) for f in spec.functions))
    # The CLI's view.
    proc = subprocess.run([sys.executable, "-m", "ferrule", "inspect", "--json", "--in-process", "--config", "ok",
                           str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    worker = subprocess.run([sys.executable, "-m", "ferrule", "inspect", "--json", str(path)], capture_output=True,
                            text=True)
    assert worker.returncode == 0 and json.loads(worker.stdout) == shown, worker.stderr
    assert (shown["id"], shown["version"], shown["abi"]) == (spec.id, spec.version, {"major": spec.abi_version[0],
                                                                                      "minor": spec.abi_version[1]})
    assert [(f["name"], f["signature"], f["doc"], f["thread_safe"]) for f in shown["functions"]] == [
        (f.name, str(f.signature), f.doc, f.thread_safe) for f in spec.functions]
    assert [(o["id"], o["revision"], o["name"], int(o["fingerprint"], 16)) for o in shown["interfaces"]] == [
        (o.id, o.revision, o.name, o.fingerprint) for o in spec.offers]


texts = st.text(max_size=20)
ids = st.from_regex(r"[a-z0-9_-]{1,8}(\.[a-z0-9_-]{1,8}){1,3}", fullmatch=True)
signatures = st.sampled_from(["()", "(a: i64, b: i64) -> i64", "(s: str) -> bytes", "(d: mutbuf[u8], f: fn(f64) -> bool)"])
functions = st.lists(st.tuples(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), signatures, texts,
                               st.integers(0, 2**32 - 1)), max_size=4, unique_by=lambda f: f[0]).map(
    lambda fs: tuple(FunctionSpec(n, parse_signature(s).text, d, f) for n, s, d, f in fs))
offers = st.lists(st.builds(OfferSpec, id=ids, revision=st.integers(0, 2**32 - 1), name=texts, doc=texts,
                            flags=st.integers(0, 2**32 - 1), fingerprint=st.integers(0, 2**64 - 1), layout=texts,
                            method_count=st.integers(0, 256)), max_size=3).map(tuple)
specs = st.builds(PluginSpec, path=texts, id=ids, name=texts, version=texts, description=texts, license=texts,
                  abi_version=st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1)), functions=functions,
                  offers=offers)


@pytest.mark.fuzz
@given(specs)
def test_the_json_form_round_trips(spec: PluginSpec) -> None:
    assert PluginSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=3), max_leaves=10)


def damaged(data: dict[str, Any], where: list[Any], value: Any) -> Any:
    """data with the item at the path ``where`` (keys and indexes) replaced."""
    out = json.loads(json.dumps(data))
    node = out
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return out


@pytest.mark.fuzz
@given(specs, st.data(), json_values)
def test_anything_else_is_refused_with_spec_error(spec: PluginSpec, data: st.DataObject, value: Any) -> None:
    good = spec.to_json()
    places: list[list[Any]] = [[k] for k in good]
    places += [["functions", i, j] for i, row in enumerate(good["functions"]) for j in range(4)]
    places += [["offers", i, j] for i, row in enumerate(good["offers"]) for j in range(8)]
    where = data.draw(st.sampled_from(places))
    bad = damaged(good, where, value)
    try:
        back = PluginSpec.from_json(bad)
    except SpecError:
        return
    # Accepted: then it is a spec whose JSON form is what was given.
    assert back.to_json() == bad


@pytest.mark.parametrize("bad", [
    None, [], {}, {"id": "a.b"},
    {**PluginSpec("p", "a.b", "n", "1", "", "", (1, 2), (), ()).to_json(), "id": "no-dots"},
    {**PluginSpec("p", "a.b", "n", "1", "", "", (1, 2), (), ()).to_json(), "functions": [["f", "(x)", "", 0]]},
    {**PluginSpec("p", "a.b", "n", "1", "", "", (1, 2), (), ()).to_json(),
     "functions": [["f", "()", "", 0], ["f", "()", "", 0]]},
    {**PluginSpec("p", "a.b", "n", "1", "", "", (1, 2), (), ()).to_json(), "functions": [["not a name", "()", "", 0]]},
    {**PluginSpec("p", "a.b", "n", "1", "", "", (1, 2), (), ()).to_json(), "abi_version": [1, True]},
    {**PluginSpec("p", "a.b", "n\ud800", "1", "", "", (1, 2), (), ()).to_json()},
])
def test_known_bad_descriptions_are_refused(bad: Any) -> None:
    with pytest.raises(SpecError):
        PluginSpec.from_json(bad)
