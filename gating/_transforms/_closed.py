"""Closed-form transforms: Gating-ML ``flin``, ``flog``, ``fasinh``; FlowJo linear and log.

Their definitions are in the docstring of :mod:`gating._transforms`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from engine.runtime import small_or_parallel
from gating._transforms import _kernels as _k
from gating._transforms._base import (
    LN10,
    MAX_DECADES,
    FloatArray,
    Transform,
    clamp_to,
    require_finite,
    set_field,
)

__all__ = ["Asinh", "FlowJoLinear", "FlowJoLog", "Linear", "Log"]


@dataclass(frozen=True, kw_only=True)
class Linear(Transform):
    """Gating-ML 2.0 ``flin``: ``(x + a) / (t + a)``.

    Parameters
    ----------
    t
        Top of scale ``T`` (> 0), mapped to 1.
    a
        Bottom offset ``A`` (``-t < a <= t``); ``-a`` maps to 0.
    bound_min, bound_max
        Optional clamp of the transformed value.
    """

    kind: ClassVar[str] = "linear"
    t: float
    a: float
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        set_field(self, "t", require_finite("t", self.t))
        set_field(self, "a", require_finite("a", self.a))
        if self.t <= 0:
            raise ValueError(f"flin: T must be > 0, got {self.t}")
        if not -self.t < self.a <= self.t:
            raise ValueError(f"flin: A must satisfy -T < A <= T, got A={self.a}, T={self.t}")
        if not math.isfinite(self.t + self.a):
            raise ValueError(f"flin: T + A overflows float64, got T={self.t}, A={self.a}")
        self._check_bounds()

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        y = x + self.a if self.a != 0.0 else x.copy()  # x + 0.0 only turns -0.0 into 0.0
        np.divide(y, self.t + self.a, out=y)
        return clamp_to(y, lo, hi)

    def _backward(self, y: FloatArray) -> FloatArray:
        return y * (self.t + self.a) - self.a


@dataclass(frozen=True, kw_only=True)
class Log(Transform):
    """Gating-ML 2.0 ``flog``: ``log10(x / t) / m + 1`` (``-inf`` at 0, NaN for ``x < 0``).

    ``-inf`` is clamped by ``bound_min`` like any value; NaN (negative input) stays NaN, so it
    compares false against every gate bound.

    Parameters
    ----------
    t
        Top of scale ``T`` (> 0), mapped to 1.
    m
        Decades ``M`` (> 0) mapped onto ``[0, 1]``.
    bound_min, bound_max
        Optional clamp of the transformed value.
    """

    kind: ClassVar[str] = "log"
    t: float
    m: float
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        set_field(self, "t", require_finite("t", self.t))
        set_field(self, "m", require_finite("m", self.m))
        if self.t <= 0 or self.m <= 0:
            raise ValueError(f"flog: T and M must be > 0, got T={self.t}, M={self.m}")
        self._check_bounds()

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log10(x / self.t) / self.m + 1.0
        return clamp_to(y, lo, hi)

    def _backward(self, y: FloatArray) -> FloatArray:
        with np.errstate(over="ignore"):
            return self.t * np.power(10.0, (y - 1.0) * self.m)


@dataclass(frozen=True, kw_only=True)
class Asinh(Transform):
    """Gating-ML 2.0 ``fasinh``: ``(asinh(x sinh(m ln10) / t) + a ln10) / ((m + a) ln10)``.

    Equal to ``Logicle(t, w=0, m, a)``. FlowJo's ``transforms:fasinh`` is this transform with
    the same ``T``, ``M``, ``A``.

    Parameters
    ----------
    t
        Top of scale ``T`` (> 0), mapped to 1.
    m
        Decades ``M`` (> 0).
    a
        Extra negative decades ``A`` (``0 <= a <= m``).
    bound_min, bound_max
        Optional clamp of the transformed value.
    """

    kind: ClassVar[str] = "asinh"
    t: float
    m: float
    a: float
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("t", "m", "a"):
            set_field(self, name, require_finite(name, getattr(self, name)))
        if self.t <= 0 or self.m <= 0:
            raise ValueError(f"fasinh: T and M must be > 0, got T={self.t}, M={self.m}")
        if not 0 <= self.a <= self.m:
            raise ValueError(f"fasinh: A must satisfy 0 <= A <= M, got A={self.a}, M={self.m}")
        if self.m > MAX_DECADES:
            raise ValueError(
                f"fasinh: M must be at most {MAX_DECADES:g} decades (the float64 range), got {self.m}"
            )
        self._check_bounds()

    @cached_property
    def _constants(self) -> tuple[float, float, float]:
        s = math.sinh(self.m * LN10) / self.t
        return s, self.a * LN10, (self.m + self.a) * LN10

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        out = np.empty_like(x)
        small_or_parallel(_k.asinh_forward, len(x))(x, out, *self._constants, lo, hi)
        return out

    def _backward(self, y: FloatArray) -> FloatArray:
        out = np.empty_like(y)
        small_or_parallel(_k.asinh_inverse, len(y))(y, out, *self._constants)
        return out


@dataclass(frozen=True, kw_only=True)
class FlowJoLinear(Transform):
    """FlowJo ``transforms:linear``: ``(x - min_range) / (max_range - min_range)``.

    Parameters
    ----------
    min_range, max_range
        The raw values shown at the bottom (0) and top (1) of the axis (``min < max``).
    gain
        FlowJo's ``gain`` attribute; only 1 (the only value seen in FlowJo 10 workspaces, and
        the one whose meaning is certain) is accepted.
    bound_min, bound_max
        Optional clamp of the transformed value.
    """

    kind: ClassVar[str] = "flowjo_linear"
    min_range: float
    max_range: float
    gain: float = 1.0
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_range", "max_range", "gain"):
            set_field(self, name, require_finite(name, getattr(self, name)))
        if not self.min_range < self.max_range:
            raise ValueError(
                f"FlowJo linear: minRange ({self.min_range}) must be < maxRange ({self.max_range})"
            )
        if self.gain != 1.0:
            raise ValueError(f"FlowJo linear: gain other than 1 is not supported, got {self.gain}")
        self._check_bounds()

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        return clamp_to((x - self.min_range) / (self.max_range - self.min_range), lo, hi)

    def _backward(self, y: FloatArray) -> FloatArray:
        return self.min_range + y * (self.max_range - self.min_range)


@dataclass(frozen=True, kw_only=True)
class FlowJoLog(Transform):
    """FlowJo ``transforms:log``: ``log10(max(x, offset) / offset) / decades``.

    0 at and below ``offset`` (FlowJo shows those events on the axis), 1 at
    ``offset * 10**decades``; this is the same 0..1 scale as FlowKit's ``WSPLogTransform``.
    The inverse ``offset * 10**(y * decades)`` is exact above ``offset``.

    Parameters
    ----------
    offset
        Smallest raw value on scale (> 0).
    decades
        Number of decades shown (> 0).
    bound_min, bound_max
        Optional clamp of the transformed value.
    """

    kind: ClassVar[str] = "flowjo_log"
    offset: float
    decades: float
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        set_field(self, "offset", require_finite("offset", self.offset))
        set_field(self, "decades", require_finite("decades", self.decades))
        if self.offset <= 0 or self.decades <= 0:
            raise ValueError(
                f"FlowJo log: offset and decades must be > 0, got {self.offset}, {self.decades}"
            )
        self._check_bounds()

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        y = np.log10(np.maximum(x, self.offset) / self.offset) / self.decades
        return clamp_to(y, lo, hi)

    def _backward(self, y: FloatArray) -> FloatArray:
        with np.errstate(over="ignore"):
            return self.offset * np.power(10.0, y * self.decades)
