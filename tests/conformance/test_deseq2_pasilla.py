"""Real RNA-seq (pasilla, ``../shared/realworld/rnaseq``) against R DESeq2 1.38.3's own results.

Independent filtering follows R (clowess, :func:`expression._inference.r_filter_threshold`):
with pydeseq2's lowess the threshold picked the next theta on ``~ type + condition`` (237 padj
NA differences, 1343 vs 1330 significant genes).

The bar is R's agreement with itself: ``r_pasilla_self/make_pasilla_self.R`` runs R's
``DESeq`` + ``results`` with the samples in the file's order and reversed (the same data and
model, only the order of floating-point operations changes) and records how many p-values stay
within 1e-6 relative (``self_agreement.csv``): ``~ condition`` 12,355 of 12,358 (99.976%),
``~ type + condition`` 12,352 of 12,359 (99.943%), the same padj NA pattern and padj < 0.1 counts.
Those differences come from a few genes per thousand whose dispersion line search compares log
posteriors that differ in the last bits: pasilla's FBgn0011300 under ``~ condition`` keeps its
starting estimate when R rejects its first proposal and goes to the grid when R accepts it, and
moves the fitted trend and every p-value by up to 1e-3.

Measured here (bit-for-bit R arithmetic in the size factors, ``baseMean``/``baseVar``, the
rough/moments starts, the linear-model and IRLS means, the log posterior and its derivative, the
trend's ``glm`` and the L-BFGS-B refits): ``~ condition`` 12,358 of 12,358 within 1e-6 (largest
difference 3e-13; before: 8,231, 66.6%), ``~ type + condition`` 12,353 of 12,359 (largest 1.1e-5;
before: 12,349; with the Cox-Reid weights as divisions and C-library ``exp`` size factors). The MAP step of ``~ type + condition`` still differs in the last bits on a few
dozen genes (its trend differs from R's by one unit in the last place: about 0.2% of the gene-wise
estimates are not yet R's bits), which is where its 6 remaining genes come from.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import expression
from tests.conftest import SHARED, require_shared

PASILLA = SHARED / "realworld" / "rnaseq" / "pasilla"
SELF = Path(__file__).parent / "r_pasilla_self" / "self_agreement.csv"


def _run(design: str) -> pd.DataFrame:
    folder = require_shared(PASILLA)
    counts = pd.read_csv(folder / "counts.tsv", sep="\t", index_col=0)
    sheet = pd.read_csv(folder / "samples.csv", index_col=0).loc[counts.columns]
    adata = ad.AnnData(counts.T.to_numpy(dtype=float), obs=sheet.copy(),
                       var=pd.DataFrame(index=counts.index))
    adata.obs["type"] = adata.obs["type"].str.replace("-", "_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return expression.differential_expression(
            adata, design=design, contrast=("condition", "treated", "untreated")
        ).table


def test_r_self_agreement_reference() -> None:
    """R's reversed-order run: the numbers the thresholds below are taken from."""
    ref = pd.read_csv(SELF, index_col="design")
    assert ref["same_padj_na"].all()
    assert (ref["n_padj_lt_0.1"] == ref["n_padj_lt_0.1_reversed"]).all()
    assert ref.loc["~ condition", "n_within_1e6"] == 12355
    assert ref.loc["~ type + condition", "n_within_1e6"] == 12352


@pytest.mark.parametrize(("design", "folder", "max_rel"), [
    ("~ type + condition", "r_type_condition", 1e-4),
    ("~ condition", "r_condition", 1e-9),  # measured 3e-13
])
def test_pasilla_equals_r(design: str, folder: str, max_rel: float) -> None:
    ours = _run(design)
    r = pd.read_csv(require_shared(PASILLA / folder / "results.csv"), index_col=0,
                    float_precision="round_trip")
    ours = ours.loc[r.index]
    assert (ours["padj"].isna() == r["padj"].isna()).all()
    assert int((ours["padj"] < 0.1).sum()) == int((r["padj"] < 0.1).sum())
    both = r["pvalue"].notna()
    assert (ours["pvalue"].notna() == both).all()
    rel = np.abs(ours["pvalue"][both] - r["pvalue"][both]) / r["pvalue"][both]
    # at least as many p-values within 1e-6 as R keeps under reversed sample order
    r_self = int(pd.read_csv(SELF, index_col="design").loc[design, "n_within_1e6"])
    assert int((rel < 1e-6).sum()) >= r_self
    assert float(rel.max()) < max_rel
