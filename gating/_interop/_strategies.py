"""Strategies from FlowKit: the public strategy entry points that take any strategy.

A ``flowkit.GatingStrategy`` is converted through its Gating-ML 2.0 export
(``flowkit.export_gatingml``) read by :func:`gating.read_gatingml`: the one interchange format
both sides define, so nothing is inferred from FlowKit's internals. :func:`load_strategy` and
:func:`resolve_strategy` here are the package's own with that conversion in front (the gating
entry points that also take any sample are in :mod:`gating._interop._gate`). Nothing here
imports pandas or the gating kernels: converting a strategy file needs neither.
"""

from __future__ import annotations

import io
import os
import sys
from typing import Any

from gating._flowjo import FlowJoWorkspace
from gating._gatingml import read_gatingml
from gating._interop._errors import ConversionError
from gating._load import load_strategy as _load_strategy
from gating._load import resolve_strategy as _resolve_strategy
from gating._strategy import Strategy

__all__ = ["as_strategy", "load_strategy", "resolve_strategy"]

StrategyLike = Any  # Strategy | FlowJoWorkspace | flowkit.GatingStrategy


def _flowkit_kind(obj: Any) -> str:
    flowkit = sys.modules.get("flowkit")
    if flowkit is None:
        return ""
    if isinstance(obj, flowkit.GatingStrategy):
        return "strategy"
    if isinstance(obj, flowkit.Workspace | flowkit.Session):
        return "container"
    return ""


def as_strategy(obj: StrategyLike, *, sample_id: str | None = None) -> Strategy | FlowJoWorkspace:
    """A phenoflow strategy from a strategy, a FlowJo workspace or a ``flowkit.GatingStrategy``.

    Parameters
    ----------
    obj
        A :class:`gating.Strategy` or :class:`gating.FlowJoWorkspace` (returned as is), or a
        ``flowkit.GatingStrategy`` (converted through its Gating-ML 2.0 export).
    sample_id
        For a FlowKit strategy with sample-specific custom gates: the sample whose gates to
        export (FlowKit's ``sample_id``).

    Returns
    -------
    Strategy or FlowJoWorkspace
        The strategy.

    Raises
    ------
    ConversionError
        A FlowKit ``Workspace``/``Session`` (give the ``.wsp`` file to
        :func:`gating.load_strategy`), or an object of another type.
    GatingMLError
        FlowKit's export is not a document phenoflow can read (the message names the
        element).

    Examples
    --------
    >>> import flowkit as fk
    >>> gs = fk.GatingStrategy()
    >>> gs.add_gate(fk.gates.RectangleGate("R", [fk.Dimension("FSC-A", range_min=10)]),
    ...             gate_path=("root",))
    >>> [g.id for g in as_strategy(gs).gates]
    ['R']
    """
    if isinstance(obj, Strategy | FlowJoWorkspace):
        return obj
    kind = _flowkit_kind(obj)
    if kind == "strategy":
        import flowkit

        buffer = io.BytesIO()
        flowkit.export_gatingml(obj, buffer, sample_id=sample_id)
        return read_gatingml(buffer.getvalue(), source="<flowkit.GatingStrategy>")
    if kind == "container":
        raise ConversionError(
            f"a flowkit.{type(obj).__name__} holds several samples' strategies; give its "
            ".wsp file to gating.load_strategy, or one sample's gating strategy "
            "(flowkit.GatingStrategy)")
    raise ConversionError(f"cannot use a {type(obj).__module__}.{type(obj).__name__} as a "
                          "strategy; give a gating.Strategy, a FlowJo workspace, a strategy "
                          "file or a flowkit.GatingStrategy")


def load_strategy(path: str | os.PathLike[str] | StrategyLike) -> Strategy | FlowJoWorkspace:
    """Read a strategy file of any supported format, or convert a ``flowkit.GatingStrategy``.

    Parameters
    ----------
    path
        A Gating-ML 2.0 document, a FlowJo workspace (``.wsp``), a phenoflow YAML/JSON
        strategy, the name of a shipped preset (e.g. ``"study_panel"``); or an already
        loaded strategy / ``flowkit.GatingStrategy`` (see :func:`as_strategy`).

    Returns
    -------
    Strategy or FlowJoWorkspace
        A workspace holds one strategy per sample and group; :func:`resolve_strategy`
        picks one.

    Examples
    --------
    >>> load_strategy("study_panel").name
    'study_panel'
    """
    if isinstance(path, str | os.PathLike):
        return _load_strategy(path)
    return as_strategy(path)


def resolve_strategy(
    strategy: StrategyLike, sample_file: str, *, group: str | None = None
) -> Strategy:
    """The strategy for one sample: itself, a workspace's sample (or group) strategy, or a
    converted ``flowkit.GatingStrategy``.

    Parameters
    ----------
    strategy
        A strategy, a FlowJo workspace or a ``flowkit.GatingStrategy``.
    sample_file
        The sample's FCS file name (matched against the workspace's samples).
    group
        Use this workspace group's template instead of the sample's own gates.

    Returns
    -------
    Strategy
        The strategy to compile.

    Examples
    --------
    >>> s = load_strategy("study_panel")
    >>> resolve_strategy(s, "any.fcs") is s
    True
    """
    return _resolve_strategy(as_strategy(strategy), sample_file, group=group)
