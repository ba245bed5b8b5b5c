"""Normalised layers on an AnnData: DESeq2 size factors, CPM and ``log2(x + 1)``.

scanpy's vocabulary: each function reads ``layer``, writes ``layers[key_added]`` (and, for size
factors, ``obs["size_factors"]`` and ``uns["size_factors"]``), and works in place unless
``copy=True``, in which case it returns the modified copy. A Dask layer stays lazy: the new
layer is built with ``map_blocks`` (only the size factors themselves are computed).

Size factors of a Dask matrix (e.g. a Zarr store read by :func:`expression.read_counts`) are
computed in two passes that follow the store's own chunks: per-gene sums of logarithms as
partial sums per chunk (long double, added in chunk order: nothing moves between workers but
a few rows of sums per chunk), then per-sample medians over bands of whole rows (the store's
sample chunks with their gene chunks concatenated, never split). Rechunking to all samples per
gene block and then to whole rows, as the in-memory algorithm's layout would need, moved the
matrix between workers twice and made the out-of-core run three times slower than a blockwise
numpy pass over the same store. The results equal :func:`expression.fit_size_factors`'s (the
long double sums are associated per chunk, which is invisible once rounded to float64).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from expression._size_factors import Method, fit_size_factors
from expression._validate import (
    Orientation,
    check_anndata_orientation,
    counts_matrix,
    is_dask,
)

__all__ = ["cpm", "log2p1", "normalize_counts", "normalize_file"]

log = logging.getLogger(__name__)


def _per_sample(matrix: Any, factors: np.ndarray, op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Any:
    """Apply ``op(block, factors[rows, None])`` blockwise (numpy or Dask, samples x genes)."""
    if not is_dask(matrix):
        return op(np.asarray(matrix, dtype=np.float64), factors[:, None])
    import dask.array as da

    fac = da.from_array(factors[:, None], chunks=(matrix.chunks[0], 1))
    return da.map_blocks(
        lambda block, f: op(np.asarray(block, dtype=np.float64), f),
        matrix, fac, dtype=np.float64, meta=np.array((), dtype=np.float64).reshape(0, 0),
    )


def _target(adata: Any, copy: bool) -> Any:
    return adata.copy() if copy else adata


def _control_positions(adata: Any, control_genes: Any) -> Any:
    if control_genes is None:
        return None
    sel = np.asarray(control_genes)
    if sel.dtype.kind in "US" or sel.dtype == object:
        pos = adata.var_names.get_indexer(sel.astype(str))
        if (pos < 0).any():
            raise KeyError(f"control gene {sel[np.argmax(pos < 0)]!r} is not in var_names")
        return pos
    return sel


def normalize_counts(
    adata: Any,
    *,
    method: Method | Literal["vst"] = "ratio",
    layer: str | None = "counts",
    key_added: str = "normalized",
    geo_means: Any = None,
    control_genes: Any = None,
    blind: bool = True,
    fit_type: str = "parametric",
    design: str = "~ patient + timepoint",
    numeric: Sequence[str] = (),
    nsub: int | None = 1000,
    orientation: Orientation = "auto",
    copy: bool = False,
) -> Any:
    """Divide each sample's counts by its DESeq2 size factor (and, for ``"vst"``, transform).

    Parameters
    ----------
    adata
        Samples x genes AnnData; the counts may be numpy or ``dask.array``.
    method
        ``"ratio"`` or ``"poscounts"`` (see :func:`size_factors`), or ``"vst"``: ratio size
        factors, then DESeq2's variance stabilizing transformation into ``layers["vst"]``:
        R's ``vst()`` (trend on ``nsub=1000`` genes) by default, R's
        ``varianceStabilizingTransformation`` with ``nsub=None`` (see :func:`expression.vst`;
        ``uns["vst"]["method"]`` records which ran).
    layer
        Layer with the raw counts (``None`` or a missing ``"counts"`` uses ``X``).
    key_added
        Name of the new layer (``counts(dds, normalized=TRUE)`` in DESeq2 terms).
    geo_means
        Frozen per-gene geometric means (R's ``geoMeans``), e.g.
        ``np.exp(reference.uns["size_factors"]["log_geo_means"])``.
    control_genes
        Gene ids, integer positions or a boolean mask (R's ``controlGenes``).
    blind, fit_type, design, numeric, nsub
        Options of the ``"vst"`` method (see :func:`expression.vst`; ``numeric`` keeps
        integer-coded design columns continuous, see :mod:`expression._design`).
    orientation
        ``"auto"`` refuses an AnnData whose observations look like genes
        (:class:`expression.OrientationError`; pass ``adata.T``); ``"samples_x_genes"`` skips
        the check.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy=True``.
    """
    if method in ("ratio", "poscounts", "vst"):  # DESeq2's methods use tximport's offsets
        from expression._tximport import refuse_length_offsets

        refuse_length_offsets(adata, what="normalize_counts")
    check_anndata_orientation(adata, what="normalize_counts", orientation=orientation)
    target = _target(adata, copy)
    counts = counts_matrix(target, layer=layer)
    transform = method == "vst"
    fit = fit_size_factors(
        counts, method="ratio" if transform else method, geo_means=geo_means,
        control_genes=_control_positions(target, control_genes), sample_names=target.obs_names,
        orientation="samples_x_genes",
    )
    target.obs["size_factors"] = fit.size_factors
    target.layers[key_added] = _per_sample(counts, fit.size_factors, np.divide)
    target.uns["size_factors"] = {
        "method": fit.method,
        "layer": "X" if layer is None else layer,
        "key_added": key_added,
        "rescaled_to_geometric_mean_1": bool(fit.rescaled),
        "frozen_geo_means": geo_means is not None,
        "n_genes_used": int(fit.used.sum()),
        "log_geo_means": fit.log_geo_means,
        "used_for_ratio": fit.used,
    }
    log.info("normalised %d samples with %s size factors -> layers[%r]", target.n_obs, fit.method, key_added)
    if transform:
        from expression._vst import vst

        vst(target, blind=blind, fit_type=fit_type, design=design, size_factors=fit.size_factors,
            layer=layer, numeric=numeric, nsub=nsub, orientation="samples_x_genes")
    return target if copy else None


def cpm(
    adata: Any,
    *,
    layer: str | None = "counts",
    key_added: str = "cpm",
    orientation: Orientation = "auto",
    copy: bool = False,
) -> Any:
    """Counts per million: each sample's counts divided by its library size, times 1e6.

    Parameters
    ----------
    adata
        Samples x genes AnnData (numpy or Dask).
    layer
        Layer with the raw counts (``None`` or a missing ``"counts"`` uses ``X``).
    key_added
        Name of the new layer.
    orientation
        ``"auto"`` refuses an AnnData whose observations look like genes; ``"samples_x_genes"``
        skips the check.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy=True``.
    """
    check_anndata_orientation(adata, what="cpm", orientation=orientation)
    target = _target(adata, copy)
    counts = counts_matrix(target, layer=layer)
    lib = counts.sum(axis=1, dtype=np.float64)
    lib = np.asarray(lib.compute() if is_dask(lib) else lib, dtype=np.float64)
    target.obs["library_size"] = lib
    target.layers[key_added] = _per_sample(counts, lib / 1e6, np.divide)
    target.uns["cpm"] = {"layer": "X" if layer is None else layer, "key_added": key_added}
    return target if copy else None


def log2p1(
    adata: Any,
    *,
    layer: str = "normalized",
    key_added: str = "log2p1",
    orientation: Orientation = "auto",
    copy: bool = False,
) -> Any:
    """``log2(x + 1)`` of a layer: DESeq2's ``normTransform`` when ``layer`` holds normalised counts.

    Parameters
    ----------
    adata
        Samples x genes AnnData (numpy or Dask).
    layer
        The layer to transform (by default the output of :func:`normalize_counts`).
    key_added
        Name of the new layer.
    orientation
        ``"auto"`` refuses an AnnData whose observations look like genes; ``"samples_x_genes"``
        skips the check.
    copy
        Return a modified copy instead of working in place.

    Returns
    -------
    anndata.AnnData or None
        The copy when ``copy=True``.
    """
    check_anndata_orientation(adata, what="log2p1", orientation=orientation)
    target = _target(adata, copy)
    if layer not in target.layers:
        raise KeyError(f"layer {layer!r} not found (run normalize_counts or cpm first)")
    x = target.layers[layer]
    if is_dask(x):
        out = x.map_blocks(
            lambda b: np.log2(np.asarray(b, dtype=np.float64) + 1.0),
            dtype=np.float64, meta=np.array((), dtype=np.float64).reshape(0, 0),
        )
    else:
        out = np.log2(np.asarray(x, dtype=np.float64) + 1.0)
    target.layers[key_added] = out
    target.uns["log2p1"] = {"layer": layer, "key_added": key_added, "pseudocount": 1.0}
    return target if copy else None


NORMALIZE_METHODS = ("ratio", "poscounts", "cpm", "log2p1", "vst")


def normalize_file(
    counts: Any,
    *,
    out: Any,
    method: str = "ratio",
    samples: Any = None,
    size_factors_out: Any = None,
    blind: bool = True,
    fit_type: str = "parametric",
    design: str = "~ patient + timepoint",
    numeric: Sequence[str] = (),
    nsub: int | None = 1000,
) -> Any:
    """Read, validate and normalise a count file, then write the result (the CLI's work).

    Every argument and the output paths are checked before anything is computed; the outputs
    are written atomically (both appear, or neither: see :func:`engine.runtime.atomic_path`).

    Parameters
    ----------
    counts
        Count file (any format :func:`read_counts` reads).
    out
        Output: ``.csv``/``.tsv`` (genes x samples), ``.parquet`` or ``.h5ad``.
    method
        ``"ratio"``, ``"poscounts"``, ``"cpm"``, ``"log2p1"`` (``log2`` of ratio-normalised
        counts + 1, DESeq2's ``normTransform``) or ``"vst"`` (DESeq2's variance stabilizing
        transformation, log2 scale: R's ``vst()``, the trend fitted on ``nsub`` genes; all
        genes, R's ``varianceStabilizingTransformation``, with ``nsub=None`` or when fewer than
        ``nsub`` genes have a mean normalised count above 5).
    samples
        Optional sample sheet.
    size_factors_out
        Optional CSV for the size factors (columns ``sample,size_factor``); not for ``cpm``.
    blind, fit_type, design, nsub
        Options of ``"vst"`` (see :func:`expression.vst`); ``design`` needs ``samples``.
    numeric
        Integer-coded design columns to keep continuous (``"vst"`` with ``blind=False``; see
        :mod:`expression._design`).

    Returns
    -------
    expression.CountTable or anndata.AnnData
        The normalised data: for a table file the :class:`expression.CountTable` it was
        read into (AnnData's fields; ``.to_anndata()``), so the command does not import
        anndata; for ``.h5ad`` and Zarr input the AnnData.

    Raises
    ------
    expression.OutputError
        An output with an unsupported suffix, in a folder that does not exist or cannot be
        written, or that is a folder (before any work).
    ValueError
        An unknown method, or options that do not go together.
    """
    import pandas as pd

    from engine.runtime import atomic_path
    from expression._io import MATRIX_SUFFIXES, check_output, read_count_table, write_matrix_to
    from expression._validate import validate_counts

    if method not in NORMALIZE_METHODS:
        raise ValueError(f"unknown method {method!r} (one of {NORMALIZE_METHODS})")
    if method == "cpm" and size_factors_out is not None:
        raise ValueError("--size-factors needs a size-factor method (ratio, poscounts, log2p1, vst)")
    if method == "vst" and not blind and samples is None:
        raise ValueError("vst with the design (--no-blind) needs a sample sheet (--samples)")
    out_path = check_output(out, suffixes=MATRIX_SUFFIXES, what="normalized matrix")
    sf_path = (None if size_factors_out is None
               else check_output(size_factors_out, suffixes=(".csv",), what="size factors"))
    if sf_path is not None and sf_path.resolve() == out_path.resolve():
        raise ValueError(f"the matrix and the size factors would both be written to {out_path}")

    adata = read_count_table(counts, samples=samples)
    validate_counts(adata)
    if method == "cpm":
        cpm(adata)
        key = "cpm"
    elif method in ("ratio", "poscounts", "log2p1"):
        normalize_counts(adata, method="ratio" if method == "log2p1" else method)
        key = "normalized"
        if method == "log2p1":
            log2p1(adata)
            key = "log2p1"
    else:
        normalize_counts(adata, method="vst", blind=blind, fit_type=fit_type, design=design,
                         numeric=numeric, nsub=nsub)
        key = "vst"
    # both files or neither: the size factors are renamed into place first, the matrix last,
    # and only when both were written completely
    with atomic_path(out_path, suffix=out_path.suffix) as tmp_out:
        write_matrix_to(adata, tmp_out, layer=key, fmt=out_path.suffix)
        if sf_path is not None:
            with atomic_path(sf_path, suffix=".csv") as tmp_sf:
                pd.DataFrame(
                    {"sample": adata.obs_names, "size_factor": adata.obs["size_factors"].to_numpy()}
                ).to_csv(tmp_sf, index=False, float_format="%.17g")
    return adata
