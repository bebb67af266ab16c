"""Placeholder: replaced by the isolation work (issue 5)."""
from __future__ import annotations

from typing import Any

__all__ = ["IsolatedFunction", "IsolatedPlugin"]


class IsolatedFunction:
    pass


class IsolatedPlugin:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError
