"""Strategies from FlowKit, and the public entry points that take any sample or strategy.

A ``flowkit.GatingStrategy`` is converted through its Gating-ML 2.0 export
(``flowkit.export_gatingml``) read by :func:`gating.read_gatingml`: the one interchange format
both sides define, so nothing is inferred from FlowKit's internals. :func:`compile_plan`,
:func:`load_strategy` and :func:`resolve_strategy` here are the package's own with that
conversion (and :func:`as_sample` for samples) in front.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from typing import Any, Literal

from gating._evaluate import Evaluator, GatingResult
from gating._evaluate import apply_plan as _apply_plan
from gating._evaluate import evaluate_plan as _evaluate_plan
from gating._flowjo import FlowJoWorkspace
from gating._gatingml import read_gatingml
from gating._interop._samples import ConversionError, EventSample, SampleLike, as_sample
from gating._load import load_strategy as _load_strategy
from gating._load import resolve_strategy as _resolve_strategy
from gating._plan import Plan
from gating._plan import compile_plan as _compile_plan
from gating._strategy import Strategy

__all__ = ["apply_plan", "as_strategy", "compile_plan", "evaluate_plan", "load_strategy", "resolve_strategy"]

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


def compile_plan(
    strategy: StrategyLike, sample: SampleLike, *, uncompensated: Literal["error", "allow"] = "error",
) -> Plan:
    """Resolve ``strategy`` against ``sample``: columns, compensation, transforms, order.

    Takes what a user has: the strategy may be a :class:`gating.Strategy` or a
    ``flowkit.GatingStrategy`` (:func:`as_strategy`), the sample an :class:`gating.FCSData`,
    a DataFrame, an AnnData or a ``flowkit.Sample`` (:func:`as_sample`, default options; call
    it yourself for ``spill=``/``markers=``/``layer=``). Everything else is the compiler's
    (see ``gating._plan.compile_plan``): a missing channel is a :class:`gating.PlanError`,
    compensation that cannot be applied a :class:`gating.CompensationError` unless
    ``uncompensated="allow"``.

    Parameters
    ----------
    strategy
        The strategy.
    sample
        The sample whose channel layout the plan is for.
    uncompensated
        ``"error"`` (default) or ``"allow"``, as :func:`gating.apply_plan` takes it.

    Returns
    -------
    Plan
        A frozen, JSON-serialisable plan.

    Examples
    --------
    >>> import pandas as pd
    >>> from gating import Dimension, RectangleGate, Strategy
    >>> s = Strategy(gates=(RectangleGate("R", (Dimension("A"),), ((0.5, None),)),))
    >>> compile_plan(s, pd.DataFrame({"A": [0.0, 1.0]})).columns
    (0,)
    """
    converted = as_strategy(strategy)
    data = as_sample(sample)
    if isinstance(converted, FlowJoWorkspace):
        name = data.path.name if not isinstance(data, EventSample) else data.name
        converted = _resolve_strategy(converted, name)
    return _compile_plan(converted, data, uncompensated=uncompensated)


def apply_plan(
    plan: Plan,
    sample: SampleLike,
    *,
    membership: bool = False,
    mfi: Sequence[str] | None = None,
    stats: bool | Sequence[str] = False,
    sample_name: str | None = None,
    threads: int | None = None,
    uncompensated: Literal["error", "allow"] = "error",
    evaluator: Evaluator | None = None,
) -> GatingResult:
    sample = as_sample(sample)
    return _apply_plan(plan, sample, membership=membership, mfi=mfi, stats=stats,
                       sample_name=sample_name, threads=threads, uncompensated=uncompensated,
                       evaluator=evaluator)


def evaluate_plan(plan: Plan, sample: SampleLike, *, threads: int | None = None) -> Evaluator:
    return _evaluate_plan(plan, as_sample(sample), threads=threads)


apply_plan.__doc__ = _apply_plan.__doc__
evaluate_plan.__doc__ = _evaluate_plan.__doc__
