"""Model designs over a sample sheet: formula variables, contrasts, factor levels, model matrices.

The one implementation of design handling, used by differential expression
(:mod:`expression._de`: pydeseq2 builds the model matrix from the prepared sample sheet) and by
the VST (:mod:`expression._vst`: the model matrix for ``blind=False``).

Rules, as R's ``model.matrix`` with treatment coding:

- a formula starts with ``~``; its variables are the sample-sheet columns it uses;
- every variable must be a column of the sample sheet, with no missing value;
- numeric (non-boolean) columns are continuous covariates, except integer codes (below); every
  other column is a factor whose levels are its values as text, sorted (the first is the
  reference);
- **integer codes are factors**: a numeric column whose values are all whole numbers, with at
  least 3 distinct values and at most half as many distinct values as samples (each value shared
  by two samples or more on average: patient ids ``1..10`` in a paired design, batch or group
  codes), is fitted as a factor, with a logged warning naming the column and the opt-out. R
  DESeq2 fits such a column as one continuous slope (it only warns), which in
  ``~ patient + timepoint`` replaces the per-patient baselines by a trend over the patient
  numbers and silently changes the pairing. Pass ``numeric=("age",)`` (CLI ``--numeric age``,
  study manifest ``expression: {numeric: [age]}``) to keep such a column continuous; write
  ``C(x)`` in the formula to make any column a factor. Columns with non-integer values (a
  genuinely continuous covariate) and two-valued columns (whose numeric and factor codings give
  the same model) stay numeric. Every decision is in :attr:`PreparedDesign.kinds` and in the
  records of the callers (``DEResult.params["variables"]``, ``uns["vst"]["variables"]``, the
  study's ``study.json``);
- ``keep_categories=True`` keeps the level order of pandas categorical columns instead;
- the contrast ``(factor, level, reference)`` makes ``factor`` a factor (even when numeric),
  checks both levels exist and differ, and puts ``reference`` first (R's ``relevel``).
"""

from __future__ import annotations

import dataclasses
import keyword
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MainEffectsSpec",
    "PreparedDesign",
    "as_contrast",
    "contrast_vector",
    "design_frame",
    "design_matrix",
    "design_model",
    "design_variables",
    "integer_codes",
    "main_effects",
    "model_matrix",
    "parse_contrast",
    "prepare_design",
]

log = logging.getLogger(__name__)

#: An integer-coded column needs at least this many distinct values to become a factor (with two
#: values the numeric and the factor coding span the same model).
INTEGER_FACTOR_MIN_LEVELS = 3


@dataclasses.dataclass(frozen=True)
class PreparedDesign:
    """A design's columns of the sample sheet, validated, with each variable's kind decided.

    Attributes
    ----------
    design
        The formula.
    frame
        Samples x variables: factors as pandas categoricals, covariates unchanged.
    levels
        Each factor's levels, baseline first.
    kinds
        Each variable's kind: ``"factor"``, ``"factor (integer codes)"`` (an integer-valued
        numeric column fitted as a factor, see the module docstring), ``"numeric"`` or
        ``"numeric (requested)"`` (an integer-coded column kept continuous by ``numeric=``).
    integer_factors
        The integer-valued numeric columns fitted as factors.
    numeric
        The columns the caller asked to keep continuous.
    """

    design: str
    frame: pd.DataFrame
    levels: Mapping[str, list[str]]
    kinds: Mapping[str, str]
    integer_factors: tuple[str, ...]
    numeric: tuple[str, ...]

    def record(self) -> dict[str, object]:
        """A JSON-able record of the decisions (for ``params`` / ``uns`` / ``study.json``)."""
        return {
            "variables": dict(self.kinds),
            "integer_factors": list(self.integer_factors),
            "numeric": list(self.numeric),
            "integer_rule": (
                "numeric columns of whole numbers with >= 3 distinct values, at most one per "
                "2 samples, are fitted as factors unless listed in numeric"
            ),
        }


def integer_codes(column: pd.Series) -> bool:
    """Whether a sample-sheet column looks like integer codes of a grouping (see module docs).

    Parameters
    ----------
    column
        One column of the sample sheet.

    Returns
    -------
    bool
        True for a numeric, non-boolean column whose values are all finite whole numbers, with
        at least 3 distinct values and at most ``len(column) / 2`` of them.

    Examples
    --------
    >>> integer_codes(pd.Series([1, 1, 2, 2, 3, 3]))
    True
    >>> integer_codes(pd.Series([41.5, 41.5, 52.0, 52.0, 60.0, 60.0]))
    False
    """
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    values = np.asarray(column, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all() or (values != np.round(values)).any():
        return False
    distinct = np.unique(values).size
    return INTEGER_FACTOR_MIN_LEVELS <= distinct <= values.size / 2


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


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def main_effects(design: str) -> tuple[str, ...] | None:
    """The variables of a main-effects formula (plain column names joined by ``+``, with an
    optional ``1``), in formula order without repeats; None for any other formula.

    Such designs (``~ patient + timepoint``, ``~ type + condition``, ``~ 1``) are built by
    :class:`MainEffectsSpec`; every other formula (interactions, ``C()``, functions, no
    intercept) goes to formulaic, whose import alone costs about 0.3 s.

    Examples
    --------
    >>> main_effects("~ patient + timepoint + patient")
    ('patient', 'timepoint')
    >>> main_effects("~ 1")
    ()
    >>> main_effects("~ patient + C(timepoint)") is None
    True
    """
    body = design.strip()
    if not body.startswith("~"):
        return None
    names: list[str] = []
    for term in body[1:].split("+"):
        term = term.strip()
        if term == "1":
            continue
        if not _NAME.fullmatch(term) or keyword.iskeyword(term):
            return None
        if term not in names:
            names.append(term)
    return tuple(names)


@dataclasses.dataclass(frozen=True)
class MainEffectsSpec:
    """R's ``model.matrix`` of a main-effects formula with treatment coding, as formulaic builds
    it: ``Intercept``, then each variable in formula order, a factor as one 0/1 column per
    level after its first (``"timepoint[T.post]"``), a covariate as its values.

    Attributes
    ----------
    terms
        The variables, in formula order.
    levels
        Each factor's levels, baseline first (covariates are absent).

    Examples
    --------
    >>> sheet = pd.DataFrame({"p": ["a", "a", "b", "b"], "t": ["pre", "post"] * 2})
    >>> spec = MainEffectsSpec.of(prepare_design(sheet, "~ p + t", contrast="t,post,pre"))
    >>> spec.get_model_matrix(sheet).columns.tolist()
    ['Intercept', 'p[T.b]', 't[T.post]']
    """

    terms: tuple[str, ...]
    levels: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, prepared: PreparedDesign) -> MainEffectsSpec | None:
        """The spec of a prepared main-effects design whose factor levels are text; None for
        any other design (formulaic builds those)."""
        terms = main_effects(prepared.design)
        if terms is None:
            return None
        levels: dict[str, tuple[str, ...]] = {}
        for name in terms:
            column = prepared.frame[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                categories = tuple(column.cat.categories)
                if not all(isinstance(c, str) for c in categories):
                    return None
                levels[name] = categories
            elif not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
                return None
        return cls(terms=terms, levels=levels)

    def get_model_matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model matrix over ``frame`` (the design's columns; factors as categoricals with
        this spec's levels, or text)."""
        columns: dict[str, np.ndarray] = {"Intercept": np.ones(len(frame))}
        for name in self.terms:
            if name in self.levels:
                values = np.asarray(frame[name].astype(str), dtype=object)
                for level in self.levels[name][1:]:
                    columns[f"{name}[T.{level}]"] = (values == level).astype(np.float64)
            else:
                columns[name] = np.asarray(frame[name], dtype=np.float64)
        return pd.DataFrame(columns, index=frame.index)


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
    if not isinstance(design, str) or not design.strip().startswith("~"):
        raise ValueError(f"design must be a formula string starting with '~', got {design!r}")
    terms = main_effects(design)
    if terms is not None:
        return sorted(set(terms))
    from formulaic import Formula

    try:
        names = Formula(design).required_variables
    except Exception as exc:  # formulaic raises several parser error types
        raise ValueError(f"cannot parse design {design!r}: {exc}") from exc
    return sorted(str(n) for n in names)


def _check_numeric(numeric: Sequence[str], variables: Sequence[str]) -> tuple[str, ...]:
    if isinstance(numeric, str):
        numeric = (numeric,)
    names = tuple(dict.fromkeys(str(n) for n in numeric))
    unknown = [n for n in names if n not in variables]
    if unknown:
        raise ValueError(f"numeric= names {unknown} that are not design variables ({list(variables)})")
    return names


def _decide(
    obs: pd.DataFrame,
    variables: Sequence[str],
    *,
    contrast: tuple[str, str, str] | None,
    keep_categories: bool,
    numeric: Sequence[str],
    notify: bool = True,
) -> tuple[pd.DataFrame, dict[str, list[str]], dict[str, str], tuple[str, ...], tuple[str, ...]]:
    """The frame, the levels, each variable's kind, the integer-coded factors, ``numeric``."""
    variables = list(variables)
    missing = [v for v in variables if v not in obs.columns]
    if missing:
        raise ValueError(
            f"design variable(s) {missing} not in the sample sheet (columns: {list(obs.columns)})"
        )
    keep_numeric = _check_numeric(numeric, variables)
    factor = None
    if contrast is not None:
        factor, level, reference = contrast
        if factor not in variables:
            raise ValueError(f"contrast factor {factor!r} is not in the design ({variables})")
        if factor in keep_numeric:
            raise ValueError(f"contrast factor {factor!r} cannot also be listed in numeric=")
    meta = obs.loc[:, variables].copy()
    levels: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    coded: list[str] = []
    for name in variables:
        column = meta[name]
        if column.isna().any():
            sample = str(column.index[column.isna().to_numpy()][0])
            raise ValueError(f"design variable {name!r} is missing for sample {sample!r}")
        kinds[name] = "factor"
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
            if name in keep_numeric:
                kinds[name] = "numeric (requested)"
                continue
            if not integer_codes(column):
                kinds[name] = "numeric"
                continue  # continuous covariate
            kinds[name] = "factor (integer codes)"
            coded.append(name)
            values = column.astype(np.int64).astype(str)
            present = sorted(values.unique(), key=int)
            (log.warning if notify else log.debug)(
                "design variable %r holds integer codes (%d distinct whole numbers over %d "
                "samples): fitted as a factor with %d levels, not as one continuous slope (R "
                "DESeq2 would fit a slope); to keep it continuous pass numeric=(%r,) (phenoflow "
                "de/normalize: --numeric %s; study manifest: expression.numeric: [%s])",
                name, len(present), len(column), len(present), name, name, name,
            )
        else:
            values = column.astype(str)
            present = sorted(values.unique())
        meta[name] = pd.Categorical(values, categories=present)
        levels[name] = present
    return meta, levels, kinds, tuple(coded), keep_numeric


def prepare_design(
    obs: pd.DataFrame,
    design: str,
    *,
    contrast: str | Sequence[str] | None = None,
    numeric: Sequence[str] = (),
    keep_categories: bool = False,
    notify: bool = True,
) -> PreparedDesign:
    """Validate a design against a sample sheet and decide every variable's kind (the one rule).

    Parameters
    ----------
    obs
        The sample sheet (one row per sample).
    design
        A formula starting with ``~``.
    contrast
        ``(factor, level, reference)`` or ``"factor,level,reference"``: ``factor`` must be a
        design variable holding both levels; it becomes a factor with ``reference`` first.
    numeric
        Integer-coded columns to keep as continuous covariates (see the module docstring).
    keep_categories
        Keep the level order of pandas categorical columns (other than the contrast factor).
    notify
        Log the integer-codes notice as a warning (``False``: at debug level, for a check
        whose caller fits the design later and warns then).

    Returns
    -------
    PreparedDesign
        The frame, levels and kinds.

    Raises
    ------
    ValueError
        An unparsable design, a variable missing from the sheet or for a sample, a contrast
        factor outside the design, a contrast level not present, a level compared with itself,
        or ``numeric`` naming a column that is not a design variable.

    Examples
    --------
    >>> sheet = pd.DataFrame({"patient": [1, 1, 2, 2, 3, 3], "timepoint": ["pre", "post"] * 3})
    >>> prepared = prepare_design(sheet, "~ patient + timepoint", contrast="timepoint,post,pre")
    >>> prepared.kinds["patient"], prepared.levels["patient"]
    ('factor (integer codes)', ['1', '2', '3'])
    """
    contrast_t = None if contrast is None else as_contrast(contrast)
    meta, levels, kinds, coded, keep = _decide(
        obs, design_variables(design), contrast=contrast_t, keep_categories=keep_categories,
        numeric=numeric, notify=notify,
    )
    return PreparedDesign(design=design, frame=meta, levels=levels, kinds=kinds,
                          integer_factors=coded, numeric=keep)


def design_frame(
    obs: pd.DataFrame,
    variables: Sequence[str],
    *,
    contrast: tuple[str, str, str] | None = None,
    keep_categories: bool = False,
    numeric: Sequence[str] = (),
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
    numeric
        Integer-coded columns to keep continuous (see the module docstring).

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
    meta, levels, _, _, _ = _decide(obs, variables, contrast=contrast,
                                    keep_categories=keep_categories, numeric=numeric)
    return meta, levels


def design_matrix(
    obs: pd.DataFrame, design: str, *, numeric: Sequence[str] = ()
) -> np.ndarray:
    """Treatment-coded design matrix of ``design`` over ``obs`` (R's ``model.matrix``).

    Text columns become factors whose levels are sorted (the first is the reference, as in R);
    categorical columns keep their own level order.

    Parameters
    ----------
    obs
        The sample sheet.
    design
        A formula starting with ``~``.
    numeric
        Integer-coded columns to keep continuous (see the module docstring).

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
    return model_matrix(prepare_design(obs, design, keep_categories=True, numeric=numeric))


def model_matrix(prepared: PreparedDesign) -> np.ndarray:
    """Treatment-coded model matrix of a prepared design (R's ``model.matrix``).

    Parameters
    ----------
    prepared
        From :func:`prepare_design`.

    Returns
    -------
    numpy.ndarray
        Samples x coefficients.
    """
    return design_model(prepared)[0]


def design_model(prepared: PreparedDesign) -> tuple[np.ndarray, list[str], Any]:
    """The model matrix of a prepared design with its column names and its spec
    (:class:`MainEffectsSpec` for main-effects formulas, formulaic's model spec otherwise).

    Parameters
    ----------
    prepared
        From :func:`prepare_design`.

    Returns
    -------
    tuple
        ``(matrix, columns, spec)``: samples x coefficients, the coefficient names
        (``"Intercept"``, ``"timepoint[T.post]"``, ...) and the spec :func:`contrast_vector`
        evaluates conditions with.

    Examples
    --------
    >>> sheet = pd.DataFrame({"patient": ["a", "a", "b", "b"], "timepoint": ["pre", "post"] * 2})
    >>> x, names, _ = design_model(prepare_design(sheet, "~ patient + timepoint",
    ...                                           contrast=("timepoint", "post", "pre")))
    >>> names
    ['Intercept', 'patient[T.b]', 'timepoint[T.post]']
    """
    spec: Any = MainEffectsSpec.of(prepared)
    if spec is not None:
        matrix = spec.get_model_matrix(prepared.frame)
    else:
        from formulaic import Formula

        matrix = Formula(prepared.design).get_model_matrix(prepared.frame)
        spec = matrix.model_spec
    return (np.ascontiguousarray(np.asarray(matrix, dtype=np.float64)),
            [str(c) for c in matrix.columns], spec)


def contrast_vector(
    prepared: PreparedDesign, spec: Any, coefficients: Sequence[str],
    contrast: tuple[str, str, str],
) -> np.ndarray:
    """The contrast vector of ``(factor, level, reference)``: the model row of ``level`` minus
    the row of ``reference``, every other factor at its baseline and covariates at 0 (R's
    ``results(contrast = c(factor, level, reference))`` for any two levels).

    Examples
    --------
    >>> sheet = pd.DataFrame({"t": ["a", "b", "c"] * 2, "p": list("xxxyyy")})
    >>> prepared = prepare_design(sheet, "~ p + t", contrast=("t", "b", "a"))
    >>> _, names, spec = design_model(prepared)
    >>> contrast_vector(prepared, spec, names, ("t", "c", "b")).tolist()
    [0.0, 0.0, -1.0, 1.0]
    """
    factor, level, reference = contrast
    frame = prepared.frame
    levels = dict(prepared.levels)

    def row(value: str) -> np.ndarray:
        cells: dict[str, Any] = {}
        for name in frame.columns:
            column = frame[name]
            if name == factor:
                chosen = value
            elif name in levels:
                chosen = levels[name][0]
            else:
                cells[name] = [0.0]
                continue
            if isinstance(column.dtype, pd.CategoricalDtype):
                cells[name] = pd.Categorical([chosen], categories=column.cat.categories)
            else:
                cells[name] = [chosen]
        matrix = spec.get_model_matrix(pd.DataFrame(cells))
        if [str(c) for c in matrix.columns] != [str(c) for c in coefficients]:
            raise ValueError(f"the contrast {contrast} does not map onto the model's "
                             f"coefficients {list(coefficients)}")
        return np.asarray(matrix, dtype=np.float64)[0]

    return row(level) - row(reference)
