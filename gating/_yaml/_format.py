"""The vocabulary of phenoflow's strategy format (documented in :mod:`gating._yaml._api`).

What the reader (:mod:`gating._yaml._read`) and the writer (:mod:`gating._yaml._write`) share:
the format version, the keys and gate shapes a document may use, the compensation and
transform names, and :class:`StrategyFormatError`.
"""

from __future__ import annotations

from gating._strategy import FILE_SPILLOVER, UNCOMPENSATED, StrategyError
from gating._transforms import (
    Asinh,
    FlowJoBiex,
    FlowJoLinear,
    FlowJoLog,
    Hyperlog,
    Linear,
    Log,
    Logicle,
    Transform,
)

__all__ = [
    "BOUNDED_SHAPES",
    "COMPENSATION",
    "GATE_KEYS",
    "OPTIONAL_PARAMETERS",
    "QUADRANT_SIGNS",
    "RESERVED",
    "SHAPES",
    "TERM_NOTE",
    "TOP_KEYS",
    "TRANSFORMS",
    "VERSION",
    "StrategyFormatError",
]

VERSION = 1
TOP_KEYS = ("phenoflow-strategy", "name", "description", "channel_matching", "compensation",
             "matrices", "transforms", "dimensions", "gates")
SHAPES = ("range", "rectangle", "polygon", "ellipse", "quadrant", "boolean")
GATE_KEYS = ("name", "parent", "description", "inclusive", *SHAPES)
#: shapes whose bounds have a closed side to choose (``inclusive: min`` or ``max``)
BOUNDED_SHAPES = ("range", "rectangle", "quadrant")
COMPENSATION = {"none": UNCOMPENSATED, "spillover": FILE_SPILLOVER}
RESERVED = {"none", "spillover", UNCOMPENSATED, FILE_SPILLOVER}
QUADRANT_SIGNS = ("+,+", "-,+", "-,-", "+,-")
TERM_NOTE = "phenoflow: a term of the Boolean expression of "
TRANSFORMS: dict[str, tuple[type[Transform], dict[str, str]]] = {
    "linear": (Linear, {"T": "t", "A": "a"}),
    "log": (Log, {"T": "t", "M": "m"}),
    "asinh": (Asinh, {"T": "t", "M": "m", "A": "a"}),
    "logicle": (Logicle, {"T": "t", "W": "w", "M": "m", "A": "a"}),
    "hyperlog": (Hyperlog, {"T": "t", "W": "w", "M": "m", "A": "a"}),
    "flowjo-linear": (FlowJoLinear, {"minRange": "min_range", "maxRange": "max_range"}),
    "flowjo-log": (FlowJoLog, {"offset": "offset", "decades": "decades"}),
    "flowjo-biex": (FlowJoBiex, {"maxRange": "max_range", "width": "width", "pos": "positive",
                                 "neg": "negative", "channels": "channels",
                                 "interpolate": "interpolate"}),
}
OPTIONAL_PARAMETERS = {"A", "channels", "interpolate"}


class StrategyFormatError(StrategyError):
    """A phenoflow strategy file is malformed or inconsistent.

    Parameters
    ----------
    message
        What is wrong.
    source
        The file (or ``<text>``).
    gate
        The gate's name, when the problem is in a gate.
    index
        The gate's position in ``gates`` (0-based).
    field
        The key concerned, dotted (``transforms.fluor.T``, ``range.min``).
    """

    def __init__(self, message: str, *, source: str = "", gate: str = "",
                 index: int | None = None, field: str = "") -> None:
        super().__init__(message, source=source, gate=gate)
        self.index = index
        self.field = field
        where = [source] if source else []
        if index is not None:
            where.append(f"gates[{index}]" + (f" {gate!r}" if gate else ""))
        elif gate:
            where.append(f"gate {gate!r}")
        if field:
            where.append(f"field {field!r}")
        self.args = (f"{', '.join(where)}: {message}" if where else message,)

    def __reduce__(self):  # keep every keyword across process boundaries
        return (_rebuild, (type(self), self.detail, self.source, self.gate, self.index,
                           self.field))


def _rebuild(cls: type[StrategyFormatError], message: str, source: str, gate: str,
             index: int | None, field: str) -> StrategyFormatError:
    return cls(message, source=source, gate=gate, index=index, field=field)
