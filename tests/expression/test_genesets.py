"""Gene-set scores and paired score tests on small hand-made matrices."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from expression import default_gene_sets, geneset_scores, paired_score_tests, read_gmt


@pytest.fixture()
def matrix() -> pd.DataFrame:
    """Genes x samples: four varying genes and one constant gene."""
    rng = np.random.default_rng(11)
    values = rng.normal(6.0, 1.0, size=(5, 6))
    values[4] = 3.0  # zero variance
    return pd.DataFrame(
        values, index=["A", "B", "C", "D", "FLAT"], columns=[f"s{i}" for i in range(6)]
    )


def _z(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sub(frame.mean(axis=1), axis=0).div(frame.std(axis=1, ddof=1), axis=0)


def test_read_gmt(tmp_path: Path) -> None:
    path = tmp_path / "sets.gmt"
    path.write_text(
        "# comment\nSET1\tdesc\tA\tB\tA\t\nSET2\thttp://x\tC\r\n\nEMPTY\tnone\n", encoding="utf-8"
    )
    assert read_gmt(path) == {"SET1": ["A", "B"], "SET2": ["C"], "EMPTY": []}


@pytest.mark.parametrize("text", ["ONLYNAME\n", "S\td\tA\nS\td\tB\n"])
def test_read_gmt_rejects_bad_lines(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.gmt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError):
        read_gmt(path)


def test_gmt_path_and_mapping_agree(tmp_path: Path, matrix: pd.DataFrame) -> None:
    path = tmp_path / "sets.gmt"
    path.write_text("S1\td\tA\tB\tC\nS2\td\tC\tD\n", encoding="utf-8")
    from_file = geneset_scores(matrix, path)
    from_map = geneset_scores(matrix, {"S1": ["A", "B", "C"], "S2": ["C", "D"]})
    pd.testing.assert_frame_equal(from_file, from_map)


def test_methods_by_hand(matrix: pd.DataFrame) -> None:
    sets = {"S": ["A", "B", "C"]}
    z = _z(matrix.loc[["A", "B", "C"]])
    mean_z = geneset_scores(matrix, sets, method="mean_z")
    comb_z = geneset_scores(matrix, sets, method="combined_z")
    mean = geneset_scores(matrix, sets, method="mean")
    np.testing.assert_allclose(mean_z.loc["S"], z.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(comb_z.loc["S"], z.sum(axis=0) / np.sqrt(3), rtol=1e-13)
    np.testing.assert_allclose(mean.loc["S"], matrix.loc[["A", "B", "C"]].mean(axis=0))
    assert mean_z.attrs == {"n_genes": {"S": 3}, "method": "mean_z"}
    assert list(mean_z.columns) == list(matrix.columns)


def test_missing_and_zero_variance_genes_are_dropped(matrix: pd.DataFrame) -> None:
    with_extra = geneset_scores(matrix, {"S": ["A", "B", "NOT_THERE", "FLAT", "A"]})
    plain = geneset_scores(matrix, {"S": ["A", "B"]})
    pd.testing.assert_frame_equal(with_extra, plain)
    assert with_extra.attrs["n_genes"] == {"S": 2}


def test_min_size_and_empty_sets(matrix: pd.DataFrame) -> None:
    sets = {"BIG": ["A", "B", "C"], "SMALL": ["D", "FLAT"], "NONE": ["X", "Y"]}
    assert list(geneset_scores(matrix, sets).index) == ["BIG", "SMALL"]
    out = geneset_scores(matrix, sets, min_size=2)
    assert list(out.index) == ["BIG"]
    assert out.attrs["n_genes"] == {"BIG": 3}
    assert geneset_scores(matrix, {"NONE": ["X"]}).shape == (0, 6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"method": "ssgsea"}, "method"), ({"min_size": 0}, "min_size"), ({"layer": "x"}, "AnnData")],
)
def test_bad_options(matrix: pd.DataFrame, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        geneset_scores(matrix, {"S": ["A"]}, **kwargs)


def test_non_finite_and_duplicate_genes_rejected(matrix: pd.DataFrame) -> None:
    bad = matrix.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        geneset_scores(bad, {"S": ["A"]})
    with pytest.raises(ValueError, match="unique"):
        geneset_scores(matrix.rename(index={"B": "A"}), {"S": ["A"]})


def test_anndata_input_and_layer(matrix: pd.DataFrame) -> None:
    sets = {"S1": ["A", "B", "C"], "S2": ["D"]}
    obs = pd.DataFrame(index=matrix.columns)
    var = pd.DataFrame(index=matrix.index)
    adata = ad.AnnData(
        X=np.zeros(matrix.T.shape), obs=obs, var=var, layers={"vst": matrix.T.to_numpy()}
    )
    expected = geneset_scores(matrix, sets, method="combined_z")
    got = geneset_scores(adata, sets, method="combined_z", layer="vst")
    pd.testing.assert_frame_equal(got, expected)
    adata.X = matrix.T.to_numpy()
    pd.testing.assert_frame_equal(geneset_scores(adata, sets, method="combined_z"), expected)
    with pytest.raises(TypeError):
        geneset_scores(matrix.to_numpy(), sets)


def test_default_gene_sets() -> None:
    sets = default_gene_sets()
    assert set(sets) == {"IFN_RESPONSE", "TGFB_RESPONSE", "SSC_SKIN_4GENE"}
    assert sets["SSC_SKIN_4GENE"] == ["COMP", "THBS1", "SIGLEC1", "IFI44"]
    assert {"IFI44", "IFI44L", "IFI27", "ISG15", "MX1", "RSAD2", "SIGLEC1"} <= set(
        sets["IFN_RESPONSE"]
    )
    assert {"TGFB1", "SERPINE1", "COMP", "THBS1", "COL1A1", "CCN2"} <= set(sets["TGFB_RESPONSE"])
    for genes in sets.values():
        assert len(genes) == len(set(genes))
    sets["IFN_RESPONSE"].clear()  # a fresh copy each call
    assert default_gene_sets()["IFN_RESPONSE"]


def _paired_design(n: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    samples = [f"P{i}_{tp}" for i in range(n) for tp in ("pre", "post")]
    sheet = pd.DataFrame(
        {
            "patient": [s.split("_")[0] for s in samples],
            "timepoint": [s.split("_")[1] for s in samples],
        },
        index=samples,
    )
    scores = pd.DataFrame(rng.normal(size=(2, 2 * n)), index=["S1", "S2"], columns=samples)
    scores.loc["S1", sheet.timepoint == "post"] += 1.0
    scores.attrs["n_genes"] = {"S1": 4, "S2": 7}
    scores.attrs["method"] = "mean_z"
    return scores, sheet


def test_paired_tests_match_scipy_and_r_v() -> None:
    scores, sheet = _paired_design()
    # shuffle the sheet and the columns: pairing must follow the sheet, not the order
    sheet = sheet.sample(frac=1.0, random_state=1)
    scores = scores[list(reversed(scores.columns))]
    out = paired_score_tests(scores, sheet)
    assert list(out.gene_set) == ["S1", "S2"]
    assert list(out.n_genes) == [4, 7] and set(out.score) == {"mean_z"}
    pre = scores.loc["S1", [f"P{i}_pre" for i in range(6)]].to_numpy()
    post = scores.loc["S1", [f"P{i}_post" for i in range(6)]].to_numpy()
    d = post - pre
    row = out.iloc[0]
    expected_t = stats.ttest_rel(post, pre)
    assert row.t == pytest.approx(expected_t.statistic, rel=1e-12)
    assert row.df == 5 and row.n_pairs == 6
    assert row.mean_diff == pytest.approx(d.mean()) and row.sd_diff == pytest.approx(d.std(ddof=1))
    ranks = stats.rankdata(np.abs(d))
    assert row.wilcoxon_V == ranks[d > 0].sum()  # R's V = W+
    expected_p = stats.wilcoxon(d, method="exact").pvalue
    assert row.wilcoxon_pvalue == pytest.approx(expected_p, rel=1e-12)


def test_paired_tests_incomplete_and_duplicate_pairs() -> None:
    scores, sheet = _paired_design()
    partial = paired_score_tests(scores.drop(columns=["P0_post"]), sheet, score_name="x")
    assert set(partial.n_pairs) == {5} and set(partial.score) == {"x"}
    dup = sheet.copy()
    dup.loc["P1_post", "patient"] = "P2"
    with pytest.raises(ValueError, match="more than one"):
        paired_score_tests(scores, dup)
    with pytest.raises(ValueError, match="fewer than two"):
        paired_score_tests(scores, sheet, levels=("pre", "week12"))
