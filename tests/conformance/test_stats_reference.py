"""Paired tests on the gene-set scores against R's ``t.test``/``wilcox.test`` (../shared reference).

R 4.2.2, ``make_geneset_scores.R``: ``t.test(post, pre, paired = TRUE)`` and
``wilcox.test(post, pre, paired = TRUE, exact = TRUE)`` on each score of 10 patients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import paired_test

SCORE_FILES = {
    "mean_z": "scores_mean_z.csv",
    "comb_z": "scores_combined_z.csv",
    "mean_expr": "scores_mean_vst.csv",
    "gz": "scores_gsva_zscore.csv",
    "gs": "scores_ssgsea_unnormalized.csv",
    "gg": "scores_gsva_gaussian.csv",
}


@pytest.mark.parametrize("score", sorted(SCORE_FILES))
def test_paired_tests_match_r(conformance: Path, score: str) -> None:
    folder = conformance / "deseq2" / "paired"
    reference = pd.read_csv(folder / "scores_paired_tests.csv")
    reference = reference[reference["score"] == score]
    scores = pd.read_csv(folder / SCORE_FILES[score], index_col=0)
    patients = [c.removesuffix("_pre") for c in scores.columns if c.endswith("_pre")]
    assert len(reference) == 3 and len(patients) == 10
    for _, expected in reference.iterrows():
        row = scores.loc[expected["gene_set"]]
        pre = row[[f"{p}_pre" for p in patients]].to_numpy(dtype=float)
        post = row[[f"{p}_post" for p in patients]].to_numpy(dtype=float)

        t = paired_test(pre, post, method="t")
        assert t.n == 10 and t.df == expected["df"]
        np.testing.assert_allclose(t.statistic, expected["t"], rtol=1e-10)
        np.testing.assert_allclose(t.pvalue, expected["t_pvalue"], rtol=1e-10)
        np.testing.assert_allclose(t.diff.mean, expected["mean_diff"], rtol=1e-10)
        np.testing.assert_allclose(t.diff.sd, expected["sd_diff"], rtol=1e-10)

        w = paired_test(pre, post)
        assert w.method == "Wilcoxon signed-rank, exact"
        assert w.statistic == expected["wilcoxon_V"]
        np.testing.assert_allclose(w.pvalue, expected["wilcoxon_pvalue"], rtol=1e-10)
