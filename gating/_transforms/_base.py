"""The transform base class and its validation helpers.

:class:`Transform` gives every concrete transform ``apply``/``inverse`` over any array shape,
the clamp bounds and the ``to_dict``/``from_dict`` round trip; the helpers check the
parameters of the frozen dataclasses. "The module docstring" in the docstrings below is that
of :mod:`gating._transforms` (the definitions and the raw-space caveat).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

__all__ = ["LN10", "MAX_DECADES", "FloatArray", "Transform", "clamp_to", "require_finite", "set_field"]

FloatArray = npt.NDArray[np.float64]

LN10 = math.log(10.0)
#: Most decades a log-like scale may span (M + A): 10**(M + A) and the scale of data values
#: far above T must stay inside float64; no instrument comes near this.
MAX_DECADES = 100.0


def _flat(x: npt.ArrayLike) -> tuple[FloatArray, tuple[int, ...]]:
    """``x`` as a contiguous 1-D ``float64`` array, and its original shape."""
    arr = np.asarray(x, dtype=np.float64)
    return np.ascontiguousarray(arr).reshape(-1), arr.shape


def require_finite(name: str, value: Any) -> float:
    """``value`` as a finite float (``TypeError`` if not a number, ``ValueError`` if not finite)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _bound(name: str, value: Any) -> float | None:
    """An optional clamp bound: ``None`` or a non-NaN float."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or None, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number or None, got {value!r}") from exc
    if math.isnan(out):
        raise ValueError(f"{name} must not be NaN")
    return out


def set_field(obj: object, name: str, value: Any) -> None:
    """Assign on a frozen dataclass during ``__post_init__``."""
    object.__setattr__(obj, name, value)


class Transform(abc.ABC):
    """A monotone scale transform (raw value -> scale value) with optional clamping.

    Concrete transforms are frozen, keyword-only dataclasses whose fields are their parameters
    plus ``bound_min``/``bound_max`` (``None`` for no clamp), which clamp the transformed
    value as in Gating-ML 2.0.
    """

    kind: ClassVar[str]
    bound_min: float | None
    bound_max: float | None

    # -- numerics supplied by each transform -------------------------------------------------
    @abc.abstractmethod
    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        """Transform a contiguous 1-D array and clamp to ``[lo, hi]``."""

    @abc.abstractmethod
    def _backward(self, y: FloatArray) -> FloatArray:
        """Inverse on a contiguous 1-D array (no clamping)."""

    # -- public API -------------------------------------------------------------------------
    def apply(self, x: npt.ArrayLike) -> FloatArray:
        """Raw values to scale values, clamped to ``[bound_min, bound_max]`` when set.

        Parameters
        ----------
        x
            Raw values, any shape; converted to ``float64``.

        Returns
        -------
        np.ndarray
            ``float64`` array of the same shape (NaN stays NaN).
        """
        flat, shape = _flat(x)
        lo = -np.inf if self.bound_min is None else self.bound_min
        hi = np.inf if self.bound_max is None else self.bound_max
        return self._forward(flat, lo, hi).reshape(shape)

    def inverse(self, y: npt.ArrayLike) -> FloatArray:
        """Scale values to raw values (the inverse of the unclamped transform).

        Maps a transformed-space gate bound to its raw-space threshold; see the module
        docstring for the few-ulps caveat the gating core handles.

        Parameters
        ----------
        y
            Scale values, any shape; converted to ``float64``.

        Returns
        -------
        np.ndarray
            ``float64`` array of the same shape.
        """
        flat, shape = _flat(y)
        return self._backward(flat).reshape(shape)

    @property
    def is_monotone(self) -> bool:
        """Always ``True``: every transform here is non-decreasing (increasing, unclamped)."""
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters, with the ``kind`` of the transform.

        Returns
        -------
        dict
            ``{"kind": ..., <field>: <value>, ...}``; :func:`transform_from_dict` inverts it.
        """
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.init:
                out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Transform:
        """Rebuild a transform of this class from :meth:`to_dict` output.

        Parameters
        ----------
        d
            The dictionary; its ``kind`` must be this class's.

        Returns
        -------
        Transform
            The transform.
        """
        kind = d.get("kind")
        if kind != cls.kind:
            raise ValueError(f"expected kind {cls.kind!r}, got {kind!r}")
        names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        extra = set(d) - names - {"kind"}
        if extra:
            raise ValueError(f"unknown field(s) for {cls.kind!r}: {sorted(extra)}")
        return cls(**{k: v for k, v in d.items() if k != "kind"})

    def _check_bounds(self) -> None:
        set_field(self, "bound_min", _bound("bound_min", self.bound_min))
        set_field(self, "bound_max", _bound("bound_max", self.bound_max))
        if (
            self.bound_min is not None
            and self.bound_max is not None
            and self.bound_min > self.bound_max
        ):
            raise ValueError(
                f"bound_min ({self.bound_min}) must not exceed bound_max ({self.bound_max})"
            )


def clamp_to(y: FloatArray, lo: float, hi: float) -> FloatArray:
    """Clamp in place (NaN preserved) and return ``y``."""
    if lo > -np.inf:
        np.maximum(y, lo, out=y)
    if hi < np.inf:
        np.minimum(y, hi, out=y)
    return y
