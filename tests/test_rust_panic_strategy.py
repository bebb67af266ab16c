"""A Rust plugin built with panic = "abort" would kill the host on its first
panic, with no message: the SDK refuses to compile it and says why. Real
cargo builds of tests/plugins/rust/panic_abort, in a copy (cargo writes a
Cargo.lock beside the manifest)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import ferrule

from .conftest import ROOT

CRATE = ROOT / "tests" / "plugins" / "rust" / "panic_abort"
MESSAGE = (
    'ferrule-sdk: this plugin is built with panic = "abort" (a Cargo profile\'s `panic = "abort"`, or -C panic=abort '
    'in RUSTFLAGS or `cargo rustc`), expected panic = "unwind": with abort, a panic in the plugin kills the host '
    "process without a message. Remove the panic setting (unwind is the default) so that ferrule can turn a panic "
    "into PluginPanicError."
)


@pytest.fixture(scope="module")
def crate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cargo") is None:
        pytest.fail("cargo is required to build the Rust test plugins (see README)")
    copy = tmp_path_factory.mktemp("panic_abort") / "crate"
    shutil.copytree(CRATE, copy)
    manifest = copy / "Cargo.toml"
    relative = '"../../../../sdk/rust"'
    assert relative in manifest.read_text()
    manifest.write_text(manifest.read_text().replace(relative, f'"{ROOT / "sdk" / "rust"}"'))
    return copy


def cargo(crate: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS")}
    environ.update(CARGO_TARGET_DIR=str(crate.parent / "target"), **env)
    return subprocess.run(["cargo", *args], cwd=crate, capture_output=True, text=True, env=environ)


@pytest.mark.parametrize(("args", "env", "where"), [
    # A profile's panic applies to every crate of the build: the SDK's own check stops it.
    (["build", "--release", "--config", 'profile.release.panic="abort"'], {}, "sdk/rust/src/lib.rs"),
    (["build", "--release"], {"RUSTFLAGS": "-C panic=abort"}, "sdk/rust/src/lib.rs"),
    # Only the plugin's crate gets the flag, the SDK is built with unwind: plugin! stops it.
    (["rustc", "--release", "--", "-C", "panic=abort"], {}, "src/lib.rs:4:1"),
], ids=["profile", "rustflags", "cargo-rustc"])
def test_panic_abort_does_not_compile(crate: Path, args: list[str], env: dict[str, str], where: str) -> None:
    proc = cargo(crate, *args, **env)
    assert proc.returncode != 0, proc.stderr
    assert f"error: {MESSAGE}" in proc.stderr, proc.stderr
    assert where in proc.stderr, proc.stderr
    assert proc.stderr.count(MESSAGE) == 1, proc.stderr


def test_unwind_builds_and_panics_become_errors(crate: Path) -> None:
    proc = cargo(crate, "build", "--release")
    assert proc.returncode == 0, proc.stderr
    with ferrule.load(crate.parent / "target" / "release" / "libpanic_abort.so") as plugin:
        with pytest.raises(ferrule.PluginPanicError, match="function 'boom' panicked: panicked at .*: no abort"):
            plugin.boom("no abort")
