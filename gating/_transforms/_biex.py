"""The biexponential family: Gating-ML logicle and hyperlog, FlowJo 10 biex (Numba kernels).

"The module docstring" in the docstrings below is that of :mod:`gating._transforms`, which
defines these maps and describes their numerics; the kernels are in
:mod:`gating._transforms._kernels`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
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

__all__ = ["FlowJoBiex", "Hyperlog", "Logicle"]

#: Start table of the root finder: knots over ``t`` in ``[0, _TABLE_T_MAX]`` (internal units,
#: covering every scale value up to ~1.5), 8 KiB per parameter set.
_TABLE_INTERVALS = 512
_TABLE_T_MAX = 1.5


def _logicle_d(w: float, b: float) -> float:
    """The logicle ``d``: root of ``2 (ln d - ln b) + w (b + d) = 0`` in ``(0, b]``."""
    if w == 0.0:
        return b

    def g(d: float) -> float:
        return 2.0 * (math.log(d) - math.log(b)) + w * (b + d)

    lo = b * math.exp(-w * b - 1.0)  # g(lo) <= -2 + ... < 0
    d = _concave_root(g, lambda v: 2.0 / v + w, lo, b)
    # one Newton polish step (g is smooth and increasing; the root is already at ~ulp)
    d -= g(d) / (2.0 / d + w)
    return d


def _concave_root(
    g: Callable[[float], float], dg: Callable[[float], float], lo: float, hi: float,
) -> float:
    """The root in ``[lo, hi]`` of an increasing concave ``g`` with ``g(lo) < 0 <= g(hi)``.

    Newton's method started at ``lo``: on an increasing concave function every tangent lies
    above the graph, so each step lands left of the root and the iterates rise monotonically
    to it (quadratically near it); it stops when a step no longer moves the iterate, with
    bisection of the bracket as a guard against a step leaving it.
    """
    x = lo
    for _ in range(200):
        gx = g(x)
        if gx == 0.0:
            return x
        if gx > 0.0:  # rounding put us right of the root: the bracket shrinks from above
            hi = x
            x = 0.5 * (lo + hi)
            continue
        lo = x
        step = gx / dg(x)
        nxt = x - step
        if not lo <= nxt <= hi:
            nxt = 0.5 * (lo + hi)
        if nxt == x:
            return x
        x = nxt
    return x


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
    if m + a > MAX_DECADES:
        raise ValueError(
            f"{name}: M + A must be at most {MAX_DECADES:g} decades (the float64 range), got "
            f"M={m}, A={a}"
        )


@dataclass(frozen=True, kw_only=True)
class _TWMA(_BiexFamily):
    """Shared fields, checks and geometry of the Gating-ML ``logicle`` and ``hyperlog``."""

    _w_positive: ClassVar[bool]
    t: float
    w: float
    m: float
    a: float
    bound_min: float | None = None
    bound_max: float | None = None

    def __post_init__(self) -> None:
        for name in ("t", "w", "m", "a"):
            set_field(self, name, require_finite(name, getattr(self, name)))
        _check_logicle_like(self.kind, self.t, self.w, self.m, self.a, w_pos=self._w_positive)
        self._check_bounds()

    def _geometry(self) -> tuple[float, float, float, float]:
        """``w`` scaled to [0, 1], the zero point ``x1``, ``x0 = x1 + w`` and ``b = (M+A) ln10``."""
        m, a = self.m, self.a
        w = self.w / (m + a)
        x2 = a / (m + a)
        return w, x2 + w, x2 + 2.0 * w, (m + a) * LN10


@dataclass(frozen=True, kw_only=True)
class Logicle(_TWMA):
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
    _w_positive: ClassVar[bool] = False

    def _raw_params(self) -> tuple[float, float, float, float, float, float, float]:
        t = self.t
        w, x1, x0, b = self._geometry()
        d = _logicle_d(w, b)
        # B(x1 + δ) = a e^{b x1} expm1(bδ) - c e^{-d x1} expm1(-dδ), c/a = e^{x0 (b + d)};
        # a fixed by B(1) = T.
        e_a = math.exp(b * x1)
        e_c = math.exp(x0 * (b + d) - d * x1)
        top = 1.0 - x1
        scale_a = t / (e_a * math.expm1(b * top) - e_c * math.expm1(-d * top))
        return x1, scale_a * e_a, b, scale_a * e_c, d, 0.0, 1.0


@dataclass(frozen=True, kw_only=True)
class Hyperlog(_TWMA):
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
    _w_positive: ClassVar[bool] = True

    def _raw_params(self) -> tuple[float, float, float, float, float, float, float]:
        t = self.t
        w, x1, x0, b = self._geometry()
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
            set_field(self, name, require_finite(name, getattr(self, name)))
        if isinstance(self.channels, bool) or int(self.channels) != self.channels:
            raise TypeError(f"channels must be an integer, got {self.channels!r}")
        set_field(self, "channels", int(self.channels))
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
        b = decades * LN10
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
        return clamp_to(np.interp(x, lut, pos), lo, hi)

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
