"""The gating entry points that take any sample and any strategy: :func:`compile_plan`,
:func:`apply_plan` and :func:`evaluate_plan` with the conversions
(:func:`gating._interop._samples.as_sample`, :func:`as_strategy`) in front of the package's
own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from gating._evaluate import Evaluator, GatingResult
from gating._evaluate import apply_plan as _apply_plan
from gating._evaluate import evaluate_plan as _evaluate_plan
from gating._flowjo import FlowJoWorkspace
from gating._interop._samples import EventSample, SampleLike, as_sample
from gating._interop._strategies import StrategyLike, as_strategy
from gating._load import resolve_strategy as _resolve_strategy
from gating._plan import Plan
from gating._plan import compile_plan as _compile_plan

__all__ = ["apply_plan", "compile_plan", "evaluate_plan"]


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
