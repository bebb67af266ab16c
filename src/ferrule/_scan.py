"""Placeholder: replaced by the scanning work (issue 5)."""
from __future__ import annotations

from typing import Any

__all__ = ["PluginInfo", "ScanProblem", "ScanResult", "scan"]


class PluginInfo:
    pass


class ScanProblem:
    pass


class ScanResult:
    pass


def scan(*args: Any, **kwargs: Any) -> ScanResult:
    raise NotImplementedError
