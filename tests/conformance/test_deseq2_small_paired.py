"""Paired designs with 2, 3 and 4 patients (1-3 residual degrees of freedom) against R DESeq2
1.38.3, made by ``tests/conformance/r_small_paired/make_small_paired.R``. R estimates the
dispersion prior variance there by simulation (0.25, 0.529 and 0.753 here); the MAD formula
phenoflow used before gave other dispersions and other significant genes."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import expression

FOLDER = Path(__file__).parent / "r_small_paired"


@pytest.mark.parametrize("n_patients", [2, 3, 4])
def test_small_paired_designs_equal_r(n_patients):
    counts = pd.read_csv(FOLDER / f"counts_{n_patients}patients.csv", index_col=0)
    sheet = pd.read_csv(FOLDER / f"samples_{n_patients}patients.csv", index_col=0)
    adata = ad.AnnData(counts.T.to_numpy(dtype=float), obs=sheet.loc[counts.columns].copy(),
                       var=pd.DataFrame(index=counts.index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = expression.differential_expression(
            adata, design="~ patient + timepoint", contrast=("timepoint", "post", "pre")
        ).table
    r = pd.read_csv(FOLDER / f"results_{n_patients}patients.csv", index_col=0,
                    float_precision="round_trip", na_values=["NA"])
    ours = ours.loc[r.index]
    assert (ours["pvalue"].isna() == r["pvalue"].isna()).all()
    assert (ours["padj"].isna() == r["padj"].isna()).all()
    assert int((ours["padj"] < 0.1).sum()) == int((r["padj"] < 0.1).sum())
    tested = r["pvalue"].notna()
    rel = np.abs(ours["pvalue"][tested] - r["pvalue"][tested]) / r["pvalue"][tested]
    assert float((rel < 1e-6).mean()) >= 0.999, float((rel < 1e-6).mean())
