"""Cytometry scale transforms: Gating-ML 2.0 and FlowJo 10, as small frozen dataclasses.

Every transform maps raw values to scale values with :meth:`Transform.apply` and back with
:meth:`Transform.inverse` (``float64`` in, ``float64`` out, any shape, NaN propagates). All are
monotone: strictly increasing on their domain, except where a ``bound_min``/``bound_max``
clamp (or FlowJo's log floor at ``offset``) makes them flat, so they are non-decreasing
everywhere. Each is JSON-serialisable through :meth:`Transform.to_dict` (with a ``kind``) and
:func:`transform_from_dict`; :func:`transform_from_gatingml` and :func:`transform_from_flowjo`
build them from the XML attributes of a Gating-ML 2.0 document or a FlowJo 10 workspace.

Definitions
-----------
Gating-ML 2.0 (Spidlen et al., ISAC 2013), with ``bound(f) = max(min(f, boundMax), boundMin)``
applied to the *transformed* value when bounds are given:

* :class:`Linear` (``flin``): ``(x + A) / (T + A)``.
* :class:`Log` (``flog``): ``log10(x / T) / M + 1`` (``-inf`` at 0, NaN below 0).
* :class:`Asinh` (``fasinh``): ``(asinh(x sinh(M ln10) / T) + A ln10) / ((M + A) ln10)``.
* :class:`Logicle` (Parks, Roederer & Moore 2006; Moore & Parks 2012): ``y`` solves
  ``B(y) = x`` with ``B(y) = a e^{by} - c e^{-dy} + f`` for ``y >= x1`` and
  ``B(y) = -B(2 x1 - y)`` below, where ``w = W/(M+A)``, ``x2 = A/(M+A)``, ``x1 = x2 + w``,
  ``x0 = x2 + 2w``, ``b = (M+A) ln10``, ``d`` solves ``2 (ln d - ln b) + w (b + d) = 0``,
  ``c/a = e^{x0 (b+d)}``, ``B(x1) = 0`` and ``B(1) = T``.
* :class:`Hyperlog` (Bagwell 2005, Gating-ML 2.0 parameterisation): ``y`` solves
  ``EH(y) = x`` with ``EH(y) = a e^{by} + c y - f`` for ``y >= x1`` and ``EH(y) = -EH(2 x1 - y)``
  below, ``c/a = e^{b x0} / w``, ``EH(x1) = 0``, ``EH(1) = T``.

The reflection about ``x1`` for negative data is part of the published logicle and hyperlog
definitions (the Gating-ML text leaves it implicit); the reference values require it.

FlowJo 10:

* :class:`FlowJoLinear` (``transforms:linear``): ``(x - minRange) / (maxRange - minRange)``.
* :class:`FlowJoLog` (``transforms:log``): ``log10(max(x, offset) / offset) / decades``: 0 at
  and below ``offset`` (FlowJo piles those events on the axis), 1 at ``offset * 10**decades``.
* :class:`FlowJoBiex` (``transforms:biex``): FlowJo's biexponential, see its docstring; it is a
  logicle-shaped function sampled by FlowJo on a 4096-channel lookup table.
* ``transforms:fasinh`` and ``transforms:logicle`` / ``transforms:hyperlog`` in a workspace are
  the Gating-ML :class:`Asinh` / :class:`Logicle` / :class:`Hyperlog` with the same ``T``, ``M``,
  ``A`` (``W``); the extra ``length`` / ``maxRange`` display attributes do not change the map.

Numerics
--------
Logicle, hyperlog and FlowJo biex run in the Numba kernels of
:mod:`gating._transform_kernels`: the inverse is the closed form written with ``expm1`` (no
cancellation near zero), the forward transform a safeguarded Halley iteration from a tabulated
starting point, accurate to a few ulps (far inside the 1e-12 relative target).

Raw-space bounds for the gating core
------------------------------------
Because every transform is monotone, a threshold ``y0`` in transformed space corresponds to the
raw threshold ``inverse(y0)``: ``apply(x) < y0`` iff ``x < inverse(y0)``, up to rounding. Both
directions are accurate to a few ulps, not correctly rounded, so raw values within a few ulps
of ``inverse(y0)`` may fall on either side: the gating core compares in raw space and re-checks
those few values by ``apply`` in transformed space. ``inverse`` ignores the clamp bounds (it is
the inverse of the unclamped map); it maps ``bound_min``/``bound_max`` themselves to the raw
values where the clamp starts.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq

from engine._numba import small_or_parallel
from gating import _transform_kernels as _k

__all__ = [
    "Asinh",
    "FlowJoBiex",
    "FlowJoLinear",
    "FlowJoLog",
    "Hyperlog",
    "Linear",
    "Log",
    "Logicle",
    "Transform",
    "transform_from_dict",
    "transform_from_flowjo",
    "transform_from_gatingml",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

_LN10 = math.log(10.0)
#: Start table of the root finder: knots over ``t`` in ``[0, _TABLE_T_MAX]`` (internal units,
#: covering every scale value up to ~1.5), 8 KiB per parameter set.
_TABLE_INTERVALS = 512
_TABLE_T_MAX = 1.5


def _flat(x: npt.ArrayLike) -> tuple[FloatArray, tuple[int, ...]]:
    """``x`` as a contiguous 1-D ``float64`` array, and its original shape."""
    arr = np.asarray(x, dtype=np.float64)
    return np.ascontiguousarray(arr).reshape(-1), arr.shape


def _finite(name: str, value: Any) -> float:
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


def _set(obj: object, name: str, value: Any) -> None:
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
        _set(self, "bound_min", _bound("bound_min", self.bound_min))
        _set(self, "bound_max", _bound("bound_max", self.bound_max))
        if (
            self.bound_min is not None
            and self.bound_max is not None
            and self.bound_min > self.bound_max
        ):
            raise ValueError(
                f"bound_min ({self.bound_min}) must not exceed bound_max ({self.bound_max})"
            )


def _clamp(y: FloatArray, lo: float, hi: float) -> FloatArray:
    """Clamp in place (NaN preserved) and return ``y``."""
    if lo > -np.inf:
        np.maximum(y, lo, out=y)
    if hi < np.inf:
        np.minimum(y, hi, out=y)
    return y


# ---------------------------------------------------------------------------------------------
# Closed-form transforms
# ---------------------------------------------------------------------------------------------


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
        _set(self, "t", _finite("t", self.t))
        _set(self, "a", _finite("a", self.a))
        if self.t <= 0:
            raise ValueError(f"flin: T must be > 0, got {self.t}")
        if not -self.t < self.a <= self.t:
            raise ValueError(f"flin: A must satisfy -T < A <= T, got A={self.a}, T={self.t}")
        self._check_bounds()

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        return _clamp((x + self.a) / (self.t + self.a), lo, hi)

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
        _set(self, "t", _finite("t", self.t))
        _set(self, "m", _finite("m", self.m))
        if self.t <= 0 or self.m <= 0:
            raise ValueError(f"flog: T and M must be > 0, got T={self.t}, M={self.m}")
        self._check_bounds()

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log10(x / self.t) / self.m + 1.0
        return _clamp(y, lo, hi)

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
            _set(self, name, _finite(name, getattr(self, name)))
        if self.t <= 0 or self.m <= 0:
            raise ValueError(f"fasinh: T and M must be > 0, got T={self.t}, M={self.m}")
        if not 0 <= self.a <= self.m:
            raise ValueError(f"fasinh: A must satisfy 0 <= A <= M, got A={self.a}, M={self.m}")
        self._check_bounds()

    @cached_property
    def _constants(self) -> tuple[float, float, float]:
        s = math.sinh(self.m * _LN10) / self.t
        return s, self.a * _LN10, (self.m + self.a) * _LN10

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
            _set(self, name, _finite(name, getattr(self, name)))
        if not self.min_range < self.max_range:
            raise ValueError(
                f"FlowJo linear: minRange ({self.min_range}) must be < maxRange ({self.max_range})"
            )
        if self.gain != 1.0:
            raise ValueError(f"FlowJo linear: gain other than 1 is not supported, got {self.gain}")
        self._check_bounds()

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        return _clamp((x - self.min_range) / (self.max_range - self.min_range), lo, hi)

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
        _set(self, "offset", _finite("offset", self.offset))
        _set(self, "decades", _finite("decades", self.decades))
        if self.offset <= 0 or self.decades <= 0:
            raise ValueError(
                f"FlowJo log: offset and decades must be > 0, got {self.offset}, {self.decades}"
            )
        self._check_bounds()

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        y = np.log10(np.maximum(x, self.offset) / self.offset) / self.decades
        return _clamp(y, lo, hi)

    def _backward(self, y: FloatArray) -> FloatArray:
        with np.errstate(over="ignore"):
            return self.offset * np.power(10.0, y * self.decades)


# ---------------------------------------------------------------------------------------------
# Biexponential family (Numba kernels)
# ---------------------------------------------------------------------------------------------


def _logicle_d(w: float, b: float) -> float:
    """The logicle ``d``: root of ``2 (ln d - ln b) + w (b + d) = 0`` in ``(0, b]``."""
    if w == 0.0:
        return b

    def g(d: float) -> float:
        return 2.0 * (math.log(d) - math.log(b)) + w * (b + d)

    lo = b * math.exp(-w * b - 1.0)  # g(lo) <= -2 + ... < 0
    d = float(brentq(g, lo, b, xtol=1e-300, rtol=8.9e-16, maxiter=500))
    # one Newton polish step (g is smooth and increasing; brentq already at ~ulp)
    d -= g(d) / (2.0 / d + w)
    return d


class _BiexFamily(Transform):
    """Shared machinery of the kernel-backed transforms (logicle, hyperlog, FlowJo biex)."""

    @abc.abstractmethod
    def _raw_params(self) -> tuple[float, float, float, float, float, float, float]:
        """``(x1, A1, b, C1, d, L, scale)`` of the kernel parameterisation."""

    @cached_property
    def _kernel(self) -> tuple[FloatArray, FloatArray]:
        x1, a1, b, c1, d, lin, scale = self._raw_params()
        p = np.zeros(_k.N_PARAMS)
        p[_k.P_X1] = x1
        p[_k.P_A1] = a1
        p[_k.P_B] = b
        p[_k.P_C1] = c1
        p[_k.P_D] = d
        p[_k.P_LIN] = lin
        p[_k.P_SCALE] = scale
        p[_k.P_SLOPE0] = a1 * b + c1 * d + lin
        dt = _TABLE_T_MAX / _TABLE_INTERVALS
        knots = _k.biex_start_table(p, _TABLE_INTERVALS, dt)
        p[_k.P_INV_DT] = 1.0 / dt
        return p, knots

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        p, knots = self._kernel
        out = np.empty_like(x)
        small_or_parallel(_k.biex_forward, len(x))(x, out, p, knots, lo, hi)
        return out

    def _backward(self, y: FloatArray) -> FloatArray:
        p, _ = self._kernel
        out = np.empty_like(y)
        small_or_parallel(_k.biex_inverse, len(y))(y, out, p)
        return out


def _check_logicle_like(name: str, t: float, w: float, m: float, a: float, *, w_pos: bool) -> None:
    if t <= 0 or m <= 0:
        raise ValueError(f"{name}: T and M must be > 0, got T={t}, M={m}")
    if (w <= 0 if w_pos else w < 0) or w > m / 2:
        rel = "0 <" if w_pos else "0 <="
        raise ValueError(f"{name}: W must satisfy {rel} W <= M/2, got W={w}, M={m}")
    if not -w <= a <= m - 2 * w:
        raise ValueError(f"{name}: A must satisfy -W <= A <= M - 2W, got A={a}, W={w}, M={m}")


@dataclass(frozen=True, kw_only=True)
class Logicle(_BiexFamily):
    """Gating-ML 2.0 ``logicle`` (Parks, Roederer & Moore 2006; Moore & Parks 2012).

    ``apply`` solves ``B(y) = x`` (see the module docstring); ``inverse`` is ``B`` itself.

    Parameters
    ----------
    t
        Top of scale ``T`` (> 0), mapped to 1.
    w
        Linearisation width ``W`` in decades (``0 <= w <= m/2``).
    m
        Decades ``M`` (> 0) of the asymptotic log scale.
    a
        Extra negative decades ``A`` (``-w <= a <= m - 2w``).
    bound_min, bound_max
        Optional clamp of the transformed value.
    """

    kind: ClassVar[str] = "logicle"
    t: float
    w: float
    m: float
    a: float
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("t", "w", "m", "a"):
            _set(self, name, _finite(name, getattr(self, name)))
        _check_logicle_like("logicle", self.t, self.w, self.m, self.a, w_pos=False)
        self._check_bounds()

    def _raw_params(self) -> tuple[float, float, float, float, float, float, float]:
        t, m, a = self.t, self.m, self.a
        w = self.w / (m + a)
        x2 = a / (m + a)
        x1 = x2 + w
        x0 = x2 + 2.0 * w
        b = (m + a) * _LN10
        d = _logicle_d(w, b)
        # B(x1 + δ) = a e^{b x1} expm1(bδ) - c e^{-d x1} expm1(-dδ), c/a = e^{x0 (b + d)};
        # a fixed by B(1) = T.
        e_a = math.exp(b * x1)
        e_c = math.exp(x0 * (b + d) - d * x1)
        top = 1.0 - x1
        scale_a = t / (e_a * math.expm1(b * top) - e_c * math.expm1(-d * top))
        return x1, scale_a * e_a, b, scale_a * e_c, d, 0.0, 1.0


@dataclass(frozen=True, kw_only=True)
class Hyperlog(_BiexFamily):
    """Gating-ML 2.0 ``hyperlog`` (Bagwell 2005).

    ``apply`` solves ``EH(y) = x`` (see the module docstring); ``inverse`` is ``EH`` itself.

    Parameters
    ----------
    t
        Top of scale ``T`` (> 0), mapped to 1.
    w
        Linear-region width ``W`` in decades (``0 < w <= m/2``).
    m
        Decades ``M`` (> 0).
    a
        Extra negative decades ``A`` (``-w <= a <= m - 2w``).
    bound_min, bound_max
        Optional clamp of the transformed value.
    """

    kind: ClassVar[str] = "hyperlog"
    t: float
    w: float
    m: float
    a: float
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("t", "w", "m", "a"):
            _set(self, name, _finite(name, getattr(self, name)))
        _check_logicle_like("hyperlog", self.t, self.w, self.m, self.a, w_pos=True)
        self._check_bounds()

    def _raw_params(self) -> tuple[float, float, float, float, float, float, float]:
        t, m, a = self.t, self.m, self.a
        w = self.w / (m + a)
        x2 = a / (m + a)
        x1 = x2 + w
        x0 = x2 + 2.0 * w
        b = (m + a) * _LN10
        # EH(x1 + δ) = a e^{b x1} expm1(bδ) + c δ with c/a = e^{b x0} / w; EH(1) = T.
        e_a = math.exp(b * x1)
        c_a = math.exp(b * x0) / w
        top = 1.0 - x1
        scale_a = t / (e_a * math.expm1(b * top) + c_a * top)
        return x1, scale_a * e_a, b, 0.0, 0.0, scale_a * c_a, 1.0


@dataclass(frozen=True, kw_only=True)
class FlowJoBiex(_BiexFamily):
    """FlowJo 10 ``transforms:biex``: FlowJo's logicle variant, defined by its lookup table.

    FlowJo tabulates raw values ``S(v)`` at channels ``v = 0 .. C`` (``C = channels = 4096``)
    and interpolates. With ``Wd = log10(-width)`` (the full linearisation width, decades),

    * ``e = negative + Wd/2`` (decades below the linear centre), ``p = positive - Wd/2``;
    * the zero channel ``z = min(floor(C e / (e + p)), C // 2)``, an integer, so raw 0 sits
      exactly on a channel; then the total decades are re-derived from it,
      ``D = e C / z`` (``D = e + p`` when ``z = 0``), so ``positive`` only acts through ``z``;
    * with ``n = C + 1`` and ``u = v / n``: ``b = D ln10``, logicle width ``w = Wd / (2D)``,
      ``d`` the logicle root of ``2 (ln d - ln b) + w (b + d) = 0``,
      ``x0 = w + z / C``, ``g(u) = e^{bu} - e^{(b+d) x0} e^{-du}``;
    * ``S(v) = T e^{-b} (g(v/n) - g(z/n))`` for ``v >= z`` and ``S(v) = -S(2z - v)`` below,
      with ``T = max_range``.

    So it is a logicle (``W = Wd/2`` decades, zero at ``z / n``) whose constants are taken in
    slightly inconsistent units (``z/C`` against ``z/n``, ``a = T e^{-b}`` instead of
    ``S(n) = T``): ``S(n)`` is close to, not exactly, ``max_range``. ``apply`` returns
    ``v / C``, the channel as a fraction of FlowJo's 4096-channel axis (``v`` is FlowKit's
    ``WSPBiexTransform`` output), computed for real ``v`` from the same closed form (no
    interpolation); :meth:`lookup_table` gives FlowJo's table ``S(0), ..., S(C)``.
    The exported table ``tr_biex_l256_w-7.943282_n1.000000_m4.418540_r262144.000029.csv``
    is reproduced to its printed 6 significant digits (within 0.8 unit of the last digit).

    Parameters
    ----------
    max_range
        ``maxRange`` (> 0), the top of scale ``T``.
    width
        ``width`` basis (``<= -1``), e.g. -10.
    positive
        ``pos`` decades (``> Wd/2``), e.g. 4.418540.
    negative
        ``neg`` extra negative decades (``>= 0``).
    channels
        FlowJo's table resolution ``C`` (4096, independent of the workspace ``length``).
    interpolate
        ``False`` (default): the closed form above for every real channel. ``True``: linear
        interpolation in :meth:`lookup_table`, as FlowKit's ``WSPBiexTransform`` does (values
        beyond the table ends clamp to channel 0 / ``C``, both ways); the two differ by at most
        ~5e-4 channel inside the table.
    bound_min, bound_max
        Optional clamp of the transformed value.
    """

    kind: ClassVar[str] = "flowjo_biex"
    max_range: float
    width: float
    positive: float
    negative: float
    channels: int = 4096
    interpolate: bool = False
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.interpolate, bool):
            raise TypeError(f"interpolate must be a bool, got {self.interpolate!r}")
        for name in ("max_range", "width", "positive", "negative"):
            _set(self, name, _finite(name, getattr(self, name)))
        if isinstance(self.channels, bool) or int(self.channels) != self.channels:
            raise TypeError(f"channels must be an integer, got {self.channels!r}")
        _set(self, "channels", int(self.channels))
        if self.max_range <= 0:
            raise ValueError(f"FlowJo biex: maxRange must be > 0, got {self.max_range}")
        if self.width > -1:
            raise ValueError(f"FlowJo biex: width must be <= -1, got {self.width}")
        if self.negative < 0:
            raise ValueError(f"FlowJo biex: neg must be >= 0, got {self.negative}")
        if self.positive <= math.log10(-self.width) / 2:
            raise ValueError(
                f"FlowJo biex: pos ({self.positive}) must exceed log10(-width)/2 "
                f"({math.log10(-self.width) / 2})"
            )
        if self.channels < 2:
            raise ValueError(f"FlowJo biex: channels must be >= 2, got {self.channels}")
        self._check_bounds()

    @cached_property
    def _layout(self) -> tuple[int, float, float]:
        """``(z, D, Wd)``: zero channel, total decades, full width in decades."""
        c = self.channels
        wd = math.log10(-self.width)
        extra = self.negative + wd / 2.0
        pos = self.positive - wd / 2.0
        z = min(math.floor(c * extra / (extra + pos)), c // 2)
        decades = extra * c / z if z > 0 else extra + pos
        return z, decades, wd

    @property
    def zero_channel(self) -> int:
        """The channel ``z`` that raw 0 maps to (``apply(0) == z / channels``)."""
        return self._layout[0]

    def _raw_params(self) -> tuple[float, float, float, float, float, float, float]:
        z, decades, wd = self._layout
        c = self.channels
        n = c + 1
        w = wd / (2.0 * decades)
        b = decades * _LN10
        d = _logicle_d(w, b)
        x1 = z / n
        x0 = w + z / c
        t = self.max_range
        # S = T e^{-b} [e^{b x1} expm1(bδ) - e^{(b+d) x0 - d x1} expm1(-dδ)], δ = u - x1
        a1 = t * math.exp(b * (x1 - 1.0))
        c1 = t * math.exp((b + d) * x0 - d * x1 - b)
        return x1, a1, b, c1, d, 0.0, n / c

    @cached_property
    def _table(self) -> tuple[FloatArray, FloatArray]:
        lut = self.lookup_table()
        return lut, np.arange(lut.shape[0], dtype=np.float64) / self.channels

    def _forward(self, x: FloatArray, lo: float, hi: float) -> FloatArray:
        if not self.interpolate:
            return super()._forward(x, lo, hi)
        lut, pos = self._table
        return _clamp(np.interp(x, lut, pos), lo, hi)

    def _backward(self, y: FloatArray) -> FloatArray:
        if not self.interpolate:
            return super()._backward(y)
        lut, pos = self._table
        return np.interp(y, pos, lut)

    def lookup_table(self) -> FloatArray:
        """FlowJo's lookup table: raw values ``S(v)`` at channels ``v = 0, 1, ..., C``.

        Returns
        -------
        np.ndarray
            ``float64[channels + 1]``, increasing, ``S(zero_channel) == 0``.
        """
        p, _ = self._kernel
        pu = p.copy()
        pu[_k.P_SCALE] = 1.0
        n = self.channels + 1
        out = np.empty(n)
        _k.biex_inverse(np.arange(n, dtype=np.float64) / n, out, pu)
        # exact odd symmetry about the zero channel, as in FlowJo's table
        z = self.zero_channel
        out[z] = 0.0
        out[:z] = -out[2 * z : z : -1]
        return out


# ---------------------------------------------------------------------------------------------
# Construction from dictionaries and XML attributes
# ---------------------------------------------------------------------------------------------

_KINDS: dict[str, type[Transform]] = {
    cls.kind: cls
    for cls in (Linear, Log, Asinh, Logicle, Hyperlog, FlowJoLinear, FlowJoLog, FlowJoBiex)
}


def transform_from_dict(d: Mapping[str, Any]) -> Transform:
    """Rebuild any transform from its :meth:`Transform.to_dict` dictionary.

    Parameters
    ----------
    d
        A mapping with a ``kind`` and the transform's fields.

    Returns
    -------
    Transform
        The transform.
    """
    kind = d.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"unknown transform kind {kind!r}; known: {sorted(_KINDS)}")
    return _KINDS[kind].from_dict(d)


def _local(name: str) -> str:
    """Local part of an XML name: strips ``{namespace}`` (ElementTree) or ``prefix:``."""
    if name.startswith("{"):
        name = name.rsplit("}", 1)[-1]
    return name.rsplit(":", 1)[-1]


def _attrs(attributes: Mapping[str, str]) -> dict[str, str]:
    return {_local(k): v for k, v in attributes.items()}


def _need(element: str, attrs: Mapping[str, str], *names: str) -> list[float]:
    missing = [n for n in names if n not in attrs]
    if missing:
        raise ValueError(f"{element}: missing attribute(s) {missing}")
    return [_finite(f"{element}@{n}", attrs[n]) for n in names]


_GATINGML: dict[str, Callable[[dict[str, str], float | None, float | None], Transform]] = {
    "flin": lambda at, lo, hi: Linear(
        t=_need("flin", at, "T")[0], a=_need("flin", at, "A")[0], bound_min=lo, bound_max=hi
    ),
    "flog": lambda at, lo, hi: Log(
        t=_need("flog", at, "T")[0], m=_need("flog", at, "M")[0], bound_min=lo, bound_max=hi
    ),
    "fasinh": lambda at, lo, hi: Asinh(
        **dict(zip(("t", "m", "a"), _need("fasinh", at, "T", "M", "A"), strict=True)),
        bound_min=lo,
        bound_max=hi,
    ),
    "logicle": lambda at, lo, hi: Logicle(
        **dict(zip(("t", "w", "m", "a"), _need("logicle", at, "T", "W", "M", "A"), strict=True)),
        bound_min=lo,
        bound_max=hi,
    ),
    "hyperlog": lambda at, lo, hi: Hyperlog(
        **dict(zip(("t", "w", "m", "a"), _need("hyperlog", at, "T", "W", "M", "A"), strict=True)),
        bound_min=lo,
        bound_max=hi,
    ),
}


def transform_from_gatingml(
    element: str,
    attributes: Mapping[str, str],
    *,
    bound_min: float | None = None,
    bound_max: float | None = None,
) -> Transform:
    """Build a transform from a Gating-ML 2.0 ``transforms:*`` element.

    Parameters
    ----------
    element
        The element name (``flin``, ``flog``, ``fasinh``, ``logicle``, ``hyperlog``), with or
        without its namespace prefix / ElementTree ``{uri}``.
    attributes
        Its attributes (``T``, ``W``, ``M``, ``A``; prefixes are stripped).
    bound_min, bound_max
        The ``boundMin`` / ``boundMax`` of the enclosing ``transforms:transformation``.

    Returns
    -------
    Transform
        The transform.
    """
    name = _local(element)
    if name == "fratio":
        raise ValueError("fratio is a two-parameter ratio, not a single-parameter scale transform")
    if name not in _GATINGML:
        raise ValueError(f"unsupported Gating-ML transform {name!r}; known: {sorted(_GATINGML)}")
    return _GATINGML[name](_attrs(attributes), bound_min, bound_max)


def _flowjo_fasinh(at: dict[str, str]) -> Transform:
    t, m, a = _need("fasinh", at, "T", "M", "A")
    if "W" in at:
        # FlowJo writes W = -10**M (a display width basis); it does not enter the map.
        wv = _finite("fasinh@W", at["W"])
        if not math.isclose(wv, -(10.0**m), rel_tol=1e-6):
            logger.debug("FlowJo fasinh W=%s differs from -10**M (M=%s); ignored", wv, m)
    return Asinh(t=t, m=m, a=a)


def _flowjo_linear(at: dict[str, str]) -> Transform:
    lo, hi = _need("linear", at, "minRange", "maxRange")
    gain = _finite("linear@gain", at.get("gain", "1"))
    return FlowJoLinear(min_range=lo, max_range=hi, gain=gain)


def _flowjo_biex(at: dict[str, str]) -> Transform:
    t, width, pos, neg = _need("biex", at, "maxRange", "width", "pos", "neg")
    return FlowJoBiex(max_range=t, width=width, positive=pos, negative=neg)


_FLOWJO: dict[str, Callable[[dict[str, str]], Transform]] = {
    "linear": _flowjo_linear,
    "log": lambda at: FlowJoLog(
        **dict(zip(("offset", "decades"), _need("log", at, "offset", "decades"), strict=True))
    ),
    "fasinh": _flowjo_fasinh,
    "biex": _flowjo_biex,
    "logicle": lambda at: Logicle(
        **dict(zip(("t", "w", "m", "a"), _need("logicle", at, "T", "W", "M", "A"), strict=True))
    ),
    "hyperlog": lambda at: Hyperlog(
        **dict(zip(("t", "w", "m", "a"), _need("hyperlog", at, "T", "W", "M", "A"), strict=True))
    ),
}


def transform_from_flowjo(element: str, attributes: Mapping[str, str]) -> Transform:
    """Build a transform from a FlowJo 10 workspace ``transforms:*`` element.

    Parameters
    ----------
    element
        ``linear``, ``log``, ``fasinh``, ``biex``, ``logicle`` or ``hyperlog`` (prefix or
        ElementTree ``{uri}`` allowed).
    attributes
        Its attributes, e.g. ``transforms:minRange``/``maxRange``/``gain`` for ``linear``,
        ``offset``/``decades`` for ``log``, ``T``/``M``/``A`` (``W``, ``length``, ``maxRange``
        ignored) for ``fasinh``, ``maxRange``/``width``/``pos``/``neg`` (``length`` ignored)
        for ``biex``.

    Returns
    -------
    Transform
        The transform.
    """
    name = _local(element)
    if name not in _FLOWJO:
        raise ValueError(f"unsupported FlowJo transform {name!r}; known: {sorted(_FLOWJO)}")
    return _FLOWJO[name](_attrs(attributes))
