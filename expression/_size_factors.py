"""DESeq2 size factors, reproduced exactly (median-of-ratios, ``poscounts``, frozen geometric means).

The definitions follow R DESeq2's documented ``estimateSizeFactorsForMatrix`` and
``estimateSizeFactors(type="poscounts")``:

* ``ratio``: ``log_geo_means[g] = mean_j log(counts[j, g])`` (``-inf`` where the gene has a zero);
  each sample's factor is ``exp(median(log(counts[j, g]) - log_geo_means[g]))`` over the genes
  with a finite log geometric mean and a positive count in that sample.
* ``poscounts``: the geometric mean of each gene uses only its positive counts but divides by
  the number of samples (``exp(sum(log(positive counts)) / n)``; all-zero genes get 0); these are
  then used as incoming geometric means, so the factors are rescaled to geometric mean 1.
* incoming ``geo_means`` (e.g. frozen from a reference data set): the ratios use them, and the
  factors are rescaled to geometric mean 1, as R does.

Sums of logarithms are accumulated sample by sample in extended precision (R's ``rowMeans``
and ``sum`` use a long double accumulator), and medians are exact order statistics, so the
result does not depend on how a Dask array is chunked.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from expression._validate import CountsError, Orientation, as_samples_x_genes, is_dask

__all__ = ["SizeFactorFit", "fit_size_factors", "log_geo_means", "size_factors"]

log = logging.getLogger(__name__)

Method = Literal["ratio", "poscounts"]
METHODS: tuple[str, ...] = ("ratio", "poscounts")
R_ALL_ZERO = "every gene contains at least one zero, cannot compute log geometric means"


@dataclass(frozen=True)
class SizeFactorFit:
    """Size factors and the per-gene quantities they came from.

    Attributes
    ----------
    size_factors
        One factor per sample.
    log_geo_means
        Per-gene log geometric means used for the ratios (``-inf`` where unusable).
    used
        Per-gene mask of the genes that entered the ratios (finite log geometric mean and, when
        given, a control gene).
    method
        ``"ratio"`` or ``"poscounts"``.
    rescaled
        Whether the factors were rescaled to geometric mean 1 (incoming geometric means).
    """

    size_factors: np.ndarray
    log_geo_means: np.ndarray
    used: np.ndarray
    method: str
    rescaled: bool


_BAND_BYTES = 256 << 20  # largest band of whole rows a worker holds for the medians
_ROWS_AT_ONCE = 64  # rows converted to float64 at a time inside a chunk


def _partial_logs(block: np.ndarray, *, method: str) -> np.ndarray:
    """Per-gene sums of the finite ``log(counts)`` over the chunk's samples, whether any count
    is zero and whether any is positive, as a ``(3, genes)`` long double block.

    The sums are long double, sample by sample, as in memory. Zeros are kept out of them (the
    mask says where they were): summing ``-inf`` in long double was six times slower. The
    temporaries are two buffers reused for every group of rows: a Dask worker returns freed
    memory to the system at once, so fresh temporaries cost page faults each time.
    """
    genes = block.shape[1]
    total = np.zeros(genes, dtype=np.longdouble)
    zero = np.zeros(genes, dtype=bool)
    positive = np.zeros(genes, dtype=bool)
    values = np.empty((min(_ROWS_AT_ONCE, block.shape[0]), genes))
    flags = np.empty(values.shape, dtype=bool)
    with np.errstate(divide="ignore"):
        for start in range(0, block.shape[0], _ROWS_AT_ONCE):
            rows = values[: min(_ROWS_AT_ONCE, block.shape[0] - start)]
            mask = flags[: len(rows)]
            np.copyto(rows, block[start:start + len(rows)], casting="unsafe")
            zero |= np.equal(rows, 0, out=mask).any(axis=0)
            positive |= np.greater(rows, 0, out=mask).any(axis=0)
            np.log(rows, out=rows)
            rows[~np.isfinite(rows, out=mask)] = 0.0  # zeros are accounted for by the mask
            for row in rows:
                total += row
    out = np.empty((3, genes), dtype=np.longdouble)
    out[0] = total
    out[1] = zero
    out[2] = positive
    return out


def _median_in_place(values: np.ndarray) -> float:
    """R's ``median`` (see :func:`r_median`), partitioning ``values``
    itself instead of a copy."""
    n = values.size
    half = (n + 1) // 2
    if n % 2:
        values.partition(half - 1)
        return float(values[half - 1])
    values.partition([half - 1, half])
    return float((np.longdouble(values[half - 1]) + np.longdouble(values[half])) / 2)


def _band_log_medians(block: np.ndarray, lgm: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per-sample median of log ratios over the genes ``cols`` (``lgm`` their log geometric
    means) of a band of whole rows, one sample at a time in reused buffers."""
    out = np.empty(block.shape[0], dtype=np.float64)
    counts = np.empty(cols.size, dtype=block.dtype)
    values = np.empty(cols.size)
    kept = np.empty(cols.size)
    means = np.empty(cols.size)
    keep = np.empty(cols.size, dtype=bool)
    for i in range(block.shape[0]):
        np.take(block[i], cols, out=counts)
        np.copyto(values, counts, casting="unsafe")
        np.greater(values, 0, out=keep)
        k = int(np.count_nonzero(keep))
        if not k:
            out[i] = np.nan
            continue
        v, m = kept[:k], means[:k]
        np.compress(keep, values, out=v)
        np.compress(keep, lgm, out=m)
        np.log(v, out=v)
        np.subtract(v, m, out=v)
        out[i] = _median_in_place(v)
    return out


def _log_geo_means_chunked(counts: Any, *, method: str) -> np.ndarray:
    """:func:`expression.log_geo_means` of a Dask matrix, in one pass over its own chunks."""
    import dask.array as da

    n_samples = counts.shape[0]
    partial = da.map_blocks(
        _partial_logs, counts, method=method, chunks=((3,) * len(counts.chunks[0]), counts.chunks[1]),
        dtype=np.longdouble, meta=np.array((), dtype=np.longdouble).reshape(0, 0),
    ).compute()
    acc = np.zeros(counts.shape[1], dtype=np.longdouble)
    zero = np.zeros(counts.shape[1], dtype=bool)
    positive = np.zeros(counts.shape[1], dtype=bool)
    for r in range(0, partial.shape[0], 3):  # chunk by chunk, in sample order
        acc += partial[r]
        zero |= partial[r + 1] > 0
        positive |= partial[r + 2] > 0
    if method == "ratio":  # R rowMeans(log(counts)): -inf for a gene with a zero
        return np.where(zero, -np.inf, np.asarray(acc / n_samples, dtype=np.float64))
    with np.errstate(divide="ignore"):
        return np.log(np.where(positive, np.exp(np.asarray(acc, dtype=np.float64) / n_samples), 0.0))


def _row_bands(counts: Any) -> Any:
    """``counts`` as bands of whole rows: the input's sample chunks with the gene chunks
    concatenated (nothing split), or narrower bands when a row chunk is too large."""
    row_bytes = counts.shape[1] * counts.dtype.itemsize
    widest = max(1, _BAND_BYTES // max(row_bytes, 1))
    rows = counts.chunks[0] if max(counts.chunks[0]) <= widest else widest
    return counts.rechunk({0: rows, 1: -1})


def _log_geo_meansblock(block: np.ndarray, *, method: str) -> np.ndarray:
    """Per-gene log geometric means of a block holding every sample (samples x genes)."""
    n = block.shape[0]
    acc = np.zeros(block.shape[1], dtype=np.longdouble)
    with np.errstate(divide="ignore"):
        for row in block:
            logs = np.log(np.asarray(row, dtype=np.float64))
            acc += logs if method == "ratio" else np.where(np.isfinite(logs), logs, 0.0)
    if method == "ratio":
        return np.asarray(acc / n, dtype=np.float64)  # R rowMeans(log(counts))
    any_positive = (np.asarray(block) > 0).any(axis=0)
    with np.errstate(divide="ignore"):
        geo = np.where(any_positive, np.exp(np.asarray(acc, dtype=np.float64) / n), 0.0)
        return np.log(geo)  # R: log(geoMeans) of exp(sum(log(x[x > 0])) / length(x))


def log_geo_means(
    counts: Any, *, method: Method = "ratio", orientation: Orientation = "auto"
) -> np.ndarray:
    """Per-gene log geometric means as DESeq2 uses them.

    Parameters
    ----------
    counts
        Samples x genes counts: numpy array, pandas DataFrame or ``dask.array``.
    method
        ``"ratio"`` (``-inf`` for genes with any zero) or ``"poscounts"`` (zeros skipped in the
        sum, ``-inf`` only for all-zero genes).
    orientation
        ``"auto"`` refuses a matrix that looks genes x samples
        (:class:`expression.OrientationError`); ``"genes_x_samples"`` transposes it;
        ``"samples_x_genes"`` skips the check.

    Returns
    -------
    numpy.ndarray
        One float64 per gene.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    counts = as_samples_x_genes(counts, what="log_geo_means", orientation=orientation)
    return _log_geo_means(counts, method=method)


def _log_geo_means(counts: Any, *, method: str) -> np.ndarray:
    if is_dask(counts):  # one pass over the input's own chunks (out of core)
        return _log_geo_means_chunked(counts, method=method)
    return _log_geo_meansblock(np.asarray(counts), method=method)


def r_median(values: np.ndarray) -> float:
    """R's ``median``: the middle order statistic, or the long-double mean of the two middle ones."""
    n = values.size
    half = (n + 1) // 2
    if n % 2:
        return float(np.partition(values, half - 1)[half - 1])
    part = np.partition(values, [half - 1, half])
    return float((np.longdouble(part[half - 1]) + np.longdouble(part[half])) / 2)


def _log_medians_block(
    block: np.ndarray, lgm: np.ndarray, cols: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample median of log ratios over the given genes (``block`` holds every such gene,
    or all genes with ``cols`` choosing them)."""
    out = np.empty(block.shape[0], dtype=np.float64)
    for i in range(block.shape[0]):  # one sample at a time: no float64 copy of the block
        row = np.asarray(block[i] if cols is None else block[i, cols], dtype=np.float64)
        keep = row > 0
        out[i] = r_median(np.log(row[keep]) - lgm[keep]) if keep.any() else np.nan
    return out


def r_exp(x: np.ndarray) -> np.ndarray:
    """``exp`` as R computes it (the C library's, which :func:`math.exp` calls); numpy's
    vectorised ``exp`` differs from it in the last bit for some inputs, and one ulp of a size
    factor can tip R's knife-edge dispersion line searches downstream."""
    return np.array([math.exp(v) for v in np.asarray(x, dtype=np.float64).ravel()],
                    dtype=np.float64).reshape(np.shape(x))


def size_factors_from_log_medians(log_med: np.ndarray, *, n_genes_used: int,
                                  sample_names: Any, incoming: bool) -> np.ndarray:
    """``exp`` of each sample's median log ratio (R's C-library ``exp``), rescaled to geometric
    mean 1 when the geometric means came in; a sample without a usable ratio is an error."""
    bad = np.flatnonzero(~np.isfinite(log_med))
    if bad.size:
        name = str(sample_names[bad[0]]) if sample_names is not None else f"#{bad[0]}"
        raise CountsError(
            f"sample {name} has no positive count among the {n_genes_used} genes usable for "
            "size factors", sample=name,
        )
    sf = r_exp(log_med)
    if incoming:
        sf = sf / np.exp(float(np.mean(np.log(sf), dtype=np.longdouble)))
    return sf


def gene_selection(control_genes: Any, n_genes: int) -> np.ndarray:
    if control_genes is None:
        return np.ones(n_genes, dtype=bool)
    sel = np.asarray(control_genes)
    if sel.dtype == bool:
        if sel.shape != (n_genes,):
            raise ValueError(f"control_genes mask has shape {sel.shape}, expected ({n_genes},)")
        return sel
    if not np.issubdtype(sel.dtype, np.integer):
        raise TypeError("control_genes must be integer positions or a boolean mask")
    mask = np.zeros(n_genes, dtype=bool)
    mask[sel] = True
    return mask



def usable_genes(lgm: np.ndarray, control_genes: Any, n_genes: int) -> np.ndarray:
    """Mask of the genes size factors use: a finite log geometric mean, among ``control_genes``.

    Raises R DESeq2's error when no gene has a finite log geometric mean.
    """
    if lgm.shape != (n_genes,):
        raise ValueError(f"geometric means have shape {lgm.shape}, expected ({n_genes},)")
    if not np.isfinite(lgm).any():
        raise CountsError(
            f"{R_ALL_ZERO} (R DESeq2's error); use method='poscounts' for sparse data "
            "where every gene has a zero in some sample"
        )
    return np.isfinite(lgm) & gene_selection(control_genes, n_genes)

def fit_size_factors(
    counts: Any,
    *,
    method: Method = "ratio",
    geo_means: Any = None,
    log_geo_means: Any = None,
    control_genes: Any = None,
    sample_names: Any = None,
    orientation: Orientation = "auto",
) -> SizeFactorFit:
    """Size factors exactly as R DESeq2, with the per-gene quantities behind them.

    Parameters
    ----------
    counts
        Samples x genes raw counts: numpy array, pandas DataFrame or ``dask.array`` (any
        chunking; results are identical to the numpy ones).
    method
        ``"ratio"`` (median of ratios, DESeq2's default) or ``"poscounts"``.
    geo_means
        Incoming per-gene geometric means (R's ``geoMeans``), e.g. frozen from a reference set;
        the factors are then rescaled to geometric mean 1. Overrides ``method``'s own means.
    log_geo_means
        The same as natural logs (as stored in ``uns["size_factors"]``); exclusive with
        ``geo_means``.
    control_genes
        Integer positions or a boolean mask of the genes to take the medians over (R's
        ``controlGenes``).
    sample_names
        Sample ids, used only to name a failing sample in error messages.
    orientation
        ``"auto"`` (default) refuses a matrix whose shape or labels say genes x samples
        (:class:`expression.OrientationError`, e.g. DESeq2's 17,043 genes x 8 samples layout);
        ``"genes_x_samples"`` transposes it with a logged notice; ``"samples_x_genes"`` skips
        the check.

    Returns
    -------
    SizeFactorFit
        Factors, log geometric means, the used-gene mask, the method and the rescaling flag.

    Raises
    ------
    CountsError
        When every gene has a zero (``ratio``), or a sample has no positive count among the
        usable genes; :class:`expression.OrientationError` for a genes x samples matrix.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS} ('iterate' is not implemented), got {method!r}")
    if geo_means is not None and log_geo_means is not None:
        raise ValueError("give geo_means or log_geo_means, not both")
    counts = as_samples_x_genes(counts, what="fit_size_factors", orientation=orientation,
                                samples=None if sample_names is None else list(map(str, sample_names)))
    if not is_dask(counts):
        counts = np.asarray(counts)
    n_samples, n_genes = counts.shape
    incoming = geo_means is not None or log_geo_means is not None or method == "poscounts"
    if log_geo_means is not None:
        lgm = np.asarray(log_geo_means, dtype=np.float64)
    elif geo_means is not None:
        with np.errstate(divide="ignore"):
            lgm = np.log(np.asarray(geo_means, dtype=np.float64))
    else:
        lgm = _log_geo_means(counts, method=method)
    used = usable_genes(lgm, control_genes, n_genes)
    cols = np.flatnonzero(used)
    if is_dask(counts):  # bands of whole rows built from the input's own chunks
        log_med = _row_bands(counts).map_blocks(
            _band_log_medians, lgm[cols], cols, drop_axis=1,
            dtype=np.float64, meta=np.array((), dtype=np.float64),
        ).compute()
    else:
        log_med = _log_medians_block(np.asarray(counts), lgm[cols], cols)
    sf = size_factors_from_log_medians(log_med, n_genes_used=cols.size,
                                       sample_names=sample_names, incoming=incoming)
    log.info("size factors (%s) over %d of %d genes for %d samples", method, cols.size, n_genes, n_samples)
    return SizeFactorFit(sf, lgm, used, method, incoming)


def size_factors(
    counts: Any,
    *,
    method: Method = "ratio",
    geo_means: Any = None,
    control_genes: Any = None,
    orientation: Orientation = "auto",
) -> np.ndarray:
    """Per-sample size factors exactly as R DESeq2's ``estimateSizeFactors``.

    Parameters
    ----------
    counts
        Samples x genes raw counts: numpy array, pandas DataFrame or ``dask.array``.
    method
        ``"ratio"`` (default) or ``"poscounts"``. (``"iterate"`` is not implemented.)
    geo_means
        Incoming per-gene geometric means (R's ``geoMeans``); factors are then rescaled to
        geometric mean 1.
    control_genes
        Integer positions or a boolean mask of genes to compute the medians over.
    orientation
        ``"auto"`` (default) refuses a genes x samples matrix; ``"genes_x_samples"``
        transposes it; ``"samples_x_genes"`` skips the check (see :func:`fit_size_factors`).

    Returns
    -------
    numpy.ndarray
        One float64 per sample.

    Raises
    ------
    CountsError
        When every gene has a zero (with ``method="ratio"``; use ``"poscounts"``);
        :class:`expression.OrientationError` for a genes x samples matrix.
    """
    return fit_size_factors(
        counts, method=method, geo_means=geo_means, control_genes=control_genes,
        orientation=orientation,
    ).size_factors
