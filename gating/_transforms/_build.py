"""Transforms from dictionaries, Gating-ML 2.0 and FlowJo 10 XML attributes.

:func:`transform_from_dict` inverts :meth:`Transform.to_dict`; :func:`transform_from_gatingml`
and :func:`transform_from_flowjo` map an element name and its attributes to a transform.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from gating._transforms._base import Transform, require_finite
from gating._transforms._biex import FlowJoBiex, Hyperlog, Logicle
from gating._transforms._closed import Asinh, FlowJoLinear, FlowJoLog, Linear, Log

__all__ = ["transform_from_dict", "transform_from_flowjo", "transform_from_gatingml"]

logger = logging.getLogger(__name__)

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
    return [require_finite(f"{element}@{n}", attrs[n]) for n in names]


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
        wv = require_finite("fasinh@W", at["W"])
        if not math.isclose(wv, -(10.0**m), rel_tol=1e-6):
            logger.debug("FlowJo fasinh W=%s differs from -10**M (M=%s); ignored", wv, m)
    return Asinh(t=t, m=m, a=a)


def _flowjo_linear(at: dict[str, str]) -> Transform:
    lo, hi = _need("linear", at, "minRange", "maxRange")
    gain = require_finite("linear@gain", at.get("gain", "1"))
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
