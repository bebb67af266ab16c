"""numpy's twins of the kernels plugin's functions, for bench/dask_bench.py.

In a module of their own, so that Dask workers import them by name, as they
import ferrule.dask's own task function: a function of the script itself
(__main__) would be pickled by value into every task, and the per-task
figures would compare that instead."""

from __future__ import annotations

from typing import Any

import numpy as np


def scale_add(block: Any, k: float, c: float) -> Any:
    """What the plugin's scale_add does: one allocation, then two passes."""
    out = np.multiply(block, k)
    out += c
    return out


def block_sum(block: Any) -> Any:
    return np.array([block.sum()])
