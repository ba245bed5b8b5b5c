"""The statistics layer: paired pre/post tests, subgroups and Benjamini-Hochberg over tidy tables.

Correlations live in :mod:`engine._stats._corr`. The test of one variable (:func:`paired_test`,
:class:`PairedTest`, :class:`Summary`) is :func:`expression.paired_test`, the one paired-test
implementation in phenoflow; its conventions (R's ``V``, zeros dropped, exact P with ties by
sign-flip permutation on mid-ranks up to ``exact_max`` non-zero differences) are documented
there. This module applies it to tables.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from expression import (
    PairedMethod,
    PairedTest,
    Summary,
    WilcoxonExact,
    benjamini_hochberg,
    paired_test,
)

__all__ = [
    "PairedTest",
    "Summary",
    "bh_adjust",
    "paired_test",
    "paired_tests",
    "subgroup_summary",
]

logger = logging.getLogger(__name__)

_SUMMARY_FIELDS = ("n", "mean", "sd", "sem", "median", "q1", "q3")


def bh_adjust(pvalues: ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg adjusted P values (the step-up FDR, capped at 1).

    Parameters
    ----------
    pvalues
        Raw P values in [0, 1]; NaN stays NaN and is not counted in the number of tests ``m``.

    Returns
    -------
    numpy.ndarray
        Adjusted P values, same shape as the input.

    Raises
    ------
    ValueError
        A P value outside [0, 1] or non-numeric input.

    Examples
    --------
    >>> bh_adjust([0.01, 0.04, np.nan, 0.03]).round(3).tolist()
    [0.03, 0.04, nan, 0.04]
    """
    try:
        p = np.asarray(pvalues, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"bh_adjust: P values must be numeric ({error})") from error
    flat = p.ravel()
    out = np.full(flat.shape, np.nan)
    present = ~np.isnan(flat)
    if np.any((flat[present] < 0) | (flat[present] > 1)):
        bad = flat[present][(flat[present] < 0) | (flat[present] > 1)][0]
        raise ValueError(f"bh_adjust: P values must lie in [0, 1], got {bad}")
    if present.any():
        out[present] = benjamini_hochberg(flat[present])
    return out.reshape(p.shape)


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{what}: expected a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what}: column(s) {missing} not in the table (columns: {list(table.columns)})"
        )


def _wide(
    table: pd.DataFrame, *, subject: str, time: str, variables: Sequence[str] | None,
    variable: str | None, value: str | None, what: str,
) -> tuple[pd.DataFrame, list[str]]:
    """The table as one row per subject x time and one column per variable."""
    if (variable is None) != (value is None):
        raise ValueError(f"{what}: give both `variable` and `value` for long input, or neither")
    if variable is not None and value is not None:
        require_columns(table, [subject, time, variable, value], what)
        keys = [subject, time, variable]
        if table.duplicated(keys).any():
            raise ValueError(f"{what}: duplicate rows for the same {subject} x {time} x {variable}")
        wide = table.pivot(index=[subject, time], columns=variable, values=value).reset_index()
        wide.columns.name = None
        names = list(pd.unique(table[variable])) if variables is None else list(variables)
    else:
        require_columns(table, [subject, time], what)
        wide = table
        if variables is None:
            names = [
                c for c in table.columns
                if c not in (subject, time) and pd.api.types.is_numeric_dtype(table[c])
                and not pd.api.types.is_bool_dtype(table[c])
            ]
        else:
            names = list(variables)
    require_columns(wide, names, what)
    for name in names:
        if not pd.api.types.is_numeric_dtype(wide[name]):
            raise ValueError(f"{what}: variable {name!r} is not numeric (dtype {wide[name].dtype})")
    if wide.duplicated([subject, time]).any():
        dup = wide.loc[wide.duplicated([subject, time], keep=False), [subject, time]]
        raise ValueError(
            f"{what}: more than one row per {subject} x {time}, e.g. {dup.iloc[0].tolist()}"
        )
    return wide, names


def _options(**options: Any) -> dict[str, Any]:
    """The test options, validated once (so a typo fails before any row is computed)."""
    paired_test([0.0, 1.0], [1.0, 3.0], **options)
    return options


def check_levels(table: pd.DataFrame, time: str, levels: Sequence[str], what: str) -> None:
    present = set(table[time].dropna().unique())
    missing = [level for level in levels if level not in present]
    if missing:
        raise ValueError(
            f"{what}: {time!r} has no rows at level(s) {missing} (levels present: "
            f"{sorted(map(str, present))})"
        )


def _test_rows(
    wide: pd.DataFrame, names: Sequence[str], *, subject: str, time: str, pre: str, post: str,
    method: PairedMethod, options: dict[str, Any],
) -> pd.DataFrame:
    before = wide.loc[wide[time] == pre].set_index(subject)
    after = wide.loc[wide[time] == post].set_index(subject)
    subjects = before.index.union(after.index)
    rows = []
    for name in names:
        x = before[name].reindex(subjects).to_numpy(dtype=float)
        y = after[name].reindex(subjects).to_numpy(dtype=float)
        result = paired_test(x, y, method=method, **options)
        row: dict[str, object] = {"variable": name, "n": result.n}
        for part in ("pre", "post", "diff"):
            summary = getattr(result, part)
            row.update({f"{part}_{f}": getattr(summary, f) for f in _SUMMARY_FIELDS})
        row.update(
            statistic=result.statistic, statistic_name=result.statistic_name, df=result.df,
            pvalue=result.pvalue, method=result.method, note=result.note,
            estimate=result.estimate, ci_low=result.ci_low, ci_high=result.ci_high,
        )
        rows.append(row)
    columns = (
        ["variable", "n"]
        + [f"{p}_{f}" for p in ("pre", "post", "diff") for f in _SUMMARY_FIELDS]
        + ["statistic", "statistic_name", "df", "pvalue", "padj", "method", "note", "estimate",
           "ci_low", "ci_high"]
    )
    out = pd.DataFrame(rows, columns=[c for c in columns if c != "padj"])
    out.insert(out.columns.get_loc("pvalue") + 1, "padj", bh_adjust(out["pvalue"].to_numpy()))
    return out.reindex(columns=columns)


def paired_tests(
    table: pd.DataFrame,
    *,
    subject: str = "patient",
    time: str = "timepoint",
    pre: str = "pre",
    post: str = "post",
    variables: Sequence[str] | None = None,
    variable: str | None = None,
    value: str | None = None,
    method: PairedMethod = "wilcoxon",
    zero_method: Literal["wilcox", "pratt"] = "wilcox",
    exact_max: int = 50,
    wilcoxon_exact: WilcoxonExact = "ties",
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """Paired pre/post tests of many variables, with Benjamini-Hochberg over the table.

    Parameters
    ----------
    table
        Wide (rows = subject x time, one column per variable) or, with ``variable`` and
        ``value``, long (one row per subject x time x variable).
    subject, time
        Columns naming the subject and the timepoint.
    pre, post
        The two levels of ``time`` compared (other levels are ignored).
    variables
        Variables to test, in output order; default every numeric column other than
        ``subject``/``time`` (wide) or every ``variable`` level (long).
    variable, value
        Long input: the columns holding the variable name and its value.
    method
        ``"wilcoxon"`` (default) or ``"t"``; see :func:`paired_test`.
    zero_method, exact_max, wilcoxon_exact, conf_level
        Passed to :func:`paired_test` (``wilcoxon_exact="r"`` is R's ``wilcox.test`` rule).

    Returns
    -------
    pandas.DataFrame
        One row per variable: ``variable``, ``n`` (complete pairs), ``pre_*``, ``post_*``,
        ``diff_*`` (``post - pre``) summaries (``n``, ``mean``, ``sd``, ``sem``, ``median``,
        ``q1``, ``q3``; over the complete pairs), ``statistic``, ``statistic_name``, ``df``,
        ``pvalue``, ``padj`` (BH over this table's rows), ``method``, ``note``, and for the
        paired t ``estimate`` (mean difference) with its ``ci_low``/``ci_high``.

    Raises
    ------
    ValueError
        A named column is missing, a variable is not numeric, a subject has two rows at one
        timepoint, or ``pre``/``post`` has no rows.
    """
    what = "paired_tests"
    wide, names = _wide(
        table, subject=subject, time=time, variables=variables, variable=variable, value=value,
        what=what,
    )
    check_levels(wide, time, [pre, post], what)
    options = _options(zero_method=zero_method, exact_max=exact_max,
                       wilcoxon_exact=wilcoxon_exact, conf_level=conf_level)
    return _test_rows(wide, names, subject=subject, time=time, pre=pre, post=post, method=method,
                      options=options)


def subgroup_summary(
    table: pd.DataFrame,
    *,
    by: str,
    variables: Sequence[str],
    subject: str = "patient",
    time: str = "timepoint",
    pre: str = "pre",
    post: str = "post",
    method: PairedMethod = "wilcoxon",
    zero_method: Literal["wilcox", "pratt"] = "wilcox",
    exact_max: int = 50,
    wilcoxon_exact: WilcoxonExact = "ties",
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """:func:`paired_tests` within each level of a subject-level grouping column.

    Parameters
    ----------
    table
        Wide table (rows = subject x time) holding ``by`` and the ``variables``.
    by
        Subgroup column (e.g. treatment-naive vs maintenance). A subject's level is its one
        non-missing value over its rows; subjects without one are left out.
    variables, subject, time, pre, post, method, zero_method, exact_max, wilcoxon_exact, conf_level
        As in :func:`paired_tests`.

    Returns
    -------
    pandas.DataFrame
        :func:`paired_tests`'s columns with ``subgroup`` first; ``padj`` is BH within each
        subgroup. Groups too small to test get NaN statistic and P and a ``note``.

    Raises
    ------
    ValueError
        A named column is missing, or a subject has two different ``by`` values.
    """
    what = "subgroup_summary"
    options = _options(zero_method=zero_method, exact_max=exact_max,
                       wilcoxon_exact=wilcoxon_exact, conf_level=conf_level)
    require_columns(table, [subject, time, by], what)
    wide, names = _wide(
        table, subject=subject, time=time, variables=variables, variable=None, value=None,
        what=what,
    )
    check_levels(wide, time, [pre, post], what)
    levels = wide.dropna(subset=[by]).groupby(subject, sort=False)[by].unique()
    conflicting = levels[levels.map(len) > 1]
    if len(conflicting):
        raise ValueError(
            f"{what}: subject {conflicting.index[0]!r} has more than one {by!r} value "
            f"{list(conflicting.iloc[0])}"
        )
    group_of = wide[subject].map(levels.map(lambda v: v[0]))
    frames = []
    for level in pd.unique(group_of.dropna()):
        part = wide.loc[group_of == level]
        rows = _test_rows(part, names, subject=subject, time=time, pre=pre, post=post,
                          method=method, options=options)
        rows.insert(0, "subgroup", level)
        frames.append(rows)
        logger.debug("subgroup %r: %d subjects", level, part[subject].nunique())
    if not frames:
        empty = _test_rows(wide.iloc[:0], [], subject=subject, time=time, pre=pre, post=post,
                           method=method, options=options)
        return empty.reindex(columns=["subgroup", *empty.columns])
    return pd.concat(frames, ignore_index=True)
