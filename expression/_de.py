"""Differential expression as R DESeq2 (paired ``~ patient + timepoint`` by default).

The design's variables are checked against the sample sheet (``adata.obs``), categorical levels
are fixed so the contrast's reference level is the model's baseline (as ``relevel`` in R; both
by :mod:`expression._design`), and the result table uses DESeq2's column names. By default
(``inference="numba"``) phenoflow's own driver runs R's ``DESeq``/``results`` steps on
gene-parallel Numba kernels in R's operation order (:mod:`expression._deseq`; pydeseq2 is not
imported); ``inference="pydeseq2"`` is pydeseq2's default pipeline, for comparison.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from expression._compat import renamed_keywords
from expression._design import (
    as_contrast,
    contrast_vector,
    design_variables,
    parse_contrast,
    prepare_design,
)
from expression._tximport import refuse_length_offsets
from expression._validate import Orientation

__all__ = [
    "DEFit",
    "DEResult",
    "de_file",
    "de_fit",
    "design_variables",
    "differential_expression",
    "parse_contrast",
]

log = logging.getLogger(__name__)

#: DESeq2's ``results()`` columns, in order.
RESULT_COLUMNS = ("baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj")

#: Suffixes :meth:`DEResult.write` writes.
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")

#: Compute back-ends of :func:`differential_expression`.
INFERENCES = ("numba", "pydeseq2")

#: Tests of :meth:`DEFit.results` (R's ``DESeq(test = ...)``).
TESTS = ("Wald", "LRT")

#: pydeseq2 warnings that describe the data rather than a misuse: logged, not raised.
BENIGN_WARNINGS = (
    "As the residual degrees of freedom is less than 3",
    "The dispersion trend curve fitting did not converge",
    "Every gene contains at least one zero",
    "had NaN/infinite values during LFC shrinkage",
)


@dataclass(frozen=True)
class DEResult:
    """The outcome of :func:`differential_expression`.

    Parameters
    ----------
    table
        One row per gene (index = gene id, named ``"gene"``) with DESeq2's columns
        ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj`` (log2 scale), plus
        ``log2FoldChange_shrunk`` when shrinkage was applied.
    params
        A JSON-able record of what was done: design, contrast, alpha, filters, reference
        levels, pydeseq2 version, thread count.
    """

    table: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    def write(self, path: str | PathLike[str]) -> Path:
        """Write the table, gene id first: ``.csv``, ``.tsv`` or ``.parquet``.

        The file is written atomically (a temporary file renamed into place): a failure (a full
        disk, a killed process) leaves the previous file or none, never a truncated table.

        Parameters
        ----------
        path
            Output file; its suffix picks the format.

        Returns
        -------
        Path
            The written file.

        Raises
        ------
        expression.OutputError
            An unsupported suffix.
        """
        from engine.runtime import atomic_path
        from expression._io import OutputError

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in TABLE_SUFFIXES:
            raise OutputError(
                f"unsupported output suffix {path.suffix!r} (.csv, .tsv, .parquet)", path=path
            )
        with atomic_path(path, suffix=suffix) as tmp:
            if suffix == ".parquet":
                self.table.reset_index().to_parquet(tmp, index=False)
            else:
                _write_text_table(self.table, tmp, sep="\t" if suffix == ".tsv" else ",")
        return path


def _write_text_table(table: pd.DataFrame, path: Path, *, sep: str) -> None:
    """The table as CSV/TSV, index first: floats as ``%.17g`` (they read back to the same
    bits), missing values as ``NA``, text quoted where it must be (the ``csv`` module's
    minimal quoting, as pandas). Formats column by column: several times faster than
    ``DataFrame.to_csv`` with a float format, which formats cell by cell."""
    import csv

    def text(column: pd.Series) -> list[str]:
        values = column.to_numpy()
        if values.dtype.kind == "f":
            return ["NA" if v != v else f"{v:.17g}" for v in values.tolist()]
        return ["NA" if v is None or (isinstance(v, float) and v != v) else str(v)
                for v in values.tolist()]

    columns = [text(table.index.to_series())] + [text(table[c]) for c in table.columns]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=sep, lineterminator="\n")
        writer.writerow([table.index.name or "index", *map(str, table.columns)])
        writer.writerows(zip(*columns, strict=True))


@contextmanager
def _pydeseq2_warnings() -> Iterator[None]:
    """Log pydeseq2's known data-describing warnings; re-issue any other warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        text = str(item.message)
        if any(known in text for known in BENIGN_WARNINGS):
            log.warning("pydeseq2: %s", text)
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _single_coefficient(contrast_vector: Any) -> str | None:
    """The LFC column a contrast selects, when it is exactly one coefficient."""
    vector = pd.Series(contrast_vector)
    nonzero = vector[vector != 0]
    if len(nonzero) == 1 and float(nonzero.iloc[0]) == 1.0:
        return str(nonzero.index[0])
    return None


@dataclass(frozen=True)
class DEFit:
    """One DESeq2 fit (size factors, dispersions, coefficients, Cook's refits) from
    :func:`de_fit`, from which :meth:`results` draws any number of result tables, as R's
    ``results(dds, ...)`` does from one ``DESeq(dds)``.

    Parameters
    ----------
    model
        The fitted model: :class:`expression._deseq.DeseqFit` (phenoflow's driver, the
        default), or pydeseq2's :class:`~pydeseq2.dds.DeseqDataSet` (``inference="pydeseq2"``).
    prepared
        The design's prepared sample sheet (:func:`expression.prepare_design`).
    contrast
        The contrast whose reference level is each factor's baseline; the default of
        :meth:`results`.
    params
        What was fitted (design, levels, coefficients, thread count, versions).
    genes
        Gene ids, in the model's order.
    spec
        The model matrix's formulaic spec (contrast vectors are built from it).
    """

    model: Any
    prepared: Any
    contrast: tuple[str, str, str]
    params: dict[str, Any] = field(default_factory=dict)
    genes: Any = None
    spec: Any = None

    @property
    def coefficients(self) -> list[str]:
        """The model's coefficient names (R's ``resultsNames``)."""
        return [str(c) for c in self.params["coefficients"]]

    def results(
        self,
        contrast: Sequence[str] | str | None = None,
        *,
        test: str = "Wald",
        reduced: str | None = None,
        lfc_threshold: float = 0.0,
        alt_hypothesis: str = "greaterAbs",
        alpha: float = 0.1,
        independent_filtering: bool = True,
        cooks_filter: bool = True,
        shrink: bool = False,
    ) -> DEResult:
        """A result table from this fit: R's ``results(dds, contrast = ..., ...)``.

        Parameters
        ----------
        contrast
            ``(factor, level, reference)`` or ``"factor,level,reference"``; any two levels of a
            design factor (the fit's baseline need not be either). Default: the fit's contrast.
            Genes without a count in the two levels' samples get ``log2FoldChange = 0``,
            ``stat = 0`` and ``pvalue = 1``, as R.
        test
            ``"Wald"`` or ``"LRT"`` (R's ``DESeq(test = "LRT", reduced = ...)``: twice the
            log-likelihood difference of the design and ``reduced`` fitted at the design's
            dispersions, chi-squared with the difference in coefficients as degrees of freedom;
            ``log2FoldChange``/``lfcSE`` stay the contrast's Wald estimates, as R's
            ``results(dds, contrast = ...)`` on an LRT fit).
        reduced
            The reduced formula of the LRT (its variables must be design variables, its model
            nested in the design's).
        lfc_threshold
            R's ``lfcThreshold`` (log2 units, >= 0; Wald test only).
        alt_hypothesis
            R's ``altHypothesis``: ``"greaterAbs"`` (default: ``|LFC| > T``), ``"lessAbs"``
            (``|LFC| < T``, needs ``lfc_threshold > 0``), ``"greater"`` (``LFC > T``) or
            ``"less"`` (``LFC < -T``).
        alpha, independent_filtering, cooks_filter, shrink
            As :func:`differential_expression`.

        Returns
        -------
        DEResult
            The table (DESeq2's columns) and a record with the fit's and these options.

        Raises
        ------
        ValueError
            An unknown test or hypothesis, a bad contrast, threshold or alpha, ``reduced``
            missing or given without the LRT, a threshold with the LRT, or a reduced model
            that is not nested in the design.

        Examples
        --------
        >>> fit = de_fit(adata, design="~ patient + time",
        ...              contrast=("time", "t1", "t0"))               # doctest: +SKIP
        >>> t1 = fit.results()                                         # doctest: +SKIP
        >>> t2_t1 = fit.results(("time", "t2", "t1"), lfc_threshold=1)  # doctest: +SKIP
        >>> lrt = fit.results(test="LRT", reduced="~ patient")         # doctest: +SKIP
        """
        from expression._deseq import ALT_HYPOTHESES

        contrast_t = self.contrast if contrast is None else as_contrast(contrast)
        if test not in TESTS:
            raise ValueError(f"test must be one of {TESTS}, got {test!r}")
        if alt_hypothesis not in ALT_HYPOTHESES:
            raise ValueError(
                f"alt_hypothesis must be one of {ALT_HYPOTHESES}, got {alt_hypothesis!r}"
            )
        lfc_threshold = float(lfc_threshold)
        if not (np.isfinite(lfc_threshold) and lfc_threshold >= 0):
            raise ValueError(f"lfc_threshold must be >= 0, got {lfc_threshold}")
        if alt_hypothesis == "lessAbs" and lfc_threshold == 0:
            raise ValueError("alt_hypothesis='lessAbs' needs a positive lfc_threshold")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        thresholded = lfc_threshold > 0 or alt_hypothesis != "greaterAbs"
        if test == "LRT":
            if reduced is None:
                raise ValueError("test='LRT' needs a reduced formula, e.g. reduced='~ patient'")
            if thresholded:
                raise ValueError("tests of log fold change above or below a threshold must be "
                                 "Wald tests (as R)")
        elif reduced is not None:
            raise ValueError("reduced= is only used by test='LRT'")
        factor, level, reference = contrast_t
        levels = dict(self.prepared.levels)
        if factor not in levels:
            raise ValueError(f"contrast factor {factor!r} is not a factor of the design "
                             f"{self.prepared.design!r} (factors: {sorted(levels)})")
        for name in (level, reference):
            if name not in levels[factor]:
                raise ValueError(f"level {name!r} is not a level of {factor!r} "
                                 f"({levels[factor]})")
        if level == reference:
            raise ValueError(f"contrast compares level {level!r} with itself")
        inference = self.params["inference"]
        if inference != "numba" and (test == "LRT" or thresholded):
            raise ValueError("test='LRT' and lfc_threshold/alt_hypothesis need inference='numba'")
        lrt_record: dict[str, Any] = {}
        shrink_note: str | bool = False
        if inference == "numba":
            table, shrink_note, lrt_record = self._driver_results(
                contrast_t, test=test, reduced=reduced, lfc_threshold=lfc_threshold,
                alt_hypothesis=alt_hypothesis, alpha=alpha,
                independent_filtering=independent_filtering, cooks_filter=cooks_filter,
                shrink=shrink,
            )
        else:
            table, shrink_note = self._pydeseq2_results(
                contrast_t, alpha=alpha, independent_filtering=independent_filtering,
                cooks_filter=cooks_filter, shrink=shrink,
            )
        table.index.name = "gene"
        params: dict[str, Any] = {
            "design": self.prepared.design,
            "contrast": list(contrast_t),
            "test": test,
            **lrt_record,
            "lfc_threshold": lfc_threshold,
            "alt_hypothesis": alt_hypothesis,
            "alpha": float(alpha),
            "independent_filtering": bool(independent_filtering),
            "cooks_filter": bool(cooks_filter),
            "shrink": shrink_note,
            **{k: v for k, v in self.params.items() if k not in ("design",)},
            "n_padj_na": int(table["padj"].isna().sum()),
            "n_significant": int((table["padj"] < alpha).sum()),
        }
        log.info("DE (%s%s): %d genes with padj < %g", test,
                 f" vs {reduced}" if reduced else "", params["n_significant"], alpha)
        return DEResult(table=table, params=params)

    def _driver_results(
        self, contrast_t: tuple[str, str, str], *, test: str, reduced: str | None,
        lfc_threshold: float, alt_hypothesis: str, alpha: float, independent_filtering: bool,
        cooks_filter: bool, shrink: bool,
    ) -> tuple[pd.DataFrame, str | bool, dict[str, Any]]:
        """The table from phenoflow's own DESeq2 driver (:mod:`expression._deseq`)."""
        from expression._deseq import lrt_test, shrink_lfc, wald_results

        fit = self.model
        factor, level, reference = contrast_t
        vector = contrast_vector(self.prepared, self.spec, fit.coefficients, contrast_t)
        samples = self.prepared.frame[factor].astype(str).isin([level, reference]).to_numpy()
        lrt = None
        lrt_record: dict[str, Any] = {}
        if test == "LRT":
            matrix = _reduced_matrix(self.prepared, str(reduced), fit.design)
            stat, pvalue, df = lrt_test(fit, matrix, threads=self.params["n_cpus"])
            lrt = (stat, pvalue)
            lrt_record = {"reduced": str(reduced), "lrt_df": int(df)}
        cols = wald_results(
            fit, vector, contrast_samples=samples, lfc_threshold=lfc_threshold,
            alt_hypothesis=alt_hypothesis, lrt=lrt, alpha=alpha,
            independent_filtering=independent_filtering, cooks_filter=cooks_filter,
        )
        table = pd.DataFrame(
            {"baseMean": cols.base_mean, "log2FoldChange": cols.log2_fold_change,
             "lfcSE": cols.lfc_se, "stat": cols.stat, "pvalue": cols.pvalue,
             "padj": cols.padj},
            index=self.genes,
        )
        shrink_note: str | bool = False
        if shrink:
            coeff = _single_coefficient(pd.Series(vector, index=list(fit.coefficients)))
            if coeff is None:
                shrink_note = "skipped: contrast is not a single model coefficient"
                log.warning("LFC shrinkage %s", shrink_note)
            else:
                index = list(fit.coefficients).index(coeff)
                table["log2FoldChange_shrunk"] = shrink_lfc(fit, index, cols.se_natural)
                shrink_note = f"apeGLM prior on {coeff}"
        return table, shrink_note, lrt_record

    def _pydeseq2_results(
        self, contrast_t: tuple[str, str, str], *, alpha: float, independent_filtering: bool,
        cooks_filter: bool, shrink: bool,
    ) -> tuple[pd.DataFrame, str | bool]:
        """The table from pydeseq2's own ``DeseqStats`` (``inference="pydeseq2"``)."""
        from pydeseq2.ds import DeseqStats

        with _pydeseq2_warnings():
            stats = DeseqStats(
                self.model, contrast=list(contrast_t), alpha=alpha, cooks_filter=cooks_filter,
                independent_filter=independent_filtering, quiet=True,
                n_cpus=self.params["n_cpus"],
            )
            stats.summary()
            table = stats.results_df.loc[:, list(RESULT_COLUMNS)].copy()
            shrink_note: str | bool = False
            if shrink:
                coeff = _single_coefficient(stats.contrast_vector)
                if coeff is None:
                    shrink_note = "skipped: contrast is not a single model coefficient"
                    log.warning("LFC shrinkage %s", shrink_note)
                else:
                    stats.lfc_shrink(coeff=coeff)
                    table["log2FoldChange_shrunk"] = stats.LFC[coeff].to_numpy() / np.log(2)
                    shrink_note = f"apeGLM prior on {coeff}"
        return table, shrink_note


def _reduced_matrix(prepared: Any, reduced: str, full: np.ndarray) -> np.ndarray:
    """The reduced model's matrix over the design's prepared sheet, checked to be nested."""
    import dataclasses

    from expression._design import model_matrix

    outside = sorted(set(design_variables(reduced)) - set(design_variables(prepared.design)))
    if outside:
        raise ValueError(f"the reduced formula {reduced!r} uses {outside}, which are not "
                         f"variables of the design {prepared.design!r}")
    matrix = model_matrix(dataclasses.replace(prepared, design=reduced))
    full = np.asarray(full, dtype=np.float64)
    if matrix.shape[1] >= full.shape[1]:
        raise ValueError(f"the reduced formula {reduced!r} has {matrix.shape[1]} coefficients, "
                         f"the design {full.shape[1]}: the LRT needs fewer")
    if np.linalg.matrix_rank(np.hstack([full, matrix])) > np.linalg.matrix_rank(full):
        raise ValueError(f"the reduced model {reduced!r} is not nested in the design "
                         f"{prepared.design!r}")
    return matrix


@renamed_keywords(n_cpus="threads")
def de_fit(
    adata: Any,
    *,
    design: str = "~ patient + timepoint",
    contrast: Sequence[str] = ("timepoint", "post", "pre"),
    layer: str = "counts",
    threads: int | None = None,
    inference: str = "numba",
    numeric: Sequence[str] = (),
    orientation: Orientation = "auto",
    fit_type: str = "parametric",
) -> DEFit:
    """Fit DESeq2's model once (R's ``DESeq(dds)``); draw results with :meth:`DEFit.results`.

    Parameters
    ----------
    adata, design, layer, threads, inference, numeric, orientation, fit_type
        As :func:`differential_expression`.
    contrast
        ``(factor, level, reference)``: ``reference`` becomes the factor's baseline level (R's
        ``relevel``) and this is the default contrast of :meth:`DEFit.results`; any other pair
        of levels can be asked for from the same fit.

    Returns
    -------
    DEFit
        The fitted model.

    Raises
    ------
    ValueError
        As :func:`differential_expression`.

    Examples
    --------
    >>> fit = de_fit(adata, design="~ patient + time", contrast=("time", "t1", "t0"))  # doctest: +SKIP
    >>> tables = {c: fit.results(("time", c, "t0")) for c in ("t1", "t2")}           # doctest: +SKIP
    """
    from engine.runtime import default_threads
    from expression._design import design_model
    from expression._dispersion import check_fit_type
    from expression._validate import (
        check_anndata_orientation,
        counts_matrix,
        is_sparse,
        validate_counts,
    )

    if inference not in INFERENCES:
        raise ValueError(f"inference must be one of {INFERENCES}, got {inference!r}")
    check_fit_type(fit_type)
    contrast_t = as_contrast(tuple(contrast) if not isinstance(contrast, str) else contrast)
    refuse_length_offsets(adata, what="differential_expression")
    check_anndata_orientation(adata, what="differential_expression", orientation=orientation)
    prepared = prepare_design(adata.obs, design, contrast=contrast_t, numeric=numeric)
    meta, levels = prepared.frame, dict(prepared.levels)
    validate_counts(adata, layer=layer, orientation="samples_x_genes")
    matrix = counts_matrix(adata, layer=layer)
    dense = is_sparse(matrix)
    matrix = dense if dense is not None else matrix
    matrix = np.asarray(matrix.compute() if hasattr(matrix, "compute") else matrix)
    genes = pd.Index([str(g) for g in adata.var_names], name="gene")
    used_threads = default_threads(threads)
    log.info(
        "DE: %d samples x %d genes, design %s, contrast %s, %d worker(s)",
        matrix.shape[0], matrix.shape[1], design, contrast_t, used_threads,
    )
    spec = None
    record: dict[str, Any] = {}
    if inference == "numba":
        from expression._deseq import deseq

        x, columns, spec = design_model(prepared)
        model = deseq(matrix.astype(np.int64), x, columns, threads=used_threads,
                      fit_type=fit_type)
        coefficients = list(columns)
        trend = {k: (None if isinstance(v, float) and v != v else v)  # JSON: no NaN
                 for k, v in model.trend.to_dict().items()}
        record = {"dispersion_trend": {**trend, "requested": fit_type}}
    else:
        import pydeseq2
        from pydeseq2.dds import DeseqDataSet

        counts = pd.DataFrame(matrix.astype(np.int64), index=meta.index.astype(str),
                              columns=genes)
        meta.index = counts.index
        with _pydeseq2_warnings():
            model = DeseqDataSet(
                counts=counts, metadata=meta, design=design, refit_cooks=True,
                n_cpus=used_threads, quiet=True, fit_type=fit_type,
            )
            model.deseq2()
        coefficients = [str(c) for c in model.varm["LFC"].columns]
        record = {"pydeseq2_version": str(pydeseq2.__version__)}
    params: dict[str, Any] = {
        "design": design,
        **prepared.record(),
        "reference_levels": {name: lv[0] for name, lv in levels.items()},
        "levels": levels,
        "coefficients": coefficients,
        "n_samples": int(matrix.shape[0]),
        "n_genes": int(matrix.shape[1]),
        "n_cpus": used_threads,
        "inference": inference,
        **record,
    }
    return DEFit(model=model, prepared=prepared, contrast=contrast_t, params=params,
                 genes=genes, spec=spec)


@renamed_keywords(n_cpus="threads")
def differential_expression(
    adata: Any,
    *,
    design: str = "~ patient + timepoint",
    contrast: Sequence[str] = ("timepoint", "post", "pre"),
    alpha: float = 0.1,
    independent_filtering: bool = True,
    cooks_filter: bool = True,
    layer: str = "counts",
    threads: int | None = None,
    shrink: bool = False,
    inference: str = "numba",
    numeric: Sequence[str] = (),
    orientation: Orientation = "auto",
    test: str = "Wald",
    reduced: str | None = None,
    lfc_threshold: float = 0.0,
    alt_hypothesis: str = "greaterAbs",
    fit_type: str = "parametric",
) -> DEResult:
    """Differential expression as R DESeq2 (``DESeq`` + ``results``): Wald test
    (optionally against a log2 fold-change threshold) or likelihood-ratio test.

    One call fits the model and makes one table; for several contrasts or tests from one fit
    use :func:`de_fit` and :meth:`DEFit.results`.

    Parameters
    ----------
    adata
        Samples x genes :class:`anndata.AnnData` with raw counts in ``layers[layer]`` and the
        sample sheet in ``obs``.
    design
        A formula over ``obs`` columns; the default is the paired pre/post design.
    contrast
        ``(factor, level, reference)``: log2 fold changes are ``level`` over ``reference``; the
        reference becomes the factor's first (baseline) level.
    alpha
        Significance level for independent filtering (DESeq2 default 0.1).
    independent_filtering
        Filter low-mean genes to maximise rejections at ``alpha`` (``padj`` NA for them).
    cooks_filter
        Set p-values of genes with Cook's-distance outliers to NA.
    layer
        The raw-count layer (falls back to ``X`` when ``"counts"`` is absent).
    threads
        Numba threads (or pydeseq2 worker processes); default
        :func:`engine.runtime.default_threads`. ``n_cpus=`` is a deprecated spelling (the
        count used is still recorded as ``params["n_cpus"]``).
    shrink
        Add ``log2FoldChange_shrunk`` (pydeseq2's apeGLM-style prior) when the contrast is a
        single model coefficient; otherwise it is skipped and ``params["shrink"]`` says why.
    inference
        ``"numba"`` (default): R DESeq2's dispersion, trend, MAP, IRLS and Wald steps in Numba
        kernels, driven by phenoflow's own DESeq2 driver (:mod:`expression._deseq`);
        ``"pydeseq2"``: pydeseq2's default
        inference and orchestration (Wald tests without threshold only).
    numeric
        Integer-coded columns of ``obs`` to fit as continuous covariates. By default a numeric
        column of whole numbers with 3 or more distinct values, at most one per two samples
        (patient ids ``1..10`` of a paired design, batch codes), is fitted as a factor, with a
        logged warning (R DESeq2 would fit one slope over the codes); see
        :mod:`expression._design`. ``params["variables"]`` records each variable's kind.
    orientation
        ``"auto"`` refuses an AnnData whose observations look like genes
        (:class:`expression.OrientationError`: pass ``adata.T``); ``"samples_x_genes"`` skips
        the check.
    test
        ``"Wald"`` (default) or ``"LRT"`` (R's ``DESeq(dds, test = "LRT", reduced = ...)``; the
        ``stat`` column is the LRT statistic, ``log2FoldChange`` the contrast's estimate).
    reduced
        The LRT's reduced formula, e.g. ``"~ patient"``.
    lfc_threshold, alt_hypothesis
        R's ``results(lfcThreshold, altHypothesis)`` for the Wald test: ``"greaterAbs"``
        (default), ``"lessAbs"``, ``"greater"`` or ``"less"`` (see :meth:`DEFit.results`).
    fit_type
        The dispersion trend: ``"parametric"`` (R's default) or ``"mean"`` (R's
        ``fitType="mean"``). Where the parametric trend cannot be fitted R switches to a local
        regression, which phenoflow does not implement: the fit is then refused with a
        ``ValueError`` that names ``fit_type="mean"`` as the way on, never replaced silently.
        ``params["dispersion_trend"]`` records the fit.

    Returns
    -------
    DEResult
        The per-gene table and the parameters used.

    Raises
    ------
    ValueError
        On an unparsable design, design variables missing from ``obs`` (or with missing
        values), a contrast whose factor is not in the design or whose levels do not exist,
        ``numeric`` naming a column outside the design, ``alpha`` outside (0, 1), an unknown
        test or hypothesis, a missing or non-nested reduced formula, or invalid counts
        (:class:`expression.CountsError`). Test options are checked before the fit.

    Examples
    --------
    >>> res = differential_expression(adata, design="~ type + condition",
    ...                               contrast=("condition", "treated", "untreated"),
    ...                               test="LRT", reduced="~ type")  # doctest: +SKIP
    >>> res.table["padj"].lt(0.1).sum()                              # doctest: +SKIP
    """
    _check_test_options(test, reduced, lfc_threshold, alt_hypothesis, alpha, inference, design)
    fit = de_fit(adata, design=design, contrast=contrast, layer=layer, threads=threads,
                 inference=inference, numeric=numeric, orientation=orientation,
                 fit_type=fit_type)
    return fit.results(
        test=test, reduced=reduced, lfc_threshold=lfc_threshold, alt_hypothesis=alt_hypothesis,
        alpha=alpha, independent_filtering=independent_filtering, cooks_filter=cooks_filter,
        shrink=shrink,
    )


def _check_test_options(
    test: str, reduced: str | None, lfc_threshold: float, alt_hypothesis: str, alpha: float,
    inference: str, design: str,
) -> None:
    """Refuse bad test options before any fitting."""
    from expression._deseq import ALT_HYPOTHESES

    if inference not in INFERENCES:
        raise ValueError(f"inference must be one of {INFERENCES}, got {inference!r}")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    if alt_hypothesis not in ALT_HYPOTHESES:
        raise ValueError(f"alt_hypothesis must be one of {ALT_HYPOTHESES}, got {alt_hypothesis!r}")
    if not (np.isfinite(float(lfc_threshold)) and float(lfc_threshold) >= 0):
        raise ValueError(f"lfc_threshold must be >= 0, got {lfc_threshold}")
    if alt_hypothesis == "lessAbs" and float(lfc_threshold) == 0:
        raise ValueError("alt_hypothesis='lessAbs' needs a positive lfc_threshold")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    thresholded = float(lfc_threshold) > 0 or alt_hypothesis != "greaterAbs"
    if test == "LRT":
        if reduced is None:
            raise ValueError("test='LRT' needs a reduced formula, e.g. reduced='~ patient'")
        if thresholded:
            raise ValueError("tests of log fold change above or below a threshold must be "
                             "Wald tests (as R)")
        outside = sorted(set(design_variables(reduced)) - set(design_variables(design)))
        if outside:
            raise ValueError(f"the reduced formula {reduced!r} uses {outside}, which are not "
                             f"variables of the design {design!r}")
    elif reduced is not None:
        raise ValueError("reduced= is only used by test='LRT'")
    if inference != "numba" and (test == "LRT" or thresholded):
        raise ValueError("test='LRT' and lfc_threshold/alt_hypothesis need inference='numba'")


def de_file(
    counts: str | PathLike[str],
    *,
    samples: str | PathLike[str],
    out: str | PathLike[str],
    design: str = "~ patient + timepoint",
    contrast: str | Sequence[str] = "timepoint,post,pre",
    alpha: float = 0.1,
    inference: str = "numba",
    shrink: bool = False,
    numeric: Sequence[str] = (),
    test: str = "Wald",
    reduced: str | None = None,
    lfc_threshold: float = 0.0,
    alt_hypothesis: str = "greaterAbs",
    fit_type: str = "parametric",
) -> DEResult:
    """Read counts and a sample sheet, run :func:`differential_expression`, write the table.

    The output path (suffix, folder, writability), the inference and alpha are checked before
    anything is read or computed, and the design and contrast before the fit; the table is
    written atomically.

    Parameters
    ----------
    counts
        Count file (any format :func:`expression.read_counts` reads).
    samples
        Sample sheet (first column = sample id).
    out
        Output ``.csv``, ``.tsv`` or ``.parquet``.
    design
        Model formula.
    contrast
        ``"factor,level,reference"`` or a 3-sequence.
    alpha
        Significance level for independent filtering.
    inference
        ``"numba"`` (phenoflow's R-faithful kernels, default) or ``"pydeseq2"`` (its default).
    shrink
        Add ``log2FoldChange_shrunk`` (see :func:`differential_expression`).
    numeric
        Integer-coded design columns to keep continuous (see :func:`differential_expression`).
    test, reduced, lfc_threshold, alt_hypothesis
        The test, as :func:`differential_expression` (``"LRT"`` with a ``reduced`` formula;
        a log2 fold-change threshold with R's alternative hypotheses for the Wald test).
    fit_type
        The dispersion trend, as :func:`differential_expression`.

    Returns
    -------
    DEResult
        The result that was written.

    Raises
    ------
    expression.OutputError
        ``out`` has an unsupported suffix, its folder does not exist or cannot be written
        (before any work).
    ValueError
        A bad contrast, alpha, inference, design or counts (before the fit).
    """
    import threading

    from expression._dispersion import check_fit_type
    from expression._io import check_output, read_count_table

    if inference == "numba":  # Numba's cache loads overlap the imports and the reading
        from expression._deseq import warm_kernels

        threading.Thread(target=warm_kernels, name="phenoflow-warm-kernels", daemon=True).start()
    parsed = as_contrast(contrast)
    _check_test_options(test, reduced, lfc_threshold, alt_hypothesis, alpha, inference, design)
    check_fit_type(fit_type)
    design_variables(design)
    target = check_output(out, suffixes=TABLE_SUFFIXES, what="DE table")
    adata = read_count_table(counts, samples=samples)
    result = differential_expression(
        adata, design=design, contrast=parsed, alpha=alpha, inference=inference, shrink=shrink,
        numeric=numeric, test=test, reduced=reduced, lfc_threshold=lfc_threshold,
        alt_hypothesis=alt_hypothesis, fit_type=fit_type,
    )
    result.write(target)
    return result
