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
:mod:`gating._transforms._kernels`: the inverse is the closed form written with ``expm1`` (no
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

from gating._transforms._base import FloatArray as FloatArray  # re-exported (the array alias)
from gating._transforms._base import Transform
from gating._transforms._biex import FlowJoBiex, Hyperlog, Logicle
from gating._transforms._build import (
    transform_from_dict,
    transform_from_flowjo,
    transform_from_gatingml,
)
from gating._transforms._closed import Asinh, FlowJoLinear, FlowJoLog, Linear, Log
from gating._transforms._kernels import N_PARAMS, P_SCALE, P_X1, biex_solve

__all__ = [
    # the biex parameter vector and its solver, for kernels of other rooms (fused gating)
    "N_PARAMS",
    "P_SCALE",
    "P_X1",
    "Asinh",
    "FlowJoBiex",
    "FlowJoLinear",
    "FlowJoLog",
    "Hyperlog",
    "Linear",
    "Log",
    "Logicle",
    "Transform",
    "biex_solve",
    "transform_from_dict",
    "transform_from_flowjo",
    "transform_from_gatingml",
]
