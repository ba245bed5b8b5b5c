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
    [({"method": "gsva"}, "method"), ({"min_size": 0}, "min_size"), ({"layer": "x"}, "AnnData")],
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


def _walk_by_steps(values: np.ndarray, in_set: np.ndarray) -> float:
    """ssGSEA's random walk taken step by step (one sample), ties as GSVA 1.46 orders them."""
    ranks = np.floor(stats.rankdata(values, method="average"))
    order = sorted(range(len(values)), key=lambda g: (-ranks[g], g))  # high rank first, then rows
    weights = ranks**0.25
    total_in, total_out = weights[in_set].sum(), (~in_set).sum()
    cum_in = cum_out = walk = 0.0
    for g in order:
        if in_set[g]:
            cum_in += weights[g]
        else:
            cum_out += 1
        walk += cum_in / total_in - cum_out / total_out
    return walk


def test_ssgsea_by_hand() -> None:
    # s0: A > B > C > D > E (ranks 5..1); s1: A=4, B and C tied at 2.5 -> 2, D=1, E=5
    frame = pd.DataFrame(
        {"s0": [5.0, 4.0, 3.0, 2.0, 1.0], "s1": [6.0, 2.0, 2.0, 1.0, 9.0]},
        index=list("ABCDE"),
    )
    sets = {"A": ["A"], "E": ["E"], "B": ["B"], "C": ["C"], "AD": ["A", "D"]}
    got = geneset_scores(frame, sets, method="ssgsea")
    # s0, set {A}: in-set fraction 1 at all 5 steps, out-of-set 0, 1/4, 2/4, 3/4, 1 -> 5 - 2.5
    assert got.loc["A", "s0"] == pytest.approx(2.5, abs=1e-13)
    assert got.loc["E", "s0"] == pytest.approx(-2.5, abs=1e-13)
    # s1 walk: E, A, B, C, D (B before C: tied, row order). {B}: in 0,0,1,1,1; out 1/4,2/4,2/4,3/4,1
    assert got.loc["B", "s1"] == pytest.approx(3 - 3, abs=1e-13)
    # {C}: in 0,0,0,1,1; out 1/4,2/4,3/4,3/4,1 (tied with B, but walked after it)
    assert got.loc["C", "s1"] == pytest.approx(2 - 3.25, abs=1e-13)
    # {A, D} in s1: weights 4**0.25 and 1 (ranks 4 and 1); in w/(w+1) at steps 2-4, 1 at step 5;
    # out (3 genes) 1/3, 1/3, 2/3, 1, 1
    w = 4**0.25
    assert got.loc["AD", "s1"] == pytest.approx(3 * w / (w + 1) + 1 - 10 / 3, abs=1e-13)
    assert got.attrs == {"n_genes": {"A": 1, "E": 1, "B": 1, "C": 1, "AD": 2}, "method": "ssgsea"}


def test_ssgsea_equals_the_step_by_step_walk() -> None:
    rng = np.random.default_rng(5)
    values = rng.integers(0, 6, size=(40, 7)).astype(float)  # many ties
    values[0] = np.arange(7)
    index = [f"g{i}" for i in range(40)]
    frame = pd.DataFrame(values, index=index, columns=[f"s{j}" for j in range(7)])
    frame = frame[frame.nunique(axis=1) > 1]  # constant genes are dropped by the score too
    sets = {"S1": index[::3], "S2": ["g1", "g2", "g5", "g30"]}
    got = geneset_scores(frame, sets, method="ssgsea")
    for name, members in sets.items():
        mask = frame.index.isin(members)
        for j, sample in enumerate(frame.columns):
            want = _walk_by_steps(frame.to_numpy()[:, j], mask)
            assert got.loc[name, sample] == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_ssgsea_is_per_sample_and_skips_full_sets(matrix: pd.DataFrame) -> None:
    sets = {"S": ["A", "C"], "ALL": ["A", "B", "C", "D"]}
    got = geneset_scores(matrix, sets, method="ssgsea")
    assert list(got.index) == ["S"]  # no gene outside ALL (FLAT is constant, so dropped)
    changed = matrix.copy()
    genes = ["A", "B", "C", "D"]
    changed.loc[genes, "s5"] = changed.loc[genes, "s5"] * 10 + 1  # same gene order in s5
    changed.loc[genes, "s0"] = [1.0, 2.0, 3.0, 4.0]
    again = geneset_scores(changed, sets, method="ssgsea")
    pd.testing.assert_series_equal(again.loc["S", "s1":"s5"], got.loc["S", "s1":"s5"])
    assert again.loc["S", "s0"] != got.loc["S", "s0"]


def test_paired_tests_use_the_shared_exact_test_with_ties() -> None:
    from expression import paired_test

    samples = [f"P{i}_{tp}" for i in range(8) for tp in ("pre", "post")]
    sheet = pd.DataFrame(
        {"patient": [s.split("_")[0] for s in samples],
         "timepoint": [s.split("_")[1] for s in samples]},
        index=samples,
    )
    diff = np.array([1.0, 1.0, 2.0, 2.0, 3.0, -1.0, 4.0, 4.0])  # tied |differences|
    values = np.column_stack([np.zeros(8), diff]).ravel()
    scores = pd.DataFrame([values], index=["S"], columns=samples)
    row = paired_score_tests(scores, sheet, score_name="x").iloc[0]
    wilcoxon = paired_test(np.zeros(8), diff)
    t_test = paired_test(np.zeros(8), diff, method="t")
    assert "mid-ranks for ties" in wilcoxon.method
    # the exact sign-flip distribution on mid-ranks: 8 of the 256 patterns are as extreme
    assert row.wilcoxon_pvalue == wilcoxon.pvalue == pytest.approx(8 / 256, abs=1e-15)
    assert row.wilcoxon_V == wilcoxon.statistic == 34.0  # 36 minus the mid-rank 2 of -1
    assert (row.t, row.t_pvalue, row.df) == (t_test.statistic, t_test.pvalue, 7.0)
