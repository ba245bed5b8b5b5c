"""Gene-set scores and their paired tests against R (``make_geneset_scores.R``, GSVA 1.46.0).

Reached: mean_z, combined_z and mean scores <= 1e-14 absolute; un-normalised ssGSEA
(GSVA ``method="ssgsea", ssgsea.norm=FALSE``, |scores| 0.2 to 130) <= 7e-13 absolute;
paired-test t, p-values, mean/sd of the differences <= 5e-13 relative; df, n_genes and
Wilcoxon V exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from expression import geneset_scores, paired_score_tests, read_gmt
from tests.conftest import CONFORMANCE, require_shared

PAIRED = CONFORMANCE / "deseq2" / "paired"
GMT = CONFORMANCE / "genesets" / "hallmark_ifn_tgfb.v7.0.symbols.gmt"
SCORE_ATOL = 1e-10
TEST_RTOL = 1e-10
# our method -> (reference matrix, score label in scores_paired_tests.csv)
CASES = {
    "mean_z": ("scores_mean_z.csv", "mean_z"),
    "combined_z": ("scores_combined_z.csv", "comb_z"),
    "mean": ("scores_mean_vst.csv", "mean_expr"),
    "ssgsea": ("scores_ssgsea_unnormalized.csv", "gs"),
}


def _csv(name: str, **kwargs) -> pd.DataFrame:
    return pd.read_csv(require_shared(PAIRED / name), **kwargs)


@pytest.fixture(scope="module")
def vst() -> pd.DataFrame:
    return _csv("r_vst_design.csv", index_col=0)


@pytest.fixture(scope="module")
def sets() -> dict[str, list[str]]:
    return read_gmt(require_shared(GMT))


@pytest.mark.parametrize("method", list(CASES))
def test_scores_match_r(vst: pd.DataFrame, sets: dict[str, list[str]], method: str) -> None:
    ref = _csv(CASES[method][0], index_col=0)
    got = geneset_scores(vst, sets, method=method)
    assert list(got.index) == list(ref.index)
    assert list(got.columns) == list(ref.columns)
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=0, atol=SCORE_ATOL)
    # the all-zero filler row has zero variance and is dropped, as in R (999 genes kept)
    assert got.attrs["n_genes"] == {
        "HALLMARK_TGF_BETA_SIGNALING": 54,
        "HALLMARK_INTERFERON_ALPHA_RESPONSE": 97,
        "HALLMARK_INTERFERON_GAMMA_RESPONSE": 200,
    }


def test_combined_z_equals_gsva_zscore(vst: pd.DataFrame, sets: dict[str, list[str]]) -> None:
    ref = _csv("scores_gsva_zscore.csv", index_col=0)
    got = geneset_scores(vst, sets, method="combined_z")
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=0, atol=SCORE_ATOL)


@pytest.mark.parametrize("method", list(CASES))
def test_paired_tests_match_r(vst: pd.DataFrame, sets: dict[str, list[str]], method: str) -> None:
    metadata = _csv("metadata.csv", index_col=0)
    label = CASES[method][1]
    ref = _csv("scores_paired_tests.csv")
    ref = ref[ref.score == label].set_index("gene_set")
    got = paired_score_tests(geneset_scores(vst, sets, method=method), metadata, score_name=label)
    got = got.set_index("gene_set")
    assert list(got.index) == list(ref.index)
    assert (got.score == label).all()
    assert (got.n_pairs == 10).all()
    for col in ("n_genes", "df", "wilcoxon_V"):
        np.testing.assert_array_equal(got[col].to_numpy(float), ref[col].to_numpy(float))
    for col in ("mean_diff", "sd_diff", "t", "t_pvalue", "wilcoxon_pvalue"):
        np.testing.assert_allclose(
            got[col].to_numpy(float), ref[col].to_numpy(float), rtol=TEST_RTOL, atol=0
        )
