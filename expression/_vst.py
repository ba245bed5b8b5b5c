"""DESeq2's variance stabilizing transformations: ``vst()`` (default) and
``varianceStabilizingTransformation`` (``nsub=None``).

R's ``vst(object, blind, nsub = 1000)`` fits the dispersion trend on a subset of genes and then
applies the closed form to every gene: the genes with a mean normalised count above 5, ordered
by that mean (ties keep their order), of which ``nsub`` are taken evenly spaced in rank
(``o[round(seq(1, length(o), length = nsub))]``; no random numbers). This is the default here,
as R users mean it by "vst". ``nsub=None`` fits the trend on all genes (R's
``varianceStabilizingTransformation``, the behaviour before ``nsub`` existed). When fewer than
``nsub`` genes have a mean above 5 (or there are fewer genes than ``nsub``), R's ``vst`` stops
and recommends ``varianceStabilizingTransformation``; here that transform is used, with a logged
warning, and ``uns[key_added]["method"]`` says which transform ran (``"vst"`` or
``"varianceStabilizingTransformation"``; ``uns[key_added]["nsub"]`` is 0 for the latter).

``blind=True`` re-estimates the gene-wise dispersions with the design ``~ 1`` and fits the
trend to them (DESeq2's default); ``blind=False`` uses the trend fitted under the experimental
design (``~ patient + timepoint`` by default). The transformation is the closed form for the
fitted trend, on the log2 scale:

* parametric ``a0 + a1 / mu``:
  ``log2((1 + a1 + 2 a0 q + 2 sqrt(a0 q (1 + a1 + a0 q))) / (4 a0))``,
* mean ``alpha``: ``(2 asinh(sqrt(alpha q)) - log(alpha) - log(4)) / log(2)``,

of the normalised counts ``q``. The dispersion estimation follows R step for step
(:mod:`expression._dispersion`), so the result equals R's to rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from expression._compat import renamed_keywords
from expression._design import design_matrix, model_matrix, prepare_design
from expression._dispersion import (
    DispersionTrend,
    check_fit_type,
    fit_trend_as_requested,
    gene_dispersions,
)
from expression._validate import Orientation

__all__ = ["design_matrix", "vst", "vst_transform"]

log = logging.getLogger(__name__)


#: R's ``vst()`` default subset size.
NSUB = 1000
#: ``vst()`` fits the trend on genes whose mean normalised count is above this.
NSUB_MIN_MEAN = 5.0


def vst_subset(base_mean: np.ndarray, nsub: int) -> np.ndarray | None:
    """The genes R's ``vst(nsub = nsub)`` fits the dispersion trend on, in R's order.

    Parameters
    ----------
    base_mean
        Mean normalised count per gene.
    nsub
        Subset size.

    Returns
    -------
    numpy.ndarray or None
        Gene indices (ordered by increasing mean, as R subsets them), or ``None`` when fewer
        than ``nsub`` genes have a mean above 5 (R's ``vst`` stops there).

    Examples
    --------
    >>> vst_subset(np.arange(10.0), 3).tolist()
    [6, 7, 9]
    """
    base_mean = np.asarray(base_mean, dtype=np.float64)
    above = np.flatnonzero(base_mean > NSUB_MIN_MEAN)
    if base_mean.size < nsub or above.size < nsub:
        return None
    order = above[np.argsort(base_mean[above], kind="stable")]
    n = order.size
    if nsub == 1:
        return order[:1]
    n1 = nsub - 1
    # R's seq(1, n, length = nsub) (ends exact), then round() (half to even, as numpy)
    positions = np.concatenate([[1.0], 1.0 + np.arange(1, n1) * ((n - 1) / n1), [float(n)]])
    return order[np.round(positions).astype(np.int64) - 1]


def vst_transform(normed: np.ndarray, trend: DispersionTrend) -> np.ndarray:
    """The closed-form VST of normalised counts for a fitted trend (log2 scale).

    Parameters
    ----------
    normed
        Normalised counts (any shape).
    trend
        A parametric or mean dispersion trend.

    Returns
    -------
    numpy.ndarray
        Transformed values, same shape.
    """
    q = np.asarray(normed, dtype=np.float64)
    if trend.fit_type == "parametric":
        a0, a1 = trend.asympt_disp, trend.extra_pois
        return np.log((1 + a1 + 2 * a0 * q + 2 * np.sqrt(a0 * q * (1 + a1 + a0 * q))) / (4 * a0)) / np.log(2)
    alpha = trend.mean_disp
    return (2 * np.arcsinh(np.sqrt(alpha * q)) - np.log(alpha) - np.log(4)) / np.log(2)


def _counts_and_obs(
    data: Any, layer: str | None, orientation: Orientation, obs: pd.DataFrame | None
) -> tuple[np.ndarray, Any, pd.DataFrame | None]:
    """Dense samples x genes counts, the AnnData (or None) and its obs."""
    from expression._validate import (
        as_samples_x_genes,
        check_anndata_orientation,
        counts_matrix,
        is_sparse,
        validate_counts,
    )

    if hasattr(data, "obs") and hasattr(data, "layers"):
        from expression._tximport import refuse_length_offsets

        refuse_length_offsets(data, what="vst")
        check_anndata_orientation(data, what="vst", orientation=orientation)
        validate_counts(data, layer=layer, orientation="samples_x_genes")
        matrix = counts_matrix(data, layer=layer)
        dense = is_sparse(matrix)
        matrix = dense if dense is not None else matrix
        matrix = matrix.compute() if hasattr(matrix, "compute") else matrix
        return np.asarray(matrix, dtype=np.float64), data, data.obs
    if np.ndim(data) == 2:
        data = as_samples_x_genes(
            data, what="vst", orientation=orientation,
            samples=None if obs is None else [str(s) for s in obs.index],
        )
    matrix = np.asarray(data.compute() if hasattr(data, "compute") else data)
    if matrix.ndim != 2:
        raise ValueError(f"counts must be a 2-d samples x genes matrix, got shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.number):
        raise ValueError(f"counts must be numeric, got dtype {matrix.dtype}")
    values = matrix.astype(np.float64)
    if not np.isfinite(values).all() or (values < 0).any() or (values != np.round(values)).any():
        raise ValueError("counts must be finite non-negative integers")
    return values, None, None


@renamed_keywords(n_threads="threads")
def vst(
    data: Any,
    *,
    blind: bool = True,
    nsub: int | None = NSUB,
    fit_type: str = "parametric",
    design: str = "~ patient + timepoint",
    size_factors: Any = None,
    obs: pd.DataFrame | None = None,
    layer: str | None = "counts",
    key_added: str = "vst",
    threads: int | None = None,
    numeric: Sequence[str] = (),
    orientation: Orientation = "auto",
) -> Any:
    """DESeq2's variance stabilizing transformation: R's ``vst()`` by default.

    With the default ``nsub=1000`` this is R's ``vst(object, blind, nsub = 1000)``: the trend
    is fitted on 1000 genes with mean normalised count above 5, evenly spaced in mean rank,
    then applied to all genes (see the module docstring). ``nsub=None`` is R's
    ``varianceStabilizingTransformation`` (the trend fitted on all genes).

    Parameters
    ----------
    data
        Samples x genes :class:`anndata.AnnData` (raw counts in ``layers[layer]``) or a samples x
        genes count matrix.
    blind
        Estimate dispersions with the design ``~ 1`` (DESeq2's default). ``False`` uses
        ``design``.
    nsub
        Genes the trend is fitted on (R's ``vst`` default 1000); ``None``: all genes (R's
        ``varianceStabilizingTransformation``). With fewer than ``nsub`` genes whose mean
        normalised count is above 5, all genes are used, with a logged warning (R's ``vst``
        stops there and recommends ``varianceStabilizingTransformation``).
    fit_type
        ``"parametric"`` (``a0 + a1 / mean``) or ``"mean"``. When the parametric fit fails (R
        would switch to a local fit) the mean fit is used, logged and recorded.
    design
        Formula over the sample sheet, used when ``blind=False``.
    size_factors
        Size factors to use; default: DESeq2's median-of-ratios factors.
    obs
        Sample sheet for matrix input with ``blind=False`` (AnnData input uses ``data.obs``).
    layer
        Layer with the raw counts (a missing ``"counts"`` or ``None`` uses ``X``).
    key_added
        Name of the new layer (AnnData input).
    threads
        Numba threads (default :func:`engine.runtime.default_threads`). ``n_threads=`` is a
        deprecated spelling.
    numeric
        With ``blind=False``: integer-coded sample-sheet columns to keep continuous. By default
        a numeric column of whole numbers with 3 or more distinct values, at most one per two
        samples (patient ids ``1..10``), is a factor, with a logged warning; the same rule as
        :func:`expression.differential_expression` (:mod:`expression._design`). Recorded in
        ``uns[key_added]["variables"]``.
    orientation
        ``"auto"`` refuses counts that look genes x samples
        (:class:`expression.OrientationError`); for matrix input ``"genes_x_samples"``
        transposes them with a logged notice; ``"samples_x_genes"`` skips the check.

    Returns
    -------
    numpy.ndarray or None
        The transformed matrix for matrix input; ``None`` for AnnData input, which gets
        ``layers[key_added]`` and ``uns[key_added]`` (parameters and trend coefficients).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> counts = rng.negative_binomial(5, 0.05, size=(6, 1500))
    >>> fast = vst(counts)                 # R: vst(dds)
    >>> full = vst(counts, nsub=None)      # R: varianceStabilizingTransformation(dds)
    >>> fast.shape == full.shape == (6, 1500)
    True

    Raises
    ------
    ValueError
        Unknown ``fit_type``, ``nsub`` not a positive integer, invalid counts, a design that
        does not fit the sample sheet, or
        size factors of the wrong length or not positive.
    """
    from expression._size_factors import fit_size_factors

    check_fit_type(fit_type)
    if nsub is not None and (isinstance(nsub, bool) or not isinstance(nsub, (int, np.integer))
                             or nsub < 1):
        raise ValueError(f"nsub must be a positive integer or None, got {nsub!r}")
    counts, adata, sheet = _counts_and_obs(data, layer, orientation, obs)
    n_samples = counts.shape[0]
    if size_factors is None:
        sf = fit_size_factors(counts, method="ratio").size_factors
    else:
        sf = np.asarray(size_factors, dtype=np.float64).ravel()
        if sf.shape != (n_samples,):
            raise ValueError(f"size_factors has {sf.size} values for {n_samples} samples")
        if not (np.isfinite(sf).all() and (sf > 0).all()):
            raise ValueError("size_factors must be finite and positive")
    design_record: dict[str, Any] = {}
    if blind:
        used_design = "~ 1"
        x = np.ones((n_samples, 1))
    else:
        sheet = obs if obs is not None else sheet
        if sheet is None:
            raise ValueError("blind=False needs a sample sheet: pass an AnnData or obs=")
        if len(sheet) != n_samples:
            raise ValueError(f"obs has {len(sheet)} rows for {n_samples} samples")
        used_design = design
        prepared = prepare_design(sheet, design, numeric=numeric, keep_categories=True)
        design_record = prepared.record()
        x = model_matrix(prepared)
    subset = None
    if nsub is not None:
        subset = vst_subset((counts / sf[:, None]).mean(axis=0), int(nsub))
        if subset is None:
            log.warning(
                "VST: fewer than nsub=%d genes with mean normalised count above 5 (R's vst() "
                "stops here): the trend is fitted on all genes "
                "(varianceStabilizingTransformation)", nsub,
            )
    method = "varianceStabilizingTransformation" if subset is None else "vst"
    fit_counts = counts if subset is None else counts[:, subset]
    genes = gene_dispersions(fit_counts.T, sf, x, threads=threads)
    trend = fit_trend_as_requested(genes.base_mean, genes.dispersions, fit_type=fit_type,
                                   what="VST")
    used_fit = trend.fit_type
    transformed = vst_transform(counts / sf[:, None], trend)
    log.info("VST (%s, %s, design %s): %s", method, used_fit, used_design, trend)
    if adata is None:
        return transformed
    adata.layers[key_added] = transformed
    adata.uns[key_added] = {
        "blind": bool(blind),
        "method": method,
        "nsub": 0 if subset is None else int(nsub),
        "design": used_design,
        "fit_type_requested": fit_type,
        "fit_type": used_fit,
        "asympt_disp": float(trend.asympt_disp),
        "extra_pois": float(trend.extra_pois),
        "mean_disp": float(trend.mean_disp),
        "n_genes_in_fit": int(trend.n_used),
        "layer": "X" if layer is None else layer,
        "size_factors": sf,
        "size_factors_given": size_factors is not None,
        **design_record,
    }
    return None
