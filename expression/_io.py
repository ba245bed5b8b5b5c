"""Reading count matrices (CSV/TSV, featureCounts, HTSeq-count, h5ad, Parquet, Zarr) into AnnData.

Every reader returns samples x genes (the AnnData convention) with the raw counts in
``layers["counts"]`` and in ``X``; ``uns["orientation"]`` records how the file was laid out and
``uns["orientation_detected_by"]`` how that was decided.

Quantifier outputs (salmon ``quant.sf``, kallisto ``abundance.tsv``/``abundance.h5``, RSEM
``*.isoforms.results``/``*.genes.results``) hold estimated, non-integer counts: they are
recognised by their header (:func:`quantifier_file`) and refused by :func:`read_counts` with a
pointer to :func:`expression.read_quantifications` (tximport's definitions).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from expression._io_zarr import is_zarr_store, read_zarr_counts
from expression._validate import CountsError, check_sample_sheet

__all__ = [
    "MATRIX_SUFFIXES",
    "QUANTIFIER_COLUMNS",
    "QUANTIFIER_FILES",
    "CountTable",
    "OutputError",
    "check_output",
    "quantifier_file",
    "read_count_table",
    "read_counts",
    "read_sample_sheet",
    "write_matrix",
]

log = logging.getLogger(__name__)

Orientation = Literal["auto", "genes_x_samples", "samples_x_genes"]
ORIENTATIONS = ("auto", "genes_x_samples", "samples_x_genes")
FEATURECOUNTS_ANNOTATION = ("Chr", "Start", "End", "Strand", "Length")


#: The header columns that identify a quantifier's output (extra columns are allowed).
QUANTIFIER_COLUMNS: dict[str, tuple[str, ...]] = {
    "salmon": ("Name", "Length", "EffectiveLength", "TPM", "NumReads"),
    "kallisto": ("target_id", "length", "eff_length", "est_counts", "tpm"),
    "rsem_isoforms": ("transcript_id", "gene_id", "length", "effective_length", "expected_count",
                      "TPM"),
    "rsem_genes": ("gene_id", "transcript_id(s)", "length", "effective_length", "expected_count",
                   "TPM"),
}
#: The file a quantifier writes into its per-sample folder, in the order they are looked for.
QUANTIFIER_FILES: tuple[str, ...] = ("quant.sf", "abundance.h5", "abundance.tsv")


def quantifier_file(path: str | PathLike[str]) -> tuple[Path, str] | None:
    """The quantifier output at ``path`` (a file, or a sample folder holding one) and its format.

    Parameters
    ----------
    path
        A file, or a folder with ``quant.sf`` (salmon), ``abundance.h5`` or ``abundance.tsv``
        (kallisto).

    Returns
    -------
    tuple of (Path, str) or None
        The file and its format: a key of :data:`QUANTIFIER_COLUMNS`, or ``"kallisto_h5"``;
        None when ``path`` is not a quantifier output.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "quant.sf").write_text("Name\\tLength\\tEffectiveLength\\tTPM\\tNumReads\\n")
    >>> quantifier_file(folder)[1]
    'salmon'
    """
    path = Path(path)
    if path.is_dir():
        for name in QUANTIFIER_FILES:
            if (path / name).is_file():
                return quantifier_file(path / name)
        return None
    if not path.is_file():
        return None
    if path.suffix.lower() == ".h5":
        try:
            import h5py

            with h5py.File(path, "r") as h5:
                return (path, "kallisto_h5") if "est_counts" in h5 and "aux" in h5 else None
        except OSError:
            return None
    try:
        with _open_text(path) as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
    except (OSError, UnicodeDecodeError):
        return None
    for name, columns in QUANTIFIER_COLUMNS.items():
        if set(columns) <= set(header):
            return path, name
    return None


def _refuse_quantifier(paths: Sequence[Path]) -> None:
    """Raise :class:`CountsError` with a pointer to read_quantifications for quantifier outputs."""
    for path in paths[:1]:
        found = quantifier_file(path)
        if found is None:
            continue
        file, fmt = found
        tool = fmt.split("_")[0]
        if fmt == "rsem_genes":
            need = ("its expected counts are estimates (not integers): read them with "
                    "expression.read_quantifications(paths, type='rsem'), which keeps the "
                    "estimates and rounds them for DESeq2 as DESeqDataSetFromTximport does")
        else:
            need = ("it is transcript-level: gene counts need a transcript-to-gene table. Use "
                    f"expression.read_quantifications(paths, type={tool!r}, tx2gene=...) "
                    "(tximport's definitions, with countsFromAbundance and average transcript "
                    "lengths)")
        raise CountsError(f"{file}: {tool} quantification output, not a count matrix; {need}")


def _sep(path: Path) -> str:
    with _open_text(path) as fh:
        for line in fh:
            if line.strip() and not line.startswith("#"):
                return "\t" if "\t" in line else ","
    raise CountsError(f"{path}: no data lines")


def _open_text(path: Path):
    if path.suffix == ".gz":
        import gzip

        return gzip.open(path, "rt")
    return path.open()


def read_sample_sheet(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a sample sheet (CSV/TSV, or Parquet); the first column holds the sample ids.

    Parameters
    ----------
    path
        The sheet; one row per sample.

    Returns
    -------
    pandas.DataFrame
        Indexed by sample id (as strings), one column per annotation.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        sheet = pd.read_parquet(path)
        if isinstance(sheet.index, pd.RangeIndex):
            sheet = sheet.set_index(sheet.columns[0])
    else:
        sep = _sep(path)
        _refuse_repeated_labels(path, sep, what="sample-sheet columns")
        sheet = pd.read_csv(path, sep=sep, index_col=0)
    sheet.index = sheet.index.astype(str)
    sheet.index.name = None
    return sheet


def _featurecounts(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", comment="#", index_col=0)
    table = table.drop(columns=[c for c in FEATURECOUNTS_ANNOTATION if c in table.columns])
    # featureCounts names samples by BAM path: keep the file name without .bam/.sam
    table.columns = [Path(str(c)).name.removesuffix(".bam").removesuffix(".sam") for c in table.columns]
    return table


def _htseq(paths: Sequence[Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        table = pd.read_csv(path, sep="\t", header=None, index_col=0)
        table = table[~table.index.astype(str).str.startswith("__")]  # __no_feature & co.
        if table.shape[1] == 1:
            table.columns = [path.name.split(".")[0]]
        frames.append(table)
    return pd.concat(frames, axis=1, join="outer")


def _is_htseq(path: Path, sep: str) -> bool:
    if sep != "\t":
        return False
    first = pd.read_csv(path, sep="\t", header=None, nrows=5, comment="#")
    return bool(first.shape[1] >= 2 and first.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").notna().all().all())


def _table(path: Path, fmt: str) -> tuple[pd.DataFrame, str | None]:
    """The raw table and, for formats with a fixed layout, its orientation."""
    suffix = path.suffix.lower()
    if fmt == "parquet" or (fmt == "auto" and suffix in (".parquet", ".pq")):
        table = pd.read_parquet(path)
        if isinstance(table.index, pd.RangeIndex) and not pd.api.types.is_numeric_dtype(table.iloc[:, 0]):
            table = table.set_index(table.columns[0])
        return table, None
    sep = _sep(path)
    if fmt == "featurecounts" or (fmt == "auto" and sep == "\t"):
        header = pd.read_csv(path, sep=sep, comment="#", nrows=0)
        if fmt == "featurecounts" or set(FEATURECOUNTS_ANNOTATION) <= set(header.columns):
            log.info("%s: featureCounts output (annotation columns dropped)", path)
            return _featurecounts(path), "genes_x_samples"
    if fmt == "htseq" or (fmt == "auto" and _is_htseq(path, sep)):
        log.info("%s: HTSeq-count output (summary rows dropped)", path)
        return _htseq([path]), "genes_x_samples"
    _refuse_repeated_labels(path, sep)
    wide = _wide_table(path, sep)
    return (pd.read_csv(path, sep=sep, index_col=0) if wide is None else wide), None


def _refuse_repeated_labels(path: Path, sep: str, *,
                            what: str = "gene and sample ids") -> None:
    """Refuse a header row that names a column twice: pandas would silently rename the copies
    (``A``, ``A.1``), turning a duplicated gene or sample id into two different ones (or, in a
    sample sheet, making a design read only the first of two ``timepoint`` columns)."""
    from engine.runtime import repeated_header_labels

    repeated = repeated_header_labels(path, sep=sep, skip_first=True)
    if repeated:
        label, n = repeated[0]
        raise CountsError(
            f"{path}: the header names {label!r} {n} times ({len(repeated)} repeated label(s)); "
            f"{what} must be unique (pandas would read the copies as "
            f"{label!r}, {label + '.1'!r}, ...: different ids)"
        )


#: A table with at least this many columns, and more columns than rows, is tried with
#: :func:`_wide_table` first.
WIDE_MIN_COLUMNS = 1000


def _number_like(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return True


def _wide_table(path: Path, sep: str) -> pd.DataFrame | None:
    """A wide table of plain integers (samples x genes: more columns than rows) read with
    NumPy's C reader, or None for anything else (pandas reads it then).

    pandas' reader pays about 9 µs per column (0.18 s for 20,000 genes, six times a genes x
    samples file of the same numbers); this path takes about 0.02 s. It returns the frame
    ``pd.read_csv(path, sep=sep, index_col=0)`` returns for the files it accepts: a header row,
    every row as long as the header, no quotes, non-empty column labels (repeated ones are
    refused before, see :func:`_refuse_repeated_labels`), row labels that are not numbers
    (pandas would parse those), and only whole numbers (no missing values, decimals or
    exponents). Only the header row is read for any other file (a tall genes x samples table
    is left to pandas without reading it twice).
    """
    with _open_text(path) as fh:
        first = next((line for line in fh if line.strip()), "")
        if first.count(sep) + 1 < WIDE_MIN_COLUMNS:
            return None
        text = first + fh.read()
    if '"' in text:
        return None
    lines = [line for line in text.splitlines() if line.strip()]  # as pandas skips them
    if len(lines) < 2:
        return None
    header = lines[0].removeprefix("\ufeff").split(sep)
    width = len(header)
    if width <= len(lines) or any(line.count(sep) != width - 1 for line in lines):
        return None
    columns = header[1:]
    index = [line[:line.index(sep)] for line in lines[1:]]
    if not all(columns) or any(_number_like(label) for label in index):
        return None  # pandas names an empty label "Unnamed: k" and parses numeric ids
    try:
        with warnings.catch_warnings():  # NumPy < 2 parses "1.0" as an int with this warning
            warnings.simplefilter("error", DeprecationWarning)
            values = np.loadtxt(lines[1:], delimiter=sep, usecols=range(1, width),
                                dtype=np.int64, comments=None, ndmin=2)
    except (ValueError, OverflowError, DeprecationWarning):
        return None
    return pd.DataFrame(values, index=pd.Index(index, name=header[0] or None),
                        columns=pd.Index(columns))


def _orient(table: pd.DataFrame, orientation: str, sheet: pd.DataFrame | None) -> tuple[pd.DataFrame, str, str]:
    """Turn ``table`` into samples x genes; returns it with the detected layout and the reason."""
    if orientation != "auto":
        detected, how = orientation, "given"
    elif sheet is not None and set(map(str, table.columns)) & set(sheet.index):
        detected, how = "genes_x_samples", "sample sheet (columns are samples)"
    elif sheet is not None and set(map(str, table.index)) & set(sheet.index):
        detected, how = "samples_x_genes", "sample sheet (rows are samples)"
    elif table.shape[0] >= table.shape[1]:
        detected, how = "genes_x_samples", "longer axis (rows are genes)"
    else:
        detected, how = "samples_x_genes", "longer axis (columns are genes)"
    log.info("count matrix is %s (detected by %s)", detected.replace("_x_", " x "), how)
    return (table.T if detected == "genes_x_samples" else table), detected, how


def _integer_matrix(table: pd.DataFrame) -> np.ndarray:
    values = table.to_numpy()
    if values.dtype == object:
        values = table.apply(pd.to_numeric, errors="coerce").to_numpy()
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    return values.astype(np.float64)


def _zarr_counts(path: Path, sheet: pd.DataFrame | None, orientation: str) -> Any:
    """A lazily read Zarr count store as AnnData (sheet order and columns applied)."""
    import anndata as ad

    matrix, obs, var, layout, how = read_zarr_counts(path, orientation=orientation)
    if sheet is not None:
        check_sample_sheet(list(obs.index), list(sheet.index))
        position = pd.Index(obs.index).get_indexer(sheet.index)
        if not np.array_equal(position, np.arange(len(position))):
            matrix = matrix[position]
        obs = sheet
    adata = ad.AnnData(
        X=matrix, obs=obs.copy(), var=var.copy(), layers={"counts": matrix},
        uns={"orientation": layout, "orientation_detected_by": how},
    )
    log.info("read %d samples x %d genes (lazy, Zarr)", adata.n_obs, adata.n_vars)
    return adata


@dataclass(frozen=True)
class CountTable:
    """Samples x genes raw counts with their sample sheet, as read from a table file.

    The fields AnnData users know (``X``, ``obs``, ``var_names``, ``uns``, ``layers``,
    ``obs_names``, ``n_obs``, ``n_vars``) so the validators and the DE driver take it as they
    take an AnnData; :meth:`to_anndata` builds the AnnData :func:`read_counts` returns.

    Attributes
    ----------
    X
        Samples x genes int64 (or float64 with decimals or missing values).
    obs
        The sample sheet (or an empty frame indexed by sample id).
    var_names
        Gene ids.
    uns
        How the orientation was decided (and what the normalisers record).
    layers
        ``{"counts": X}`` and the layers the normalisers add.
    """

    X: np.ndarray
    obs: pd.DataFrame
    var_names: pd.Index
    uns: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.layers.setdefault("counts", self.X)

    @property
    def obs_names(self) -> pd.Index:
        """Sample ids."""
        return self.obs.index

    @property
    def n_obs(self) -> int:
        """Number of samples."""
        return int(self.X.shape[0])

    @property
    def n_vars(self) -> int:
        """Number of genes."""
        return int(self.X.shape[1])

    def to_anndata(self) -> Any:
        """The table as an AnnData (``X`` a copy; the layers, ``obs`` and ``uns`` as they are
        now): what :func:`read_counts` returns for a table just read."""
        import anndata as ad

        return ad.AnnData(
            X=self.X.copy(), obs=self.obs.copy(), var=pd.DataFrame(index=self.var_names),
            layers=dict(self.layers), uns=dict(self.uns),
        )

    def copy(self) -> CountTable:
        """A copy whose ``obs``, ``uns`` and ``layers`` can change without touching this one
        (the arrays are shared until replaced, as the normalisers replace them)."""
        return CountTable(X=self.X, obs=self.obs.copy(), var_names=self.var_names,
                          uns=dict(self.uns), layers=dict(self.layers))


def read_count_table(
    path: str | PathLike[str] | Sequence[str | PathLike[str]],
    *,
    samples: str | PathLike[str] | pd.DataFrame | None = None,
    orientation: Orientation = "auto",
    format: Literal["auto", "table", "featurecounts", "htseq", "parquet", "h5ad", "zarr"] = "auto",
) -> Any:
    """Read a raw count matrix as a samples x genes :class:`CountTable` (an AnnData for h5ad and
    Zarr input): :func:`read_counts` without building an AnnData for table formats, so a
    command that only needs the numbers (``phenoflow de``) does not import anndata.

    Parameters
    ----------
    path
        CSV/TSV table (first column = row ids), featureCounts output, HTSeq-count output (one
        file per sample: pass a list; the sample id is the file name up to its first dot),
        ``.h5ad``, Parquet, or a Zarr store (a 2-D array or an AnnData store; read lazily as a
        Dask array, see :mod:`expression._io_zarr`).
    samples
        A sample sheet (path or DataFrame indexed by sample id): becomes ``obs`` (in the sheet's
        order) and helps detect the orientation; it must name exactly the matrix's samples.
    orientation
        ``"auto"`` (the axis whose labels match the sheet, else the longer axis is genes),
        ``"genes_x_samples"`` or ``"samples_x_genes"``.
    format
        ``"auto"`` detects it from the suffix and content.

    Returns
    -------
    CountTable or anndata.AnnData
        Raw counts in ``X`` and ``layers["counts"]`` (int64, or float64 when the file has
        decimals or missing values: see :func:`validate_counts`); for a Zarr store both are the
        same lazy Dask array over the store (nothing is loaded until computed).

    Raises
    ------
    CountsError
        When the sheet and the matrix disagree on the samples (with a hint when the ids differ
        by a common suffix or prefix), or when ``path`` is a salmon, kallisto or RSEM output
        (estimated counts: use :func:`expression.read_quantifications`).
    """
    sheet = read_sample_sheet(samples) if isinstance(samples, str | PathLike) else samples
    if sheet is not None:
        sheet = sheet.copy()
        sheet.index = sheet.index.astype(str)
    if format == "auto":
        _refuse_quantifier([Path(path)] if isinstance(path, str | PathLike) else [Path(p) for p in path])
    if isinstance(path, str | PathLike) and (
        format == "zarr" or (format == "auto" and is_zarr_store(Path(path)))
    ):
        return _zarr_counts(Path(path), sheet, orientation)
    if isinstance(path, str | PathLike):
        path = Path(path)
        fixed: str | None
        if format == "h5ad" or (format == "auto" and path.suffix == ".h5ad"):
            import anndata as ad

            adata = ad.read_h5ad(path)
            matrix = adata.layers["counts"] if "counts" in adata.layers else adata.X
            table = pd.DataFrame(np.asarray(matrix), index=adata.obs_names, columns=adata.var_names)
            fixed, obs = "samples_x_genes", adata.obs
        else:
            table, fixed = _table(path, format)
            obs = None
    else:
        table, fixed, obs = _htseq([Path(p) for p in path]), "genes_x_samples", None
    table, detected, how = _orient(
        table, orientation if fixed is None or orientation != "auto" else fixed, sheet
    )
    if fixed is not None and orientation == "auto":
        how = "file format"
    table.index = table.index.astype(str)
    table.columns = table.columns.astype(str)
    if sheet is not None:
        check_sample_sheet(list(table.index), list(sheet.index))
        table = table.loc[sheet.index]
        obs = sheet
    elif obs is None:
        obs = pd.DataFrame(index=table.index)
    values = _integer_matrix(table)
    log.info("read %d samples x %d genes", values.shape[0], values.shape[1])
    return CountTable(X=values, obs=obs.copy(), var_names=pd.Index(table.columns),
                      uns={"orientation": detected, "orientation_detected_by": how})


def read_counts(
    path: str | PathLike[str] | Sequence[str | PathLike[str]],
    *,
    samples: str | PathLike[str] | pd.DataFrame | None = None,
    orientation: Orientation = "auto",
    format: Literal["auto", "table", "featurecounts", "htseq", "parquet", "h5ad", "zarr"] = "auto",
) -> Any:
    """Read a raw count matrix as a samples x genes :class:`anndata.AnnData`.

    Parameters
    ----------
    path, samples, orientation, format
        As :func:`read_count_table` (CSV/TSV, featureCounts, HTSeq files, ``.h5ad``, Parquet,
        Zarr; the sheet becomes ``obs`` in its order).

    Returns
    -------
    anndata.AnnData
        Raw counts in ``X`` and ``layers["counts"]`` (int64, or float64 when the file has
        decimals or missing values: see :func:`validate_counts`); for a Zarr store both are the
        same lazy Dask array over the store (nothing is loaded until computed).

    Raises
    ------
    CountsError
        As :func:`read_count_table`.

    Examples
    --------
    >>> adata = read_counts("counts.csv", samples="samples.csv")  # doctest: +SKIP
    """
    table = read_count_table(path, samples=samples, orientation=orientation, format=format)
    return table.to_anndata() if isinstance(table, CountTable) else table


#: Suffixes :func:`write_matrix` writes.
MATRIX_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".h5ad")


class OutputError(ValueError):
    """An output path cannot be written (checked before any work is done).

    Parameters
    ----------
    message
        What is wrong with the path.
    path
        The output path.
    """

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


def check_output(
    path: str | PathLike[str], *, suffixes: Sequence[str], what: str = "output"
) -> Path:
    """Check an output path before the work that produces it: suffix, folder, writability.

    Parameters
    ----------
    path
        The file to be written.
    suffixes
        The suffixes the writer supports.
    what
        What the file is, for the message.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputError
        An unsupported suffix, a folder that does not exist (or is not a folder), a folder
        where no file can be created, or a path that is an existing folder.
    """
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        raise OutputError(
            f"{what} {target}: unsupported output suffix {target.suffix!r} ({', '.join(suffixes)})",
            path=target,
        )
    if target.is_dir():
        raise OutputError(f"{what} {target}: is a folder, not a file", path=target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{what} {target}: folder {folder} does not exist", path=target)
    from engine.runtime import unwritable_reason

    reason = unwritable_reason(folder)
    if reason is not None:
        raise OutputError(f"{what} {target}: folder {folder} is not writable ({reason})",
                          path=target)
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"{what} {target}: the existing file is not writable", path=target)
    return target


def write_matrix_to(adata: Any, path: str | PathLike[str], *, layer: str, fmt: str) -> None:
    """Write one layer to ``path`` in format ``fmt`` (a suffix), not atomically (internal).

    Parameters
    ----------
    adata
        The AnnData (samples x genes); a Dask layer is computed.
    path
        The file written (usually a temporary name of :func:`engine.runtime.atomic_path`).
    layer
        The layer to write for the table formats.
    fmt
        ``".csv"``, ``".tsv"``, ``".parquet"`` or ``".h5ad"``.
    """
    fmt = fmt.lower()
    if fmt not in MATRIX_SUFFIXES:
        raise OutputError(f"unsupported output suffix {fmt!r} ({', '.join(MATRIX_SUFFIXES)})",
                          path=Path(path))
    if fmt == ".h5ad":
        (adata.to_anndata() if isinstance(adata, CountTable) else adata).write_h5ad(path)
        return
    matrix = adata.layers[layer]
    matrix = np.asarray(matrix.compute() if hasattr(matrix, "compute") else matrix)
    table = pd.DataFrame(matrix.T, index=adata.var_names, columns=adata.obs_names)
    table.index.name = "gene"
    if fmt == ".parquet":
        table.to_parquet(path)
    else:
        table.to_csv(path, sep="\t" if fmt == ".tsv" else ",", float_format="%.17g")


def write_matrix(adata: Any, path: str | PathLike[str], *, layer: str) -> Path:
    """Write one layer: ``.csv``/``.tsv`` (genes x samples, gene id first), ``.parquet`` or ``.h5ad``.

    The file is written atomically (a temporary file renamed into place): a failure leaves the
    previous file, or none, never a truncated one.

    Parameters
    ----------
    adata
        The AnnData (samples x genes); a Dask layer is computed.
    path
        Output file; its suffix picks the format (``.h5ad`` writes the whole object).
    layer
        The layer to write for the table formats.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OutputError
        An unsupported suffix (checked before anything is written).
    """
    from engine.runtime import atomic_path

    path = Path(path)
    if path.suffix.lower() not in MATRIX_SUFFIXES:
        raise OutputError(
            f"unsupported output suffix {path.suffix!r} ({', '.join(MATRIX_SUFFIXES)})", path=path
        )
    if path.suffix.lower() != ".h5ad" and layer not in adata.layers:
        raise KeyError(f"layer {layer!r} not found; layers are {list(adata.layers)}")
    with atomic_path(path, suffix=path.suffix) as tmp:
        write_matrix_to(adata, tmp, layer=layer, fmt=path.suffix)
    return path
