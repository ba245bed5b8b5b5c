"""Salmon, kallisto and RSEM quantifications as gene-level counts: tximport's definitions.

:func:`read_quantifications` reads one quantifier output per sample and returns what R's
``tximport`` (Soneson, Love & Robinson 2015; definitions of tximport 1.26) returns, as a samples
x genes :class:`anndata.AnnData`. The definitions, for transcripts ``t`` of gene ``g`` in sample
``j``, with the estimated counts ``c``, the abundance (TPM) ``a`` and the *effective* length
``l`` read from each file:

- **abundance** ``A[g, j] = sum_t a[t, j]``; **estimated counts** ``C[g, j] = sum_t c[t, j]``.
- **length** (the abundance-weighted average transcript length)
  ``L[g, j] = sum_t a[t, j] l[t, j] / A[g, j]``. Where ``A[g, j] = 0`` that is undefined and is
  replaced as tximport does: by the geometric mean of the gene's defined lengths in the other
  samples, or, for a gene with zero abundance in every sample, by the mean over its transcripts
  of each transcript's mean length across samples.
- **counts** by ``counts_from_abundance`` (tximport's ``countsFromAbundance``):

  - ``"no"``: ``C`` itself; ``L`` is then the offset DESeq2 uses (``DESeqDataSetFromTximport``
    turns it into per-gene normalisation factors), recorded as ``uns["tximport"]
    ["length_offset"] = True``;
  - ``"scaledTPM"``: ``A[g, j] * sum_g C[g, j] / sum_g A[g, j]`` (TPM scaled to the sample's
    total estimated count);
  - ``"lengthScaledTPM"``: ``N[g, j] = A[g, j] * mean_j L[g, j]``, scaled the same way,
    ``N[g, j] * sum_g C[g, j] / sum_g N[g, j]``.

  In both scaled modes the counts no longer depend on the per-sample lengths and ``L`` is not
  an offset (``length_offset = False``).
- Transcript-level output (``tx_out=True``, tximport's ``txOut``): the same without the sums
  (``L = l``), the scaled modes using the transcript lengths.
- RSEM: effective lengths below 1 are set to 1 in ``isoforms.results`` (as tximport does);
  ``genes.results`` are already gene-level: read as they are, with ``counts_from_abundance=
  "no"`` only (tximport warns and ignores another mode; here it is an error).
- kallisto ``abundance.h5`` has no TPM: ``a = 1e6 (c / l) / sum(c / l)``, as tximport's h5
  importer computes it.

Genes come out in sorted order (tximport sorts the gene factor; for the usual ids, such as
Ensembl ids, R's collation and code-point order agree).

Differences from tximport, each refusing rather than guessing:

- A transcript of the quantifications missing from ``tx2gene`` is an error naming it
  (tximport drops such transcripts with a message); ``missing_transcripts="drop"`` drops them
  as tximport does and records how many (``uns["tximport"]["dropped_transcripts"]``).
- A transcript mapped to two different genes in ``tx2gene`` is an error (tximport keeps the
  first row).
- Samples whose files list different transcripts are an error naming the first difference;
  the same transcripts in another order are aligned by id (tximport requires the same order).

DESeq2 needs integer counts: ``layers["counts"]`` (and ``X``) hold ``round(counts)`` with R's
rounding (half to even), as ``DESeqDataSetFromTximport`` does; the estimates are kept in
``layers["estimated_counts"]``, and the rounding is logged and recorded in ``uns["tximport"]``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from expression._io import quantifier_file, read_sample_sheet
from expression._validate import CountsError, check_sample_sheet

__all__ = [
    "COUNTS_FROM_ABUNDANCE",
    "QUANT_TYPES",
    "QuantTable",
    "Tximport",
    "make_counts_from_abundance",
    "read_quant_file",
    "read_quantifications",
    "read_tx2gene",
    "refuse_length_offsets",
    "summarize_to_gene",
]

log = logging.getLogger(__name__)

CountsFromAbundance = Literal["no", "scaledTPM", "lengthScaledTPM"]
#: tximport's ``countsFromAbundance`` modes.
COUNTS_FROM_ABUNDANCE: tuple[str, ...] = ("no", "scaledTPM", "lengthScaledTPM")
QuantType = Literal["auto", "salmon", "kallisto", "rsem"]
#: Accepted ``type`` values.
QUANT_TYPES: tuple[str, ...] = ("auto", "salmon", "kallisto", "rsem")

# (id, effective length, estimated counts, abundance) columns of each text format
_COLUMNS: dict[str, tuple[str, str, str, str]] = {
    "salmon": ("Name", "EffectiveLength", "NumReads", "TPM"),
    "kallisto": ("target_id", "eff_length", "est_counts", "tpm"),
    "rsem_isoforms": ("transcript_id", "effective_length", "expected_count", "TPM"),
    "rsem_genes": ("gene_id", "effective_length", "expected_count", "TPM"),
}
# file-name endings removed to make a sample id
_ENDINGS = (".isoforms.results", ".genes.results", ".quant.sf", ".sf", ".abundance.tsv",
            ".abundance.h5", ".tsv", ".h5", ".gz")
_GENERIC = frozenset({"quant.sf", "quant.sf.gz", "abundance.tsv", "abundance.tsv.gz",
                      "abundance.h5", "quant.genes.sf"})


@dataclass(frozen=True)
class QuantTable:
    """One sample's quantification as read from its file.

    Parameters
    ----------
    ids
        Transcript ids (gene ids for RSEM ``genes.results``), in file order.
    length
        Effective lengths.
    counts
        Estimated counts.
    abundance
        Abundances (TPM).
    format
        ``"salmon"``, ``"kallisto"``, ``"kallisto_h5"``, ``"rsem_isoforms"`` or
        ``"rsem_genes"``.
    path
        The file read.
    """

    ids: np.ndarray
    length: np.ndarray
    counts: np.ndarray
    abundance: np.ndarray
    format: str
    path: Path

    @property
    def type(self) -> str:
        """The quantifier: ``"salmon"``, ``"kallisto"`` or ``"rsem"``."""
        return self.format.split("_")[0]

    @property
    def gene_level(self) -> bool:
        """Whether the file is already gene-level (RSEM ``genes.results``)."""
        return self.format == "rsem_genes"


@dataclass(frozen=True)
class Tximport:
    """tximport's matrices, features x samples (tximport's layout).

    Parameters
    ----------
    rows
        Gene (or transcript) ids.
    abundance, counts, length
        ``abundance``, estimated ``counts`` (after ``counts_from_abundance``) and ``length``.
    counts_from_abundance
        The mode the counts were made with.
    """

    rows: np.ndarray
    abundance: np.ndarray
    counts: np.ndarray
    length: np.ndarray
    counts_from_abundance: str


def read_quant_file(path: str | PathLike[str], *, type: QuantType = "auto") -> QuantTable:
    """Read one salmon, kallisto or RSEM output (a file or its sample folder).

    Parameters
    ----------
    path
        ``quant.sf``, ``abundance.tsv``, ``abundance.h5``, ``*.isoforms.results``,
        ``*.genes.results``, or a folder holding ``quant.sf``/``abundance.h5``/``abundance.tsv``.
    type
        The quantifier expected (``"auto"``: whichever the header says).

    Returns
    -------
    QuantTable
        The ids, effective lengths, estimated counts and abundances.

    Raises
    ------
    CountsError
        Not a quantifier output, another quantifier's output than ``type``, or missing or
        negative values.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "quant.sf").write_text(
    ...     "Name\\tLength\\tEffectiveLength\\tTPM\\tNumReads\\nT1\\t900\\t700.5\\t1e6\\t12.5\\n")
    >>> read_quant_file(folder).counts
    array([12.5])
    """
    found = quantifier_file(path)
    if found is None:
        raise CountsError(
            f"{path}: not a salmon (quant.sf), kallisto (abundance.tsv/.h5) or RSEM "
            "(*.isoforms.results, *.genes.results) output (recognised by its header)"
        )
    file, fmt = found
    if type not in QUANT_TYPES:
        raise ValueError(f"type must be one of {QUANT_TYPES}, got {type!r}")
    if type != "auto" and fmt.split("_")[0] != type:
        raise CountsError(f"{file}: a {fmt.split('_')[0]} output, but type={type!r} was given")
    if fmt == "kallisto_h5":
        import h5py

        with h5py.File(file, "r") as h5:
            ids = np.asarray(h5["aux/ids"][()]).astype(str)
            length = np.asarray(h5["aux/eff_lengths"][()], dtype=np.float64)
            counts = np.asarray(h5["est_counts"][()], dtype=np.float64)
        rate = counts / length
        abundance = 1e6 * rate / rate.sum()
    else:
        id_col, len_col, count_col, abund_col = _COLUMNS[fmt]
        table = pd.read_csv(file, sep="\t", dtype={id_col: str})
        ids = table[id_col].to_numpy(dtype=str)
        length, counts, abundance = (
            pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=np.float64)
            for c in (len_col, count_col, abund_col)
        )
    for what, values in (("effective length", length), ("estimated count", counts),
                         ("abundance", abundance)):
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise CountsError(f"{file}: {what} {values[i]} of {str(ids[i])!r} is missing or negative",
                              gene=str(ids[i]))
    if len(set(ids)) != len(ids):
        dup = str(pd.Index(ids)[pd.Index(ids).duplicated()][0])
        raise CountsError(f"{file}: id {dup!r} is listed twice", gene=str(dup))
    return QuantTable(ids=ids, length=length, counts=counts, abundance=abundance, format=fmt,
                      path=file)


def read_tx2gene(tx2gene: Any, *, transcripts: Sequence[str] = ()) -> pd.Series:
    """A transcript -> gene table as a Series (index: transcript ids).

    Parameters
    ----------
    tx2gene
        A CSV/TSV path (first column transcript, second gene, as tximport reads it; a header
        row is detected: the first row is data when its first cell is one of ``transcripts``),
        a DataFrame (first two columns) or a mapping.
    transcripts
        The quantified transcript ids (for the header detection).

    Returns
    -------
    pandas.Series
        Gene id by transcript id; exact duplicate rows are dropped.

    Raises
    ------
    CountsError
        A transcript mapped to two different genes, or fewer than two columns.

    Examples
    --------
    >>> read_tx2gene({"T1": "G1", "T2": "G1"}).to_dict()
    {'T1': 'G1', 'T2': 'G1'}
    """
    if isinstance(tx2gene, Mapping):
        table = pd.DataFrame({"tx": list(tx2gene), "gene": list(tx2gene.values())})
    elif isinstance(tx2gene, pd.DataFrame):
        table = tx2gene
    else:
        path = Path(tx2gene)
        with path.open() as fh:
            first = fh.readline()
        sep = "\t" if "\t" in first else ","
        table = pd.read_csv(path, sep=sep, header=None, dtype=str)
        if str(table.iat[0, 0]) not in set(map(str, transcripts)):
            table = table.iloc[1:]
    if table.shape[1] < 2:
        raise CountsError(f"tx2gene needs two columns (transcript, gene), got {table.shape[1]}")
    tx = table.iloc[:, 0].astype(str).to_numpy()
    gene = table.iloc[:, 1].astype(str).to_numpy()
    pairs = pd.DataFrame({"tx": tx, "gene": gene}).drop_duplicates()
    conflict = pairs["tx"].duplicated(keep=False)
    if conflict.any():
        name = pairs["tx"][conflict].iloc[0]
        genes = sorted(pairs["gene"][pairs["tx"] == name])
        raise CountsError(
            f"tx2gene maps transcript {name!r} to several genes {genes} "
            f"({int(pairs['tx'][conflict].nunique())} such transcript(s)); tximport would keep "
            "the first row: fix the table", gene=name,
        )
    return pd.Series(pairs["gene"].to_numpy(), index=pairs["tx"].to_numpy(), name="gene")


def make_counts_from_abundance(
    counts: np.ndarray, abundance: np.ndarray, length: np.ndarray, *, mode: CountsFromAbundance
) -> np.ndarray:
    """Counts made from abundances (tximport's ``countsFromAbundance``), features x samples.

    Parameters
    ----------
    counts
        Estimated counts (their column sums are kept).
    abundance
        Abundances (TPM).
    length
        Average lengths (``"lengthScaledTPM"`` uses their mean across samples).
    mode
        ``"no"`` (``counts`` unchanged), ``"scaledTPM"`` or ``"lengthScaledTPM"``.

    Returns
    -------
    numpy.ndarray
        The counts.

    Examples
    --------
    >>> c = np.array([[10.0], [30.0]]); a = np.array([[1.0], [1.0]]); ln = np.array([[1.0], [3.0]])
    >>> make_counts_from_abundance(c, a, ln, mode="scaledTPM")[:, 0].tolist()
    [20.0, 20.0]
    >>> make_counts_from_abundance(c, a, ln, mode="lengthScaledTPM")[:, 0].tolist()
    [10.0, 30.0]
    """
    if mode not in COUNTS_FROM_ABUNDANCE:
        raise ValueError(f"counts_from_abundance must be one of {COUNTS_FROM_ABUNDANCE}, "
                         f"got {mode!r}")
    if mode == "no":
        return counts
    new = abundance * length.mean(axis=1, keepdims=True) if mode == "lengthScaledTPM" else abundance
    with np.errstate(invalid="ignore", divide="ignore"):
        return new * (counts.sum(axis=0) / new.sum(axis=0))


def summarize_to_gene(
    abundance: np.ndarray, counts: np.ndarray, length: np.ndarray, genes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Transcript matrices summed to genes, with tximport's average transcript length.

    Parameters
    ----------
    abundance, counts, length
        Transcripts x samples.
    genes
        The gene of each transcript.

    Returns
    -------
    tuple
        ``(gene_ids, abundance, counts, length)``, genes sorted; see the module docstring for
        the length and its replacement where a gene's abundance is zero.

    Examples
    --------
    >>> a = np.array([[1.0, 0.0], [3.0, 0.0]]); ln = np.array([[100.0, 200.0], [300.0, 400.0]])
    >>> ids, A, C, L = summarize_to_gene(a, a, ln, ["G", "G"])
    >>> L.round(9).tolist()  # sample 2 has no abundance: the geometric mean of the others
    [[250.0, 250.0]]
    """
    gene_ids, index = np.unique(np.asarray(genes, dtype=str), return_inverse=True)
    n = len(gene_ids)

    def rowsum(m: np.ndarray) -> np.ndarray:
        out = np.zeros((n, m.shape[1]))
        np.add.at(out, index, m)
        return out

    gene_abundance = rowsum(abundance)
    gene_counts = rowsum(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        gene_length = rowsum(abundance * length) / gene_abundance
    # mean over the gene's transcripts of each transcript's mean length across samples
    per_tx = length.mean(axis=1)
    mean_length = np.bincount(index, weights=per_tx, minlength=n) / np.bincount(index, minlength=n)
    missing = np.isnan(gene_length)
    for g in np.flatnonzero(missing.any(axis=1)):
        row = gene_length[g]
        if missing[g].all():
            row[:] = mean_length[g]
        else:
            row[missing[g]] = np.exp(np.mean(np.log(row[~missing[g]])))
    return gene_ids, gene_abundance, gene_counts, gene_length


def _sample_name(path: Path) -> str:
    if path.is_dir() or path.name in _GENERIC:
        return (path if path.is_dir() else path.parent).name
    name = path.name
    for ending in _ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return name.split(".")[0]


def _named_paths(paths: Any) -> dict[str, Path]:
    if isinstance(paths, Mapping):
        return {str(k): Path(v) for k, v in paths.items()}
    if isinstance(paths, str | PathLike):
        paths = [paths]
    named: dict[str, Path] = {}
    for p in map(Path, paths):
        name = _sample_name(p)
        if name in named:
            raise CountsError(
                f"two outputs give the sample id {name!r} ({named[name]} and {p}): pass a "
                "mapping {sample id: path}", sample=name,
            )
        named[name] = p
    return named


def _align(tables: dict[str, QuantTable]) -> list[np.ndarray]:
    """Transcript order of the first sample applied to all (same ids required)."""
    first_name, first = next(iter(tables.items()))
    orders = []
    for name, table in tables.items():
        if np.array_equal(table.ids, first.ids):
            orders.append(np.arange(len(first.ids)))
            continue
        position = pd.Index(table.ids).get_indexer(first.ids)
        extra = sorted(map(str, set(table.ids) - set(first.ids)))
        if (position < 0).any() or extra:
            which = (f"{str(first.ids[np.argmax(position < 0)])!r} is in {first_name!r} but not in "
                     f"{name!r}" if (position < 0).any() else
                     f"{extra[0]!r} is in {name!r} but not in {first_name!r}")
            raise CountsError(
                f"the samples list different ids: {which} ({table.path}); quantify every "
                "sample against the same index", sample=name,
            )
        log.info("%s: same ids as %s in another order, aligned by id", name, first_name)
        orders.append(position)
    return orders


def read_quantifications(
    paths: str | PathLike[str] | Sequence[str | PathLike[str]] | Mapping[str, str | PathLike[str]],
    *,
    type: QuantType = "auto",
    tx2gene: str | PathLike[str] | pd.DataFrame | Mapping[str, str] | None = None,
    counts_from_abundance: CountsFromAbundance = "no",
    tx_out: bool = False,
    missing_transcripts: Literal["error", "drop"] = "error",
    ignore_tx_version: bool = False,
    ignore_after_bar: bool = False,
    samples: str | PathLike[str] | pd.DataFrame | None = None,
) -> Any:
    """Read salmon, kallisto or RSEM quantifications as tximport does (samples x genes AnnData).

    Parameters
    ----------
    paths
        One output per sample: a file or a sample folder (``quant.sf``, ``abundance.h5`` or
        ``abundance.tsv`` inside), as a sequence (sample id: the folder name for ``quant.sf``/
        ``abundance.*``, else the file name without ``.isoforms.results``/``.genes.results``/
        its extensions) or a mapping ``{sample id: path}``.
    type
        ``"salmon"``, ``"kallisto"``, ``"rsem"``, or ``"auto"`` (from the files' headers); a
        file of another quantifier than the given type is an error.
    tx2gene
        Transcript-to-gene table (CSV/TSV path, DataFrame or mapping; first column transcript,
        second gene). Needed for transcript-level outputs unless ``tx_out=True``.
    counts_from_abundance
        ``"no"``, ``"scaledTPM"`` or ``"lengthScaledTPM"`` (see the module docstring).
    tx_out
        Transcript-level output (tximport's ``txOut``): no gene aggregation.
    missing_transcripts
        ``"error"``: a quantified transcript absent from ``tx2gene`` is an error naming it;
        ``"drop"``: such transcripts are dropped (tximport's behaviour), counted in
        ``uns["tximport"]["dropped_transcripts"]`` and logged.
    ignore_tx_version, ignore_after_bar
        Match the quantified ids to ``tx2gene`` without their ``.version`` (everything from
        the first dot) or everything from the first ``|`` (tximport's options of these names).
    samples
        A sample sheet (path or DataFrame indexed by sample id): becomes ``obs`` in its order;
        it must name exactly the samples (ids differing by a common suffix get a hint).

    Returns
    -------
    anndata.AnnData
        Samples x genes (or transcripts): ``layers["estimated_counts"]`` (tximport's
        ``counts``), ``layers["counts"]`` and ``X`` (those rounded half to even for DESeq2, as
        ``DESeqDataSetFromTximport`` does, int64), ``layers["abundance"]`` and
        ``layers["length"]``; ``uns["tximport"]`` records the type, mode, files, rounding and
        dropped transcripts; ``var["n_transcripts"]`` for gene-level output.

    Raises
    ------
    CountsError
        Unreadable or inconsistent outputs, a missing or ambiguous ``tx2gene``, transcripts
        missing from it (under ``"error"``), a scaled mode on RSEM ``genes.results``, or a
        sample sheet that does not match.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for s, reads in (("S1", "10.5"), ("S2", "3")):
    ...     (root / s).mkdir()
    ...     _ = (root / s / "quant.sf").write_text(
    ...         "Name\\tLength\\tEffectiveLength\\tTPM\\tNumReads\\n"
    ...         f"T1\\t900\\t700\\t500000\\t{reads}\\nT2\\t500\\t300\\t500000\\t4\\n")
    >>> adata = read_quantifications([root / "S1", root / "S2"], type="salmon",
    ...                              tx2gene={"T1": "G1", "T2": "G1"})
    >>> adata.layers["estimated_counts"][:, 0].tolist(), adata.layers["counts"][:, 0].tolist()
    ([14.5, 7.0], [14, 7])
    >>> adata.layers["length"][:, 0].tolist()
    [500.0, 500.0]
    """
    import anndata as ad

    if counts_from_abundance not in COUNTS_FROM_ABUNDANCE:
        raise ValueError(f"counts_from_abundance must be one of {COUNTS_FROM_ABUNDANCE}, "
                         f"got {counts_from_abundance!r}")
    if missing_transcripts not in ("error", "drop"):
        raise ValueError(f"missing_transcripts must be 'error' or 'drop', got {missing_transcripts!r}")
    if type not in QUANT_TYPES:
        raise ValueError(f"type must be one of {QUANT_TYPES}, got {type!r}")
    named = _named_paths(paths)
    if not named:
        raise CountsError("no quantification files given")
    tables = {name: read_quant_file(p, type=type) for name, p in named.items()}
    formats = {t.format.replace("_h5", "") for t in tables.values()}
    if len(formats) > 1:
        raise CountsError(f"the outputs mix formats {sorted(formats)}: read one kind at a time")
    first = next(iter(tables.values()))
    orders = _align(tables)
    ids = first.ids
    stack = {what: np.column_stack([getattr(t, what)[o] for t, o in zip(tables.values(), orders,
                                                                         strict=True)])
             for what in ("abundance", "counts", "length")}
    record: dict[str, Any] = {
        "type": first.type, "format": first.format,
        "counts_from_abundance": counts_from_abundance,
        "files": [str(t.path) for t in tables.values()], "dropped_transcripts": 0,
    }
    if first.gene_level:
        if counts_from_abundance != "no":
            raise CountsError(
                f"counts_from_abundance={counts_from_abundance!r} needs transcript-level "
                "estimates; RSEM genes.results are gene-level: use 'no' (or read the "
                "isoforms.results with a tx2gene); tximport ignores the mode with a warning"
            )
        if tx2gene is not None:
            log.warning("RSEM genes.results are gene-level: tx2gene is not used")
        rows, level = ids, "gene"
        result = Tximport(rows, stack["abundance"], stack["counts"], stack["length"], "no")
        n_tx = None
    else:
        if first.format == "rsem_isoforms":
            stack["length"] = np.maximum(stack["length"], 1.0)  # tximport: length < 1 -> 1
        if tx_out:
            counts = make_counts_from_abundance(stack["counts"], stack["abundance"], stack["length"],
                                           mode=counts_from_abundance)
            result = Tximport(ids, stack["abundance"], counts, stack["length"],
                              counts_from_abundance)
            level, n_tx = "transcript", None
        else:
            if tx2gene is None:
                raise CountsError(
                    f"{first.path}: {first.type} quantifies transcripts; pass tx2gene= (a "
                    "transcript-to-gene table) to get gene counts, or tx_out=True for "
                    "transcript-level output"
                )
            result, n_tx, record["dropped_transcripts"] = _to_genes(
                ids, stack, tx2gene, mode=counts_from_abundance,
                missing=missing_transcripts, ignore_tx_version=ignore_tx_version,
                ignore_after_bar=ignore_after_bar,
            )
            level = "gene"
    return _anndata(ad, result, list(tables), level, n_tx, record, samples)


def _to_genes(
    ids: np.ndarray, stack: dict[str, np.ndarray], tx2gene: Any, *, mode: CountsFromAbundance,
    missing: str, ignore_tx_version: bool, ignore_after_bar: bool,
) -> tuple[Tximport, np.ndarray, int]:
    keys = ids
    if ignore_tx_version:
        keys = np.array([re.sub(r"\..*", "", i) for i in ids])
    elif ignore_after_bar:
        keys = np.array([re.sub(r"\|.*", "", i) for i in ids])
    table = read_tx2gene(tx2gene, transcripts=keys)
    known = pd.Index(table.index).get_indexer(keys) >= 0
    if not known.any():
        raise CountsError(
            f"none of the quantified transcripts are in tx2gene (quantified: {keys[:3].tolist()}, "
            f"tx2gene: {table.index[:3].tolist()}); check that both come from the same "
            "annotation (ignore_tx_version=True or ignore_after_bar=True may help)"
        )
    dropped = int((~known).sum())
    if dropped:
        absent = keys[~known][:5].tolist()
        if missing == "error":
            raise CountsError(
                f"{dropped} quantified transcript(s) are not in tx2gene, e.g. {absent}; fix the "
                "table, or pass missing_transcripts='drop' to drop them (as tximport does)",
                gene=str(absent[0]),
            )
        log.warning("dropped %d quantified transcript(s) missing from tx2gene, e.g. %s",
                    dropped, absent)
    genes = table.loc[keys[known]].to_numpy()
    sub = {what: m[known] for what, m in stack.items()}
    gene_ids, abundance, counts, length = summarize_to_gene(
        sub["abundance"], sub["counts"], sub["length"], genes
    )
    counts = make_counts_from_abundance(counts, abundance, length, mode=mode)
    n_tx = pd.Series(genes).value_counts().reindex(gene_ids).to_numpy()
    return Tximport(gene_ids, abundance, counts, length, mode), n_tx, dropped


def _anndata(ad: Any, result: Tximport, names: list[str], level: str, n_tx: Any,
             record: dict[str, Any], samples: Any) -> Any:
    estimated = np.ascontiguousarray(result.counts.T)
    if not np.isfinite(estimated).all():
        s, g = np.argwhere(~np.isfinite(estimated))[0]
        raise CountsError(
            f"count {estimated[s, g]} at {str(result.rows[g])!r}, sample {names[s]!r}: a sample "
            "with no abundance cannot be scaled", gene=str(result.rows[g]), sample=names[s],
        )
    rounded = np.rint(estimated)
    changed = int((rounded != estimated).sum())
    counts = rounded.astype(np.int64)
    if changed:
        log.info("%d of %d estimated counts are not integers: rounded (half to even, as R's "
                 "round() in DESeqDataSetFromTximport) in layers['counts']; the estimates are "
                 "in layers['estimated_counts']", changed, estimated.size)
    record.update({
        "level": level, "length_offset": result.counts_from_abundance == "no",
        "rounded": changed,
        "rounding": "layers['counts'] = round(layers['estimated_counts']), half to even as R's "
                    "round() in DESeq2's DESeqDataSetFromTximport",
    })
    obs = pd.DataFrame(index=pd.Index(names, dtype=str))
    order = np.arange(len(names))
    if samples is not None:
        sheet = read_sample_sheet(samples) if isinstance(samples, str | PathLike) else samples.copy()
        sheet.index = sheet.index.astype(str)
        check_sample_sheet(names, list(sheet.index))
        order = pd.Index(names).get_indexer(sheet.index)
        obs = sheet
        record["files"] = [record["files"][i] for i in order]
    var = pd.DataFrame(index=pd.Index(result.rows.astype(str), dtype=str))
    if n_tx is not None:
        var["n_transcripts"] = np.asarray(n_tx, dtype=np.int64)
    adata = ad.AnnData(
        X=counts[order].copy(), obs=obs.copy(), var=var,
        layers={
            "counts": counts[order], "estimated_counts": estimated[order],
            "abundance": np.ascontiguousarray(result.abundance.T)[order],
            "length": np.ascontiguousarray(result.length.T)[order],
        },
        uns={"tximport": record, "orientation": "samples_x_genes",
             "orientation_detected_by": "file format"},
    )
    log.info("read %s quantifications: %d samples x %d %ss (countsFromAbundance=%s)",
             record["type"], adata.n_obs, adata.n_vars, level, record["counts_from_abundance"])
    return adata


def refuse_length_offsets(adata: Any, *, what: str) -> None:
    """Refuse counts that need tximport's length offsets, which phenoflow does not fit.

    With ``counts_from_abundance="no"`` DESeq2 (``DESeqDataSetFromTximport``) turns the average
    transcript lengths into per-gene normalisation factors; size factors, VST or DE on the
    rounded counts alone would answer another question without saying so.

    Parameters
    ----------
    adata
        Anything with an ``uns`` mapping (an AnnData from :func:`read_quantifications`).
    what
        The function asking, for the message.

    Raises
    ------
    CountsError
        The counts carry ``uns["tximport"]["length_offset"]``.

    Examples
    --------
    >>> import anndata
    >>> refuse_length_offsets(anndata.AnnData(uns={"tximport": {"length_offset": False}}),
    ...                       what="vst")
    """
    record = (getattr(adata, "uns", None) or {}).get("tximport") or {}
    if record.get("length_offset"):
        raise CountsError(
            f"{what}: these counts come from read_quantifications(counts_from_abundance='no'), "
            "whose average transcript lengths DESeq2 uses as per-gene offsets; phenoflow does not "
            "fit length offsets: read them with counts_from_abundance='lengthScaledTPM' "
            "(tximport's advice for tools without offsets)"
        )

