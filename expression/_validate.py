"""Count-matrix validation with typed errors that name the first offending gene and sample.

Every check works on a numpy array or a ``dask.array`` (samples x genes): the reductions are
per gene and per sample, so only small boolean vectors (and, on failure, one column) are
brought into memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CountsError", "check_sample_sheet", "validate_counts"]

log = logging.getLogger(__name__)


class CountsError(ValueError):
    """A count matrix (or its sample sheet) is not usable as raw counts.

    Parameters
    ----------
    message
        What is wrong, naming the first offending gene and/or sample.
    gene
        The first offending gene id, when the problem is located at a gene.
    sample
        The first offending sample id, when the problem is located at a sample.
    """

    def __init__(self, message: str, *, gene: str | None = None, sample: str | None = None) -> None:
        super().__init__(message)
        self.gene = gene
        self.sample = sample


def is_dask(x: Any) -> bool:
    return type(x).__module__.startswith("dask.")


def _compute(x: Any) -> np.ndarray:
    return np.asarray(x.compute() if is_dask(x) else x)


def _first(mask: Any) -> tuple[int, int] | None:
    """(sample, gene) indices of the first True cell (first gene, then first sample), or None."""
    by_gene = _compute(mask.any(axis=0))
    if not by_gene.any():
        return None
    gene = int(np.argmax(by_gene))
    sample = int(np.argmax(_compute(mask[:, gene])))
    return sample, gene


def _duplicates(ids: Sequence[str], what: str) -> None:
    index = pd.Index(ids)
    dup = index[index.duplicated()]
    if len(dup):
        raise CountsError(
            f"duplicated {what} id {dup[0]!r} ({len(dup)} duplicate(s) in total)",
            **({"gene": str(dup[0])} if what == "gene" else {"sample": str(dup[0])}),
        )


def check_sample_sheet(matrix_samples: Sequence[str], sheet_samples: Sequence[str]) -> None:
    """Raise :class:`CountsError` unless the matrix and the sample sheet name the same samples.

    Parameters
    ----------
    matrix_samples
        Sample ids of the count matrix.
    sheet_samples
        Sample ids of the sample sheet.
    """
    _duplicates(list(sheet_samples), "sample sheet")
    in_matrix = set(map(str, matrix_samples))
    in_sheet = set(map(str, sheet_samples))
    only_sheet = [s for s in map(str, sheet_samples) if s not in in_matrix]
    only_matrix = [s for s in map(str, matrix_samples) if s not in in_sheet]
    if only_sheet:
        raise CountsError(
            f"sample {only_sheet[0]!r} is in the sample sheet but not in the count matrix "
            f"({len(only_sheet)} such sample(s): {only_sheet[:5]})",
            sample=only_sheet[0],
        )
    if only_matrix:
        raise CountsError(
            f"sample {only_matrix[0]!r} is in the count matrix but not in the sample sheet "
            f"({len(only_matrix)} such sample(s): {only_matrix[:5]})",
            sample=only_matrix[0],
        )


def validate_counts(
    adata: Any, *, layer: str | None = "counts", samples: pd.DataFrame | None = None
) -> None:
    """Check that ``adata`` holds usable raw counts (samples x genes).

    Parameters
    ----------
    adata
        An :class:`anndata.AnnData`; the matrix may be numpy or ``dask.array``.
    layer
        The layer with the raw counts; ``None`` (or a missing ``"counts"`` layer) uses ``X``.
    samples
        An optional sample sheet (index = sample ids) that must name exactly the same samples.

    Raises
    ------
    CountsError
        On duplicated gene or sample ids, sheet/matrix sample mismatches, missing (NaN),
        negative or non-integer values, or an all-zero sample; the message names the first
        offending gene and sample.
    """
    genes = [str(g) for g in adata.var_names]
    sample_ids = [str(s) for s in adata.obs_names]
    _duplicates(genes, "gene")
    _duplicates(sample_ids, "sample")
    if samples is not None:
        check_sample_sheet(sample_ids, [str(s) for s in samples.index])
    x = counts_matrix(adata, layer=layer)
    dense = is_sparse(x)
    if dense is not None:
        x = dense
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise CountsError(f"counts must be real numbers, got dtype {x.dtype}")
    checks: list[tuple[str, Any]] = []
    if np.issubdtype(x.dtype, np.floating):
        checks.append(("missing (NaN)", np.isnan(x)))
        checks.append(("infinite", np.isinf(x)))
    checks.append(("negative", x < 0))
    if np.issubdtype(x.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            checks.append(("non-integer", (x != np.floor(x)) & np.isfinite(x)))
    for what, mask in checks:
        hit = _first(mask)
        if hit is not None:
            s, g = hit
            value = _compute(x[s, g]).item()
            raise CountsError(
                f"{what} count {value} at gene {genes[g]!r}, sample {sample_ids[s]!r} "
                "(raw counts must be non-negative integers)",
                gene=genes[g],
                sample=sample_ids[s],
            )
    zero = _compute((x == 0).all(axis=1))
    if zero.any():
        s = int(np.argmax(zero))
        raise CountsError(
            f"sample {sample_ids[s]!r} has only zero counts ({int(zero.sum())} such sample(s))",
            sample=sample_ids[s],
        )
    log.debug("validated %d samples x %d genes", len(sample_ids), len(genes))


def counts_matrix(adata: Any, *, layer: str | None = "counts") -> Any:
    """The raw-count matrix of ``adata``: ``layers[layer]``, or ``X`` when there is no such layer.

    Parameters
    ----------
    adata
        An :class:`anndata.AnnData`.
    layer
        Layer name; ``None`` selects ``X``. A missing ``"counts"`` layer falls back to ``X``;
        any other missing layer raises ``KeyError``.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The matrix (samples x genes).
    """
    if layer is None or (layer == "counts" and layer not in adata.layers):
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"layer {layer!r} not found; layers are {list(adata.layers)}")
    return adata.layers[layer]


def is_sparse(x: Any) -> Any:
    from scipy import sparse

    return x.toarray() if sparse.issparse(x) else None
