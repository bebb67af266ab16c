"""Where cargo puts this workspace's build products: ``cargo metadata``
knows (CARGO_TARGET_DIR, a config file's build.target-dir), the benches
should not guess ``./target``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def release_dir(root: Path) -> Path:
    """The workspace's ``target/release``, wherever cargo keeps it."""
    try:
        out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
        return Path(json.loads(out)["target_directory"]) / "release"
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return root / "target" / "release"  # no cargo: the Rust rows are skipped anyway
