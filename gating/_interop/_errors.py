"""The interop layer's error (its own module: loading a strategy does not import pandas)."""

from __future__ import annotations

__all__ = ["ConversionError"]


class ConversionError(ValueError):
    """An object cannot be converted to a sample or a strategy without guessing.

    The message names what is ambiguous or missing and how to say it explicitly.
    """
