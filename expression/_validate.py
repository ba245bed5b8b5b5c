"""Count-matrix validation with typed errors that name the first offending gene and sample.

Every check works on a numpy array or a ``dask.array`` (samples x genes): the reductions are
per gene and per sample, so only small boolean vectors (and, on failure, one column) are
brought into memory.

Orientation (:func:`as_samples_x_genes`, :func:`check_anndata_orientation`): every public
expression function takes samples as rows (the AnnData convention; DESeq2's own layout is the
transpose). A matrix is refused with :class:`OrientationError` when its shape or its labels say
genes x samples:

- its row labels look like gene ids (an index named ``gene``, ``gene_id``, ``Geneid``,
  ``symbol``... as :func:`expression.write_matrix` and most count tables name it, or mostly
  Ensembl gene ids) while its column labels do not;
- its column labels are the sample sheet's samples while its row labels are not (when the
  function has a sample sheet);
- it has at least :data:`MIN_GENES_FOR_SHAPE` rows and :data:`SHAPE_RATIO` times more rows than
  columns (a bulk count matrix has far more genes than samples).

The fix is named in the message (``counts.T``, or ``adata.T``); ``orientation=
"genes_x_samples"`` transposes a matrix with a logged notice and ``orientation=
"samples_x_genes"`` skips the check. Nothing is guessed silently.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "CountsError",
    "OrientationError",
    "as_samples_x_genes",
    "check_anndata_orientation",
    "check_sample_sheet",
    "genes_x_samples_evidence",
    "sample_id_hint",
    "validate_counts",
]

Orientation = Literal["auto", "samples_x_genes", "genes_x_samples"]
ORIENTATIONS: tuple[str, ...] = ("auto", "samples_x_genes", "genes_x_samples")

#: The shape rule: at least this many rows ...
MIN_GENES_FOR_SHAPE = 1000
#: ... and this many times more rows than columns make a matrix genes x samples.
SHAPE_RATIO = 10
#: Index names that mark the genes axis.
GENE_AXIS_NAMES = frozenset({
    "gene", "genes", "gene_id", "geneid", "gene_ids", "gene_name", "gene_symbol", "symbol",
    "feature", "feature_id", "features", "ensembl", "ensembl_id", "ensembl_gene_id",
})
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")

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


class OrientationError(CountsError):
    """A count matrix is laid out genes x samples where samples x genes is expected (or the
    reverse); the message names the shape, the evidence and the fix.

    Parameters
    ----------
    message
        What is wrong and how to fix it.
    shape
        The shape that was refused.
    """

    def __init__(self, message: str, *, shape: tuple[int, ...]) -> None:
        super().__init__(message)
        self.shape = shape


def _labels_name(labels: Any) -> str:
    return str(getattr(labels, "name", None) or "").strip().lower()


def _gene_like(labels: Any) -> bool:
    """Whether axis labels look like gene ids (gene axis name, or mostly Ensembl gene ids)."""
    if labels is None:
        return False
    if _labels_name(labels) in GENE_AXIS_NAMES:
        return True
    head = [str(x) for x in list(labels[:200])]
    return bool(head) and sum(bool(_ENSEMBL.match(x)) for x in head) >= 0.9 * len(head)


def genes_x_samples_evidence(
    shape: tuple[int, ...],
    *,
    rows: Any = None,
    columns: Any = None,
    samples: Sequence[str] | None = None,
) -> str | None:
    """Why a matrix with these axes looks genes x samples (see the module docstring), or None.

    Parameters
    ----------
    shape
        ``(n_rows, n_columns)``.
    rows, columns
        The axis labels, when there are any (a pandas Index, or a sequence).
    samples
        The sample ids of a sample sheet, when the caller has one.

    Returns
    -------
    str or None
        The evidence, in words.

    Examples
    --------
    >>> genes_x_samples_evidence((17043, 8))
    '17043 rows x 8 columns: a count matrix has far more genes than samples'
    >>> genes_x_samples_evidence((8, 17043)) is None
    True
    """
    n_rows, n_cols = int(shape[0]), int(shape[1])
    if samples is not None and rows is not None and columns is not None:
        wanted = {str(s) for s in samples}
        in_cols = sum(str(c) in wanted for c in columns)
        in_rows = sum(str(r) in wanted for r in rows)
        if in_cols and not in_rows:
            return f"its {in_cols} column label(s) are sample ids of the sample sheet"
    if _gene_like(rows) and not _gene_like(columns):
        name = _labels_name(rows)
        what = f"an index named {name!r}" if name in GENE_AXIS_NAMES else "Ensembl gene ids"
        return f"its row labels look like genes ({what})"
    if n_rows >= MIN_GENES_FOR_SHAPE and n_rows >= SHAPE_RATIO * n_cols:
        return f"{n_rows} rows x {n_cols} columns: a count matrix has far more genes than samples"
    return None


def as_samples_x_genes(
    counts: Any,
    *,
    what: str,
    orientation: Orientation = "auto",
    samples: Sequence[str] | None = None,
) -> Any:
    """``counts`` as samples x genes: checked, transposed on request, refused on evidence.

    Parameters
    ----------
    counts
        A numpy array, pandas DataFrame or ``dask.array`` (2-D).
    what
        The calling function, for the message.
    orientation
        ``"auto"``: samples x genes expected; a matrix whose shape or labels say genes x
        samples raises :class:`OrientationError`. ``"samples_x_genes"``: trusted as given.
        ``"genes_x_samples"``: transposed, with a logged notice.
    samples
        Sample ids of a sample sheet, when the caller has one (label evidence).

    Returns
    -------
    Any
        The same kind of object, samples x genes.

    Raises
    ------
    OrientationError
        Evidence of genes x samples under ``"auto"``.
    ValueError
        An unknown ``orientation`` or a matrix that is not 2-D.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    shape = tuple(getattr(counts, "shape", np.shape(counts)))
    if len(shape) != 2:
        raise ValueError(f"{what}: counts must be a 2-d samples x genes matrix, got shape {shape}")
    if orientation == "genes_x_samples":
        log.warning("%s: counts given as genes x samples %s, transposed (orientation=%r)",
                    what, shape, orientation)
        return counts.T
    if orientation == "samples_x_genes":
        return counts
    reason = genes_x_samples_evidence(
        shape, rows=getattr(counts, "index", None), columns=getattr(counts, "columns", None),
        samples=samples,
    )
    if reason is not None:
        raise OrientationError(
            f"{what}: the counts ({shape[0]} x {shape[1]}) look like genes x samples ({reason}); "
            "phenoflow takes samples as rows (the AnnData layout, the transpose of DESeq2's): "
            "pass counts.T, or orientation='genes_x_samples' to transpose it here "
            "(orientation='samples_x_genes' if the rows really are samples)",
            shape=shape,
        )
    return counts


def check_anndata_orientation(adata: Any, *, what: str, orientation: Orientation = "auto") -> None:
    """Refuse an AnnData whose observations look like genes (built from a genes x samples table).

    Parameters
    ----------
    adata
        The AnnData (samples x genes expected).
    what
        The calling function, for the message.
    orientation
        ``"auto"`` checks; ``"samples_x_genes"`` trusts it; ``"genes_x_samples"`` is refused
        (an AnnData is not transposed in place: pass ``adata.T``).

    Raises
    ------
    OrientationError
        Evidence that the observations are genes, or ``orientation="genes_x_samples"``.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if orientation == "samples_x_genes":
        return
    shape = (int(adata.n_obs), int(adata.n_vars))
    reason = (
        "orientation='genes_x_samples' was given" if orientation == "genes_x_samples"
        else genes_x_samples_evidence(shape, rows=adata.obs_names, columns=adata.var_names)
    )
    if reason is not None:
        raise OrientationError(
            f"{what}: the AnnData ({shape[0]} observations x {shape[1]} variables) looks like "
            f"genes x samples ({reason}); observations must be samples: pass adata.T (or "
            "orientation='samples_x_genes' if the observations really are samples)",
            shape=shape,
        )


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
    hint = sample_id_hint(only_matrix, only_sheet) if only_sheet or only_matrix else ""
    if only_sheet:
        raise CountsError(
            f"sample {only_sheet[0]!r} is in the sample sheet but not in the count matrix "
            f"({len(only_sheet)} such sample(s): {only_sheet[:5]}){hint}",
            sample=only_sheet[0],
        )
    if only_matrix:
        raise CountsError(
            f"sample {only_matrix[0]!r} is in the count matrix but not in the sample sheet "
            f"({len(only_matrix)} such sample(s): {only_matrix[:5]}){hint}",
            sample=only_matrix[0],
        )


def _affix_pairs(longer: Sequence[str], shorter: Sequence[str]) -> dict[tuple[str, str], dict[str, str]]:
    """For each (prefix, suffix), the ids of ``longer`` that are ``prefix + s + suffix`` for
    exactly one id ``s`` of ``shorter`` (ids equal up to that affix)."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for long_id in longer:
        by_affix: dict[tuple[str, str], list[str]] = {}
        for short_id in shorter:
            if not short_id or len(short_id) >= len(long_id):
                continue
            start = long_id.find(short_id)
            while start >= 0:
                affix = (long_id[:start], long_id[start + len(short_id):])
                by_affix.setdefault(affix, []).append(short_id)
                start = long_id.find(short_id, start + 1)
        for affix, ids in by_affix.items():
            if len(ids) == 1:
                found.setdefault(affix, {})[long_id] = ids[0]
    return found


def sample_id_hint(matrix_only: Sequence[str], sheet_only: Sequence[str]) -> str:
    """A hint for sample ids that differ between a matrix and its sheet by a common affix.

    Finds the prefix/suffix (e.g. ``"_quant"``, ``".sf"``, ``"_L001"``) that turns the most
    unmatched ids of one side into unmatched ids of the other, and names the mapping. Nothing
    is renamed: the hint says what to fix, the ids are never matched by guess.

    Parameters
    ----------
    matrix_only
        Sample ids of the count matrix missing from the sheet.
    sheet_only
        Sample ids of the sheet missing from the count matrix.

    Returns
    -------
    str
        ``"; ..."`` naming the mapping, or ``""`` when no common affix explains two ids.

    Examples
    --------
    >>> sample_id_hint(["S1_quant", "S2_quant"], ["S1", "S2"])  # doctest: +NORMALIZE_WHITESPACE
    "; the ids differ by a common suffix '_quant': count-matrix sample 'S1_quant' looks like
    sample 'S1' of the sheet, 'S2_quant' looks like sample 'S2' (nothing was matched: rename
    the sheet's ids or the matrix's samples)"
    >>> sample_id_hint(["A"], ["B"])
    ''
    """
    matrix_only = [str(s) for s in matrix_only]
    sheet_only = [str(s) for s in sheet_only]
    candidates: list[tuple[int, int, str, tuple[str, str], dict[str, str]]] = []
    for side, longer, shorter in (("matrix", matrix_only, sheet_only),
                                  ("sheet", sheet_only, matrix_only)):
        for affix, mapping in _affix_pairs(longer, shorter).items():
            # the affix must keep a one-to-one mapping
            if len(set(mapping.values())) == len(mapping):
                # prefer affixes that start/end at a separator (S1_L001, not S1 -> S10)
                separated = int(
                    (not affix[1] or not affix[1][0].isalnum())
                    and (not affix[0] or not affix[0][-1].isalnum())
                )
                candidates.append((len(mapping), separated, side, affix, mapping))
    if not candidates:
        return ""
    n, _, side, (prefix, suffix), mapping = max(candidates, key=lambda c: (c[0], c[1]))
    if n < min(2, len(matrix_only), len(sheet_only)) and not (
        len(matrix_only) == len(sheet_only) == n
    ):
        return ""
    what = " and ".join(
        f"{kind} {text!r}" for kind, text in (("prefix", prefix), ("suffix", suffix)) if text
    )
    pairs = list(mapping.items())[:3]
    if side == "matrix":
        first = f"count-matrix sample {pairs[0][0]!r} looks like sample {pairs[0][1]!r} of the sheet"
    else:
        first = f"sheet id {pairs[0][0]!r} looks like count-matrix sample {pairs[0][1]!r}"
    rest = "".join(f", {a!r} looks like sample {b!r}" for a, b in pairs[1:])
    more = f" ({n} such ids)" if n > 3 else ""
    return (
        f"; the ids differ by a common {what}: {first}{rest}{more} (nothing was matched: "
        "rename the sheet's ids or the matrix's samples)"
    )


def validate_counts(
    adata: Any,
    *,
    layer: str | None = "counts",
    samples: pd.DataFrame | None = None,
    orientation: Orientation = "auto",
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
    orientation
        ``"auto"`` refuses an AnnData whose observations look like genes
        (:func:`check_anndata_orientation`); ``"samples_x_genes"`` skips that check.

    Raises
    ------
    CountsError
        On duplicated gene or sample ids, sheet/matrix sample mismatches, missing (NaN),
        negative or non-integer values, or an all-zero sample; the message names the first
        offending gene and sample. :class:`OrientationError` (a :class:`CountsError`) for a
        genes x samples AnnData.
    """
    check_anndata_orientation(adata, what="validate_counts", orientation=orientation)
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
    """``x`` as a dense array when it is a SciPy sparse matrix, else None.

    A sparse matrix can only exist once :mod:`scipy.sparse` is imported, so this does not
    import it (0.1 s) for dense input."""
    sparse = sys.modules.get("scipy.sparse")
    return x.toarray() if sparse is not None and sparse.issparse(x) else None
