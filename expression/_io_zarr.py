"""Count matrices in chunked on-disk Zarr stores, read lazily as Dask arrays.

Two layouts are read:

- a plain 2-D Zarr **array** of counts; sample and gene ids come from its attributes
  ``"samples"`` and ``"genes"`` (lists of strings) when present, else ``sample_0...`` /
  ``gene_0...``; its layout from ``attrs["orientation"]`` (``"samples_x_genes"`` or
  ``"genes_x_samples"``), the ``orientation=`` argument, the ids' lengths, or else the longer
  axis is genes;
- an **AnnData Zarr store** (``anndata.AnnData.write_zarr``): samples x genes, counts from
  ``layers/counts`` when present, else ``X`` (dense); ``obs``/``var`` are read eagerly, the
  matrix stays on disk.

Nothing but the ids is read into memory: the matrix becomes a :class:`dask.array.Array` over the
store's own chunks, so normalising a matrix larger than memory streams it block by block.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from expression._validate import CountsError

__all__ = ["is_zarr_store", "read_zarr_counts"]

log = logging.getLogger(__name__)


def is_zarr_store(path: Path) -> bool:
    """Whether ``path`` is a Zarr (v2 or v3) array or group folder."""
    return path.is_dir() and any(
        (path / marker).is_file() for marker in ("zarr.json", ".zarray", ".zgroup")
    )


def _ids(attrs: Any, key: str, n: int, path: Path) -> list[str] | None:
    values = attrs.get(key)
    if values is None:
        return None
    values = [str(v) for v in values]
    if len(values) != n:
        raise CountsError(f"{path}: attrs[{key!r}] has {len(values)} ids for an axis of {n}")
    return values


def _plain_array(array: Any, path: Path, orientation: str) -> tuple[Any, list[str], list[str], str, str]:
    import dask.array as da

    if array.ndim != 2:
        raise CountsError(f"{path}: a count matrix must be 2-D, the Zarr array is {array.ndim}-D")
    attrs = dict(array.attrs)
    rows, cols = (int(s) for s in array.shape)
    if orientation != "auto":
        layout, how = orientation, "given"
    elif attrs.get("orientation") in ("samples_x_genes", "genes_x_samples"):
        layout, how = str(attrs["orientation"]), "Zarr attribute"
    elif attrs.get("samples") is not None and len(attrs["samples"]) != len(attrs.get("genes") or ()):
        layout = "samples_x_genes" if len(attrs["samples"]) == rows else "genes_x_samples"
        how = "Zarr attribute ids"
    else:
        layout = "genes_x_samples" if rows >= cols else "samples_x_genes"
        how = "longer axis is genes"
    matrix = da.from_zarr(array)
    if layout == "genes_x_samples":
        matrix = matrix.T
    n_samples, n_genes = (int(s) for s in matrix.shape)
    samples = _ids(attrs, "samples", n_samples, path) or [f"sample_{i}" for i in range(n_samples)]
    genes = _ids(attrs, "genes", n_genes, path) or [f"gene_{i}" for i in range(n_genes)]
    return matrix, samples, genes, layout, how


def read_zarr_counts(path: Path, *, orientation: str) -> tuple[Any, pd.DataFrame, pd.DataFrame, str, str]:
    """Open a Zarr count store lazily.

    Parameters
    ----------
    path
        The store's folder.
    orientation
        ``"auto"``, ``"samples_x_genes"`` or ``"genes_x_samples"`` (plain arrays only; AnnData
        stores are samples x genes by definition).

    Returns
    -------
    tuple
        ``(matrix, obs, var, layout, how)``: a samples x genes Dask array, the sample and gene
        frames (indexed by id), the stored layout and how it was decided.

    Raises
    ------
    CountsError
        A store that is neither a 2-D array nor an AnnData store with a dense count matrix, a
        non-numeric matrix, or ids whose number does not fit the matrix.
    """
    import dask.array as da
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several error types for unreadable stores
        raise CountsError(f"{path}: not a readable Zarr store ({type(exc).__name__}: {exc})") from exc
    if isinstance(node, zarr.Array):
        matrix, samples, genes, layout, how = _plain_array(node, path, orientation)
        obs, var = pd.DataFrame(index=pd.Index(samples)), pd.DataFrame(index=pd.Index(genes))
    else:
        if node.attrs.get("encoding-type") != "anndata":
            raise CountsError(f"{path}: a Zarr group that is not an AnnData store")
        from anndata.io import read_elem

        if "layers" in node and "counts" in node["layers"]:
            source, name = node["layers"]["counts"], "layers/counts"
        else:
            source, name = node.get("X"), "X"
        if not isinstance(source, zarr.Array):
            raise CountsError(f"{path}: {name} is not a dense Zarr array (sparse stores: use .h5ad)")
        matrix = da.from_zarr(source)
        obs, var = read_elem(node["obs"]), read_elem(node["var"])
        layout, how = "samples_x_genes", "AnnData store"
    if not (np.issubdtype(matrix.dtype, np.integer) or np.issubdtype(matrix.dtype, np.floating)):
        raise CountsError(f"{path}: counts must be numeric, the store holds {matrix.dtype}")
    obs.index, var.index = obs.index.astype(str), var.index.astype(str)
    if matrix.shape != (len(obs), len(var)):
        raise CountsError(f"{path}: matrix {matrix.shape} does not fit {len(obs)} samples x {len(var)} genes")
    log.info("%s: Zarr %s, %d samples x %d genes, chunks %s", path, layout, len(obs), len(var),
             matrix.chunksize)
    return matrix, obs, var, layout, how
