"""Gene-set scores on a VST matrix (mean z, combined z, mean, ssGSEA) and their paired tests.

Offered: :func:`geneset_scores` (four methods, below), :func:`paired_score_tests` (paired t and
exact Wilcoxon signed-rank per set, by :func:`expression.paired_test`), :func:`read_gmt` and
:func:`default_gene_sets`.

Scores follow the definitions used for the project's R reference (``make_geneset_scores.R``):
genes whose values are identical in every sample are dropped, and a set of ``k`` genes present
in the remaining matrix scores

- ``"mean_z"``: the mean of its genes' z-scores (each gene z-scored over the samples, sample
  standard deviation, ``ddof=1``);
- ``"combined_z"``: the sum of its genes' z-scores divided by ``sqrt(k)`` (Lee et al. 2008;
  GSVA's ``method="zscore"``);
- ``"mean"``: the mean of its genes' raw (e.g. VST) values;
- ``"ssgsea"``: single-sample GSEA (Barbie et al. 2009) as GSVA 1.46 computes it with
  ``ssgsea.norm=FALSE``, a rank-based score that does not depend on the other samples. In each
  sample the ``n`` genes are ranked by value (1 = lowest; ties get their average rank, which
  GSVA then truncates to an integer, so tied genes share ``floor`` of their average rank) and
  walked from the highest rank down, tied genes in matrix row order. With the set's genes at
  walk positions ``p_i`` (1 = first) and weights ``w_i = rank_i ** 0.25``, the score is the sum
  over the walk of the weighted in-set cumulative fraction minus the out-of-set cumulative
  fraction, which is ``sum_i w_i (n - p_i + 1) / sum_i w_i - (n (n + 1) / 2 -
  sum_i (n - p_i + 1)) / (n - k)``. It matches GSVA 1.46.0's reference to about 1e-12.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from expression._paired import paired_test

__all__ = ["default_gene_sets", "geneset_scores", "paired_score_tests", "read_gmt"]

log = logging.getLogger(__name__)

ScoreMethod = Literal["mean_z", "combined_z", "mean", "ssgsea"]
METHODS: tuple[str, ...] = ("mean_z", "combined_z", "mean", "ssgsea")
SSGSEA_WEIGHT = 0.25  # GSVA's alpha (tau): the exponent of the rank weights
GeneSets = Mapping[str, Sequence[str]] | str | PathLike[str]

# Our own small collection (gene choices made for this project, not taken from MSigDB files).
# Both the current (CCN2) and the former (CTGF) symbol of connective tissue growth factor are
# listed; a matrix normally carries only one of them and absent genes are dropped.
_DEFAULT_SETS: dict[str, tuple[str, ...]] = {
    "IFN_RESPONSE": (
        "IFI44", "IFI44L", "IFI27", "IFI6", "ISG15", "MX1", "MX2", "RSAD2", "OAS1", "OAS2",
        "OAS3", "OASL", "IFIT1", "IFIT2", "IFIT3", "IFIT5", "SIGLEC1", "HERC5", "USP18",
        "EPSTI1", "XAF1", "IFI35", "IRF7", "STAT1", "CMPK2", "LY6E", "BST2", "SPATS2L",
    ),
    "TGFB_RESPONSE": (
        "TGFB1", "TGFB2", "TGFB3", "TGFBI", "SERPINE1", "COMP", "THBS1", "CCN2", "CTGF",
        "COL1A1", "COL1A2", "COL3A1", "COL5A1", "FN1", "POSTN", "ACTA2", "SMAD7", "SKIL",
        "LTBP2", "TIMP1",
    ),
    # Farina et al. 2010 (J Invest Dermatol 130:2583): 4-gene SSc skin score.
    "SSC_SKIN_4GENE": ("COMP", "THBS1", "SIGLEC1", "IFI44"),
}  # fmt: skip


def default_gene_sets() -> dict[str, list[str]]:
    """Return the built-in gene-set collection (a fresh copy).

    Returns
    -------
    dict of str to list of str
        ``IFN_RESPONSE`` (interferon-stimulated genes), ``TGFB_RESPONSE`` (TGF-beta ligands and
        fibrotic targets) and ``SSC_SKIN_4GENE`` (COMP, THBS1, SIGLEC1, IFI44; Farina et al.
        2010), HGNC symbols.
    """
    return {name: list(genes) for name, genes in _DEFAULT_SETS.items()}


def read_gmt(path: str | PathLike[str]) -> dict[str, list[str]]:
    """Read a GMT file (one set a line: name, description, genes..., tab separated).

    Parameters
    ----------
    path
        The ``.gmt`` file.

    Returns
    -------
    dict of str to list of str
        Set name to its genes in file order, duplicates and empty fields removed.

    Raises
    ------
    ValueError
        If a line has no description field or a set name occurs twice.
    """
    sets: dict[str, list[str]] = {}
    with Path(path).open() as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 2 or not fields[0].strip():
                raise ValueError(f"{path}:{lineno}: expected 'name<TAB>description<TAB>genes...'")
            name = fields[0].strip()
            if name in sets:
                raise ValueError(f"{path}:{lineno}: gene set {name!r} occurs twice")
            sets[name] = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
    return sets


def _frame_orientation(
    frame: pd.DataFrame, sets: Mapping[str, Sequence[str]], orientation: str
) -> pd.DataFrame:
    """The DataFrame as genes x samples: checked (``"auto"``), trusted or transposed."""
    from expression._validate import (
        MIN_GENES_FOR_SHAPE,
        ORIENTATIONS,
        SHAPE_RATIO,
        OrientationError,
        genes_x_samples_evidence,
    )

    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if orientation == "genes_x_samples":
        return frame
    if orientation == "samples_x_genes":
        log.warning("geneset_scores: matrix given as samples x genes %s, transposed "
                    "(orientation='samples_x_genes')", frame.shape)
        return frame.T
    members = {g for genes in sets.values() for g in genes}
    in_rows = sum(str(g) in members for g in frame.index)
    in_cols = sum(str(c) in members for c in frame.columns)
    n_rows, n_cols = frame.shape
    reason = None
    if in_cols and not in_rows:
        reason = f"{in_cols} of its column labels are genes of the gene sets, none of its row labels"
    elif genes_x_samples_evidence((n_cols, n_rows), rows=frame.columns, columns=frame.index):
        reason = (
            "its column labels look like genes" if n_cols < MIN_GENES_FOR_SHAPE
            or n_cols < SHAPE_RATIO * n_rows
            else f"{n_rows} rows x {n_cols} columns: far more columns than rows"
        )
    if reason is not None:
        raise OrientationError(
            f"geneset_scores: the matrix ({frame.shape[0]} x {frame.shape[1]}) looks like "
            f"samples x genes ({reason}); a DataFrame is taken as genes x samples (rows = "
            "genes): pass matrix.T, or orientation='samples_x_genes' to transpose it here "
            "(orientation='genes_x_samples' if the rows really are genes)",
            shape=tuple(frame.shape),
        )
    return frame


def _genes_x_samples(
    matrix: Any, layer: str | None, sets: Mapping[str, Sequence[str]], orientation: str
) -> pd.DataFrame:
    if isinstance(matrix, pd.DataFrame):
        if layer is not None:
            raise ValueError("layer= applies to AnnData input only")
        frame = _frame_orientation(matrix, sets, orientation)
    else:
        try:
            import anndata as ad
        except ImportError as err:  # pragma: no cover - anndata is a dependency
            raise TypeError("matrix must be a pandas DataFrame or an AnnData") from err
        if not isinstance(matrix, ad.AnnData):
            raise TypeError("matrix must be a genes x samples DataFrame or an AnnData")
        from expression._validate import check_anndata_orientation

        check_anndata_orientation(
            matrix, what="geneset_scores",
            orientation="samples_x_genes" if orientation == "genes_x_samples" else "auto",
        )
        values = matrix.X if layer is None else matrix.layers[layer]
        if hasattr(values, "toarray"):
            values = values.toarray()
        frame = pd.DataFrame(
            np.asarray(values, dtype=float).T,
            index=matrix.var_names.astype(str),
            columns=matrix.obs_names.astype(str),
        )
    if not frame.index.is_unique:
        raise ValueError("gene ids (matrix rows) must be unique")
    out = frame.astype(float)
    if not np.isfinite(out.to_numpy()).all():
        raise ValueError("matrix contains NaN or infinite values")
    return out


def _as_sets(gene_sets: GeneSets) -> dict[str, list[str]]:
    if isinstance(gene_sets, str | PathLike):
        return read_gmt(gene_sets)
    return {str(k): list(dict.fromkeys(map(str, v))) for k, v in gene_sets.items()}


def geneset_scores(
    matrix: Any,
    gene_sets: GeneSets,
    *,
    method: ScoreMethod = "mean_z",
    min_size: int = 1,
    layer: str | None = None,
    orientation: Literal["auto", "genes_x_samples", "samples_x_genes"] = "auto",
) -> pd.DataFrame:
    """Score gene sets per sample.

    Parameters
    ----------
    matrix
        A genes x samples DataFrame of log-scale values (e.g. DESeq2 VST), or an AnnData
        (samples x genes) whose ``X`` or ``layers[layer]`` holds them.
    gene_sets
        Mapping of set name to genes, or the path of a GMT file.
    method
        ``"mean_z"``, ``"combined_z"`` (sum z / sqrt(k)), ``"mean"`` or ``"ssgsea"``
        (un-normalised, as GSVA 1.46; see the module docstring).
    min_size
        Sets with fewer genes left in the matrix (after dropping absent and constant genes)
        are left out of the result. A set holding every remaining gene cannot be scored by
        ``"ssgsea"`` (no genes outside it) and is left out too.
    layer
        AnnData layer to read; ``None`` reads ``X``.
    orientation
        The layout of a DataFrame ``matrix``. ``"auto"`` (default): genes x samples expected,
        and a frame whose columns (not rows) hold the sets' genes, whose column index is
        named like genes, or that has far more columns than rows is refused
        (:class:`expression.OrientationError`). ``"samples_x_genes"`` transposes it with a
        logged notice; ``"genes_x_samples"`` skips the check. An AnnData must be samples x
        genes (checked unless ``"genes_x_samples"``).

    Returns
    -------
    pandas.DataFrame
        Sets x samples, in the order of ``gene_sets``. ``attrs["n_genes"]`` maps each set to the
        number of genes used, ``attrs["method"]`` records the method.

    Raises
    ------
    ValueError
        On an unknown method, ``min_size < 1``, duplicate gene ids or non-finite values;
        :class:`expression.OrientationError` for a matrix laid out the other way.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if min_size < 1:
        raise ValueError("min_size must be at least 1")
    sets = _as_sets(gene_sets)
    frame = _genes_x_samples(matrix, layer, sets, orientation)
    if frame.shape[1] < 2:
        raise ValueError("at least two samples are needed")
    values = frame.to_numpy()
    # exactly constant rows (R's sd is exactly 0 there; numpy's can be 1e-16)
    keep = ~(values == values[:, :1]).all(axis=1)
    values = values[keep]
    genes = frame.index[keep]
    position = pd.Series(np.arange(len(genes)), index=genes)
    if method == "ssgsea":
        data = values
        ranks, walk_pos = _ssgsea_ranks(values)
    elif method == "mean":
        data = values
    else:
        sd = values.std(axis=1, ddof=1)
        data = (values - values.mean(axis=1, keepdims=True)) / sd[:, None]
    rows: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for name, members in sets.items():
        idx = position.reindex(members).dropna().to_numpy(dtype=np.intp)
        if idx.size < min_size or (method == "ssgsea" and idx.size == len(genes)):
            continue
        if method == "ssgsea":
            rows[name] = _ssgsea_walk(ranks[idx], walk_pos[idx], len(genes))
        else:
            total = data[idx].sum(axis=0)
            rows[name] = total / np.sqrt(idx.size) if method == "combined_z" else total / idx.size
        sizes[name] = int(idx.size)
    out = pd.DataFrame.from_dict(rows, orient="index", columns=frame.columns)
    out.index.name = "gene_set"
    out.attrs["n_genes"] = sizes
    out.attrs["method"] = method
    return out


def _ssgsea_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample integer ranks (average ranks of ties, truncated) and walk positions.

    Returns genes x samples arrays: ``ranks`` (1 = lowest value) and ``walk_pos`` (1 = first
    step of the walk: highest rank first, equal ranks in row order).
    """
    ranks = np.floor(stats.rankdata(values, method="average", axis=0))
    order = np.argsort(-ranks, axis=0, kind="stable")
    walk_pos = np.empty(order.shape, dtype=np.float64)
    steps = np.arange(1, values.shape[0] + 1, dtype=np.float64)
    np.put_along_axis(walk_pos, order, steps[:, None], axis=0)
    return ranks, walk_pos


def _ssgsea_walk(ranks: np.ndarray, walk_pos: np.ndarray, n_genes: int) -> np.ndarray:
    """Un-normalised ssGSEA enrichment per sample of one set (its genes' rows of the ranks)."""
    k = ranks.shape[0]
    weight = ranks**SSGSEA_WEIGHT
    remaining = n_genes - walk_pos + 1  # steps from each set gene's position to the walk's end
    inside = (weight * remaining).sum(axis=0) / weight.sum(axis=0)
    outside = (n_genes * (n_genes + 1) / 2 - remaining.sum(axis=0)) / (n_genes - k)
    return inside - outside


def paired_score_tests(
    scores: pd.DataFrame,
    sample_sheet: pd.DataFrame,
    *,
    pair: str = "patient",
    by: str = "timepoint",
    levels: tuple[str, str] = ("pre", "post"),
    score_name: str | None = None,
) -> pd.DataFrame:
    """Paired t and exact Wilcoxon signed-rank tests of ``levels[1] - levels[0]`` per set.

    Parameters
    ----------
    scores
        Sets x samples, as returned by :func:`geneset_scores`.
    sample_sheet
        Indexed by sample id; must hold the ``pair`` and ``by`` columns for every scored sample.
    pair
        Column naming the unit measured twice (e.g. the patient).
    by
        Column holding the condition.
    levels
        ``(reference, other)``; differences are ``other - reference``.
    score_name
        Value of the ``score`` column; defaults to ``scores.attrs["method"]``.

    Returns
    -------
    pandas.DataFrame
        One row per set: ``score``, ``gene_set``, ``n_genes`` (from ``scores.attrs``, else NA),
        ``n_pairs``, ``mean_diff``, ``sd_diff``, ``t``, ``df``, ``t_pvalue`` (two-sided paired
        t, R's ``t.test(paired = TRUE)``), ``wilcoxon_V`` (R's V: the sum of the ranks of the
        positive differences) and ``wilcoxon_pvalue`` (two-sided, exact distribution: R's
        ``psignrank`` without ties; with tied ranks the exact sign-flip permutation distribution
        on mid-ranks). Both tests are :func:`expression.paired_test`.

    Raises
    ------
    ValueError
        If a pair has more than one sample at a level, or fewer than two complete pairs exist.

    Notes
    -----
    Pairs missing one of the two levels are left out (``n_pairs`` reports how many were used).
    Zero differences are dropped before ranking (R's convention); a set whose differences are
    all zero (Wilcoxon) or constant (t) gets NaN statistic and P.
    """
    sheet = sample_sheet.loc[scores.columns.astype(str), [pair, by]].astype(str)
    ref_level, other_level = (str(level) for level in levels)
    sheet = sheet[sheet[by].isin([ref_level, other_level])]
    if sheet.duplicated().any():
        raise ValueError(f"some {pair!r} has more than one sample at one {by!r} level")
    wide = sheet.reset_index(names="sample").pivot(index=pair, columns=by, values="sample")
    wide = wide.reindex(columns=[ref_level, other_level]).dropna()
    if len(wide) < 2:
        raise ValueError(f"fewer than two complete {ref_level}/{other_level} pairs")
    before = scores[wide[ref_level]].to_numpy(dtype=float)
    after = scores[wide[other_level]].to_numpy(dtype=float)
    sizes = scores.attrs.get("n_genes", {})
    name = score_name if score_name is not None else scores.attrs.get("method", "score")
    records = []
    for i, gene_set in enumerate(scores.index):
        pre, post = before[i], after[i]
        # the exact Wilcoxon P at any number of pairs (no switch to the normal approximation)
        t_res = paired_test(pre, post, method="t")
        w_res = paired_test(pre, post, method="wilcoxon", exact_max=max(len(pre), 1))
        records.append(
            {
                "score": name,
                "gene_set": gene_set,
                "n_genes": sizes.get(gene_set, pd.NA),
                "n_pairs": t_res.n,
                "mean_diff": t_res.diff.mean,
                "sd_diff": t_res.diff.sd,
                "t": t_res.statistic,
                "df": t_res.df,
                "t_pvalue": t_res.pvalue,
                "wilcoxon_V": w_res.statistic,
                "wilcoxon_pvalue": w_res.pvalue,
            }
        )
    return pd.DataFrame.from_records(records)
