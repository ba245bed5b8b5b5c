"""DESeq2's variance stabilizing transformation (``varianceStabilizingTransformation``).

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
from expression._dispersion import DispersionTrend, TrendFitError, fit_trend, gene_dispersions
from expression._validate import Orientation

__all__ = ["design_matrix", "vst", "vst_transform"]

log = logging.getLogger(__name__)

FIT_TYPES = ("parametric", "mean")


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
    """DESeq2's variance stabilizing transformation.

    Parameters
    ----------
    data
        Samples x genes :class:`anndata.AnnData` (raw counts in ``layers[layer]``) or a samples x
        genes count matrix.
    blind
        Estimate dispersions with the design ``~ 1`` (DESeq2's default). ``False`` uses
        ``design``.
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

    Raises
    ------
    ValueError
        Unknown ``fit_type``, invalid counts, a design that does not fit the sample sheet, or
        size factors of the wrong length or not positive.
    """
    from expression._size_factors import fit_size_factors

    if fit_type not in FIT_TYPES:
        raise ValueError(f"fit_type must be one of {FIT_TYPES}, got {fit_type!r}")
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
    genes = gene_dispersions(counts.T, sf, x, threads=threads)
    used_fit = fit_type
    try:
        trend = fit_trend(genes.base_mean, genes.dispersions, fit_type=fit_type)
    except TrendFitError as exc:
        if fit_type != "parametric":
            raise
        log.warning("VST: parametric dispersion trend failed (%s); using the mean fit", exc)
        trend = fit_trend(genes.base_mean, genes.dispersions, fit_type="mean")
        used_fit = "mean"
    transformed = vst_transform(counts / sf[:, None], trend)
    log.info("VST (%s, design %s): %s", used_fit, used_design, trend)
    if adata is None:
        return transformed
    adata.layers[key_added] = transformed
    adata.uns[key_added] = {
        "blind": bool(blind),
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
