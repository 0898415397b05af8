"""The base of every configuration model, and how a validation error names its key.

May import nothing from Warden but :mod:`warden.errors`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Strict", "loc"]


class Strict(BaseModel):
    """Unknown keys are errors (a typo is never silently ignored); parsed config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def loc(path: tuple[Any, ...]) -> str:
    """``("models", "x", "steps", 0)`` → ``models.x.steps[0]``: the key a reader looks for."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
