"""Model designs over a sample sheet: formula variables, contrasts, factor levels, model matrices.

The one implementation of design handling, used by differential expression
(:mod:`expression._de`: pydeseq2 builds the model matrix from the prepared sample sheet) and by
the VST (:mod:`expression._vst`: the model matrix for ``blind=False``).

Rules, as R's ``model.matrix`` with treatment coding:

- a formula starts with ``~``; its variables are the sample-sheet columns it uses;
- every variable must be a column of the sample sheet, with no missing value;
- numeric (non-boolean) columns are continuous covariates; every other column is a factor whose
  levels are its values as text, sorted (the first is the reference);
- ``keep_categories=True`` keeps the level order of pandas categorical columns instead;
- the contrast ``(factor, level, reference)`` makes ``factor`` a factor (even when numeric),
  checks both levels exist and differ, and puts ``reference`` first (R's ``relevel``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "as_contrast",
    "design_frame",
    "design_matrix",
    "design_variables",
    "parse_contrast",
]


def parse_contrast(text: str) -> tuple[str, str, str]:
    """Parse ``"factor,level,reference"`` (the CLI's ``--contrast``).

    Parameters
    ----------
    text
        Three comma-separated names.

    Returns
    -------
    tuple of str
        ``(factor, level, reference)``.

    Raises
    ------
    ValueError
        Not three non-empty names.

    Examples
    --------
    >>> parse_contrast("timepoint, post, pre")
    ('timepoint', 'post', 'pre')
    """
    parts = tuple(p.strip() for p in text.split(","))
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"contrast must be 'factor,level,reference', got {text!r}")
    return parts  # type: ignore[return-value]


def as_contrast(contrast: str | Sequence[str]) -> tuple[str, str, str]:
    """A contrast given as ``"factor,level,reference"`` or as a 3-sequence, as a tuple of text.

    Parameters
    ----------
    contrast
        ``"factor,level,reference"`` (see :func:`parse_contrast`) or ``(factor, level,
        reference)``; sequence items are converted with ``str``.

    Returns
    -------
    tuple of str
        ``(factor, level, reference)``.

    Raises
    ------
    ValueError
        Not three names.

    Examples
    --------
    >>> as_contrast(("timepoint", "post", "pre"))
    ('timepoint', 'post', 'pre')
    """
    if isinstance(contrast, str):
        return parse_contrast(contrast)
    parts = tuple(str(c) for c in contrast)
    if len(parts) != 3:
        raise ValueError(f"contrast must be (factor, level, reference), got {contrast!r}")
    return parts  # type: ignore[return-value]


def design_variables(design: str) -> list[str]:
    """The sample-sheet columns a formula uses (``"~ patient + timepoint"`` -> both names).

    Parameters
    ----------
    design
        A formulaic/Wilkinson formula starting with ``~``.

    Returns
    -------
    list of str
        Variable names, sorted.

    Raises
    ------
    ValueError
        Not a string starting with ``~``, or not parsable.

    Examples
    --------
    >>> design_variables("~ patient + C(timepoint) + np.log(age)")
    ['age', 'patient', 'timepoint']
    """
    from formulaic import Formula

    if not isinstance(design, str) or not design.strip().startswith("~"):
        raise ValueError(f"design must be a formula string starting with '~', got {design!r}")
    try:
        names = Formula(design).required_variables
    except Exception as exc:  # formulaic raises several parser error types
        raise ValueError(f"cannot parse design {design!r}: {exc}") from exc
    return sorted(str(n) for n in names)


def design_frame(
    obs: pd.DataFrame,
    variables: Sequence[str],
    *,
    contrast: tuple[str, str, str] | None = None,
    keep_categories: bool = False,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The design's columns of the sample sheet, validated, with factors and their levels fixed.

    Parameters
    ----------
    obs
        The sample sheet (one row per sample).
    variables
        The columns the design uses (:func:`design_variables`).
    contrast
        ``(factor, level, reference)``: ``factor`` must be a design variable holding both
        levels; it becomes a factor with ``reference`` as its first (baseline) level.
    keep_categories
        Keep the level order of pandas categorical columns (other than the contrast factor);
        by default their values are re-levelled as text, sorted.

    Returns
    -------
    tuple
        The samples x variables frame (factors as pandas categoricals, covariates unchanged)
        and a mapping of each factor to its levels, baseline first.

    Raises
    ------
    ValueError
        A variable missing from the sheet or missing for a sample, a contrast factor outside
        the design, a contrast level not present, or a level compared with itself.

    Examples
    --------
    >>> sheet = pd.DataFrame({"patient": ["a", "a", "b", "b"], "timepoint": ["pre", "post"] * 2})
    >>> frame, levels = design_frame(sheet, ["patient", "timepoint"],
    ...                              contrast=("timepoint", "post", "pre"))
    >>> levels
    {'patient': ['a', 'b'], 'timepoint': ['pre', 'post']}
    """
    variables = list(variables)
    missing = [v for v in variables if v not in obs.columns]
    if missing:
        raise ValueError(
            f"design variable(s) {missing} not in the sample sheet (columns: {list(obs.columns)})"
        )
    factor = None
    if contrast is not None:
        factor, level, reference = contrast
        if factor not in variables:
            raise ValueError(f"contrast factor {factor!r} is not in the design ({variables})")
    meta = obs.loc[:, variables].copy()
    levels: dict[str, list[str]] = {}
    for name in variables:
        column = meta[name]
        if column.isna().any():
            sample = str(column.index[column.isna().to_numpy()][0])
            raise ValueError(f"design variable {name!r} is missing for sample {sample!r}")
        if name == factor:
            values = column.astype(str)
            present = sorted(values.unique())
            for wanted in (level, reference):
                if wanted not in present:
                    raise ValueError(
                        f"contrast level {wanted!r} not found in {factor!r} (levels: {present})"
                    )
            if level == reference:
                raise ValueError(f"contrast compares {level!r} with itself")
            present = [reference, *(p for p in present if p != reference)]
        elif keep_categories and isinstance(column.dtype, pd.CategoricalDtype):
            levels[name] = [str(c) for c in column.cat.categories]
            continue
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            continue  # continuous covariate
        else:
            values = column.astype(str)
            present = sorted(values.unique())
        meta[name] = pd.Categorical(values, categories=present)
        levels[name] = present
    return meta, levels


def design_matrix(obs: pd.DataFrame, design: str) -> np.ndarray:
    """Treatment-coded design matrix of ``design`` over ``obs`` (R's ``model.matrix``).

    Text columns become factors whose levels are sorted (the first is the reference, as in R);
    categorical columns keep their own level order.

    Parameters
    ----------
    obs
        The sample sheet.
    design
        A formula starting with ``~``.

    Returns
    -------
    numpy.ndarray
        Samples x coefficients.

    Raises
    ------
    ValueError
        As :func:`design_variables` and :func:`design_frame`.

    Examples
    --------
    >>> sheet = pd.DataFrame({"patient": ["a", "a", "b", "b"], "timepoint": ["pre", "post"] * 2})
    >>> design_matrix(sheet, "~ patient + timepoint").tolist()
    [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    """
    from formulaic import Formula

    meta, _ = design_frame(obs, design_variables(design), keep_categories=True)
    matrix = Formula(design).get_model_matrix(meta)
    return np.asarray(matrix, dtype=np.float64)
