"""The statistics layer against scipy/statsmodels and against small cases worked out here."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from engine import (
    PairedTest,
    bh_adjust,
    correlations,
    paired_test,
    paired_tests,
    subgroup_summary,
)


def _enumerated_pvalue(ranks: list[float], positive: list[bool]) -> float:
    """Two-sided exact P of V = sum of positive ranks over every sign pattern (by brute force)."""
    observed = sum(r for r, p in zip(ranks, positive, strict=True) if p)
    values = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product([False, True], repeat=len(ranks))
    ]
    lower = sum(v <= observed + 1e-9 for v in values) / len(values)
    upper = sum(v >= observed - 1e-9 for v in values) / len(values)
    return min(1.0, 2 * min(lower, upper))


# --- Wilcoxon signed-rank ----------------------------------------------------------------------


def test_exact_wilcoxon_all_positive_n5_is_2_over_32() -> None:
    result = paired_test([1.0, 2.0, 3.0, 4.0, 5.0], [1.5, 3.0, 4.5, 6.0, 7.5])
    assert isinstance(result, PairedTest)
    assert result.n == 5
    assert result.statistic == 15.0  # V = 1 + 2 + 3 + 4 + 5
    assert result.pvalue == pytest.approx(2 / 32, abs=1e-15)
    assert result.method == "Wilcoxon signed-rank, exact"
    assert result.statistic_name == "V"


def test_exact_wilcoxon_all_negative_gives_v_zero() -> None:
    result = paired_test([5.0, 6.0, 7.0, 8.0, 9.0], [4.0, 4.0, 4.0, 4.0, 4.0])
    assert result.statistic == 0.0
    assert result.pvalue == pytest.approx(0.0625, abs=1e-15)


def test_exact_wilcoxon_without_ties_matches_enumeration_and_scipy() -> None:
    rng = np.random.default_rng(1)
    pre = rng.normal(size=10)
    post = pre + rng.normal(0.4, 1.0, size=10)
    diff = post - pre
    ranks = stats.rankdata(np.abs(diff)).tolist()
    expected = _enumerated_pvalue(ranks, (diff > 0).tolist())
    result = paired_test(pre, post)
    assert result.statistic == pytest.approx(sum(r for r, d in zip(ranks, diff, strict=True) if d > 0))
    assert result.pvalue == pytest.approx(expected, abs=1e-14)
    assert result.pvalue == pytest.approx(stats.wilcoxon(diff, method="exact").pvalue, abs=1e-14)


def test_exact_wilcoxon_with_ties_enumerates_32_sign_patterns() -> None:
    pre = [0.0, 0.0, 0.0, 0.0, 0.0]
    post = [1.0, 1.0, 2.0, 3.0, -3.0]
    # |d| = 1, 1, 2, 3, 3 -> mid-ranks 1.5, 1.5, 3, 4.5, 4.5; V = 1.5 + 1.5 + 3 + 4.5 = 10.5
    ranks = [1.5, 1.5, 3.0, 4.5, 4.5]
    expected = _enumerated_pvalue(ranks, [True, True, True, True, False])
    result = paired_test(pre, post)
    assert result.statistic == 10.5
    assert result.pvalue == pytest.approx(expected, abs=1e-15)
    assert result.method == "Wilcoxon signed-rank, exact (permutation, mid-ranks for ties)"


def test_exact_wilcoxon_with_ties_matches_scipy_permutation_test() -> None:
    pre = np.array([2.0, 3.0, 5.0, 1.0, 4.0, 6.0, 2.0, 3.0, 7.0])
    post = np.array([4.0, 5.0, 6.0, 1.5, 3.0, 8.0, 3.0, 4.0, 9.0])

    def v(x: np.ndarray, y: np.ndarray) -> float:
        d = y - x
        ranks = stats.rankdata(np.abs(d))
        return float(ranks[d > 0].sum())

    reference = stats.permutation_test(
        (pre, post), v, permutation_type="samples", n_resamples=np.inf, vectorized=False,
        alternative="two-sided",
    )
    result = paired_test(pre, post)
    assert "mid-ranks for ties" in result.method
    assert result.statistic == pytest.approx(reference.statistic)
    assert result.pvalue == pytest.approx(reference.pvalue, abs=1e-12)


def test_wilcoxon_zeros_are_dropped_like_r() -> None:
    pre = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    post = [1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 4.0]  # two zero differences; d = 1, 2, 3, 4, -3
    result = paired_test(pre, post)
    assert result.n == 7  # pairs used; the zeros are counted here but not ranked
    expected = _enumerated_pvalue([1.0, 2.0, 3.5, 5.0, 3.5], [True, True, True, True, False])
    assert result.statistic == 11.5
    assert result.pvalue == pytest.approx(expected, abs=1e-15)
    assert "2 zero differences dropped" in result.method


def test_wilcoxon_pratt_ranks_zeros_then_ignores_them() -> None:
    pre = [0.0] * 6
    post = [0.0, 1.0, 2.0, 3.0, 4.0, -5.0]
    result = paired_test(pre, post, zero_method="pratt")
    expected = _enumerated_pvalue([2.0, 3.0, 4.0, 5.0, 6.0], [True, True, True, True, False])
    assert result.statistic == 14.0
    assert result.pvalue == pytest.approx(expected, abs=1e-15)
    assert "Pratt" in result.method


def test_large_n_uses_normal_approximation_with_continuity_correction() -> None:
    rng = np.random.default_rng(7)
    pre = rng.normal(size=60)
    post = pre + rng.normal(0.3, 1.0, size=60)
    diff = post - pre
    n = diff.size
    ranks = stats.rankdata(np.abs(diff))
    v = ranks[diff > 0].sum()
    centre = v - n * (n + 1) / 4
    z = (centre - np.sign(centre) * 0.5) / np.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    result = paired_test(pre, post)
    assert result.method == "Wilcoxon signed-rank, normal approximation with continuity correction"
    assert result.statistic == pytest.approx(v)
    assert result.pvalue == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-12)
    scipy_p = stats.wilcoxon(diff, method="approx", correction=True).pvalue
    assert result.pvalue == pytest.approx(scipy_p, rel=1e-12)


def test_ties_with_exact_max_0_match_r_normal_approximation() -> None:
    # R's wilcox.test with ties: z = (V - n(n+1)/4 - 0.5 sign) / sqrt(n(n+1)(2n+1)/24 - sum(t^3-t)/48)
    pre = np.zeros(8)
    post = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 3.0, -4.0, 5.0])
    ranks = [1.5, 1.5, 3.0, 5.0, 5.0, 5.0, 7.0, 8.0]
    v = sum(ranks) - 7.0
    n = 8
    centre = v - n * (n + 1) / 4
    ties = (2**3 - 2) + (3**3 - 3)
    z = (centre - 0.5) / np.sqrt(n * (n + 1) * (2 * n + 1) / 24 - ties / 48)
    result = paired_test(pre, post, exact_max=0)
    assert result.statistic == v
    assert result.pvalue == pytest.approx(2 * stats.norm.sf(z), rel=1e-12)
    assert result.method.endswith("(tie-corrected variance)")


def test_exact_max_switches_to_the_approximation() -> None:
    pre = np.zeros(8)
    post = np.arange(1.0, 9.0)
    assert "exact" in paired_test(pre, post).method
    assert "normal approximation" in paired_test(pre, post, exact_max=5).method


# --- paired t and summaries ----------------------------------------------------------------------


def test_paired_t_matches_scipy_ttest_rel() -> None:
    rng = np.random.default_rng(3)
    pre = rng.normal(10, 2, size=12)
    post = pre + rng.normal(-1, 1.5, size=12)
    result = paired_test(pre, post, method="t")
    reference = stats.ttest_rel(post, pre)
    assert result.method == "paired t"
    assert result.statistic_name == "t"
    assert result.df == 11
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert result.pvalue == pytest.approx(reference.pvalue, rel=1e-12)


def test_summaries_report_n_mean_sd_sem_median_and_quartiles() -> None:
    pre = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    post = np.array([2.0, 6.0, 5.0, 3.0, 5.0, 8.0])
    result = paired_test(pre, post)
    for summary, values in ((result.pre, pre), (result.post, post), (result.diff, post - pre)):
        assert summary.n == 6
        assert summary.mean == pytest.approx(values.sum() / 6)
        sd = np.sqrt(((values - values.mean()) ** 2).sum() / 5)
        assert summary.sd == pytest.approx(sd)
        assert summary.sem == pytest.approx(sd / np.sqrt(6))
        assert summary.median == pytest.approx(np.median(values))
        assert (summary.q1, summary.q3) == pytest.approx(tuple(np.percentile(values, [25, 75])))
    # R's quantile(type = 7) of 1, 1, 3, 4, 5, 9: 1.5 and 4.75
    assert (result.pre.q1, result.pre.q3) == (1.5, 4.75)


def test_missing_values_are_dropped_pairwise_and_n_is_reported() -> None:
    pre = [1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 2.0]
    post = [2.0, 5.0, np.nan, 7.0, 9.0, 8.0, 5.0]
    result = paired_test(pre, post, method="t")
    complete = paired_test([1.0, 4.0, 5.0, 6.0, 2.0], [2.0, 7.0, 9.0, 8.0, 5.0], method="t")
    assert result.n == 5
    assert result.pre.n == result.post.n == result.diff.n == 5
    assert result.statistic == complete.statistic
    assert result.pvalue == complete.pvalue


def test_too_few_pairs_or_degenerate_differences_give_nan_with_a_note() -> None:
    one = paired_test([1.0, np.nan], [2.0, 3.0])
    assert one.n == 1
    assert np.isnan(one.statistic) and np.isnan(one.pvalue)
    assert "fewer than 2" in one.note
    zeros = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert np.isnan(zeros.pvalue) and "all differences are zero" in zeros.note
    constant = paired_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], method="t")
    assert np.isnan(constant.pvalue) and "constant" in constant.note


def test_paired_test_typed_errors() -> None:
    with pytest.raises(ValueError, match=r"different lengths \(3 vs 2\)"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="method must be"):
        paired_test([1.0, 2.0], [1.0, 2.0], method="sign")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numeric"):
        paired_test(["a", "b"], [1.0, 2.0])
    with pytest.raises(ValueError, match="1-D"):
        paired_test([[1.0, 2.0]], [[1.0, 2.0]])


# --- Benjamini-Hochberg --------------------------------------------------------------------------


def test_bh_matches_statsmodels() -> None:
    p = np.random.default_rng(5).uniform(size=40) ** 2
    expected = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose(bh_adjust(p), expected, rtol=1e-14)


def test_bh_hand_case() -> None:
    # sorted 0.01, 0.03, 0.04, 0.20 -> 0.04, 0.06, 0.0533, 0.20 -> step-up minimum from the top
    adjusted = bh_adjust([0.01, 0.04, 0.03, 0.20])
    np.testing.assert_allclose(adjusted, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20], rtol=1e-14)


def test_bh_keeps_nan_and_does_not_count_it() -> None:
    adjusted = bh_adjust([0.01, np.nan, 0.04])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.04], rtol=1e-14)
    assert bh_adjust([]).shape == (0,)
    assert np.isnan(bh_adjust([np.nan, np.nan])).all()


def test_bh_rejects_values_outside_0_1() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bh_adjust([0.5, 1.5])


# --- tables --------------------------------------------------------------------------------------


def _cohort() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    patients = [f"P{i:02d}" for i in range(1, 9)]
    rows = []
    for i, patient in enumerate(patients):
        base_a, base_b = rng.normal(12, 3), rng.normal(4, 1)
        group = "naive" if i == 0 else "maintenance"
        rows.append({"patient": patient, "timepoint": "pre", "mmrss": base_a, "tc17": base_b,
                     "haq": base_a / 10 + rng.normal(0, 0.3), "group": group})
        rows.append({"patient": patient, "timepoint": "post", "mmrss": base_a - rng.uniform(1, 4),
                     "tc17": base_b + rng.normal(-1, 1), "haq": base_a / 12 + rng.normal(0, 0.3),
                     "group": group})
    table = pd.DataFrame(rows)
    table.loc[(table.patient == "P03") & (table.timepoint == "post"), "tc17"] = np.nan
    return table


def test_paired_tests_wide_rows_match_paired_test_and_bh() -> None:
    table = _cohort()
    out = paired_tests(table, variables=["mmrss", "tc17"])
    assert out["variable"].tolist() == ["mmrss", "tc17"]
    for column in ("n", "pre_n", "pre_mean", "pre_sd", "pre_sem", "pre_median", "pre_q1",
                   "pre_q3", "post_mean", "diff_mean", "diff_q3", "statistic", "pvalue", "padj",
                   "method"):
        assert column in out.columns
    assert out["n"].tolist() == [8, 7]
    pre = table[table.timepoint == "pre"].set_index("patient")
    post = table[table.timepoint == "post"].set_index("patient")
    for _, row in out.iterrows():
        direct = paired_test(pre[row.variable], post[row.variable].reindex(pre.index))
        assert row.statistic == direct.statistic
        assert row.pvalue == direct.pvalue
        assert row.diff_mean == pytest.approx(direct.diff.mean)
        assert row.method == direct.method
    np.testing.assert_allclose(out["padj"], bh_adjust(out["pvalue"]))


def test_paired_tests_default_variables_are_the_numeric_columns() -> None:
    out = paired_tests(_cohort(), method="t")
    assert out["variable"].tolist() == ["mmrss", "tc17", "haq"]
    assert set(out["method"]) == {"paired t"}


def test_paired_tests_long_input_equals_wide_input() -> None:
    wide = _cohort().drop(columns="group")
    long = wide.melt(id_vars=["patient", "timepoint"], var_name="measure", value_name="val")
    long = long.dropna().sample(frac=1.0, random_state=0)  # missing rows and any order
    from_long = paired_tests(long, variable="measure", value="val",
                             variables=["mmrss", "tc17", "haq"])
    from_wide = paired_tests(wide, variables=["mmrss", "tc17", "haq"])
    pd.testing.assert_frame_equal(from_long, from_wide)


def test_paired_tests_typed_errors() -> None:
    table = _cohort()
    with pytest.raises(ValueError, match="'patient_id'"):
        paired_tests(table, subject="patient_id")
    with pytest.raises(ValueError, match="'nope'"):
        paired_tests(table, variables=["mmrss", "nope"])
    with pytest.raises(ValueError, match="week2"):
        paired_tests(table, post="week2")
    with pytest.raises(ValueError, match="not numeric"):
        paired_tests(table, variables=["group"])
    with pytest.raises(ValueError, match="more than one row"):
        paired_tests(pd.concat([table, table.iloc[:1]]))
    with pytest.raises(ValueError, match="both `variable` and `value`"):
        paired_tests(table, variable="measure")


def test_correlations_pearson_ci_is_fisher_z() -> None:
    table = _cohort()
    out = correlations(table, pairs=[("mmrss", "haq"), ("tc17", "mmrss")], method="pearson")
    pre = table[table.timepoint == "pre"]
    first = out.iloc[0]
    r, p = stats.pearsonr(pre["mmrss"], pre["haq"])
    n = 8
    z, half = np.arctanh(r), stats.norm.ppf(0.975) / np.sqrt(n - 3)
    assert (first.timepoint, first.n, first.warning) == ("pre", n, "")
    assert first.r == pytest.approx(r, rel=1e-12)
    assert first.pvalue == pytest.approx(p, rel=1e-12)
    assert (first.ci_low, first.ci_high) == pytest.approx((np.tanh(z - half), np.tanh(z + half)))
    assert first.ci_method == "Fisher z, SE 1/sqrt(n - 3)"
    assert first.pvalue_method == "t distribution, n - 2 df"
    np.testing.assert_allclose(out["padj"], bh_adjust(out["pvalue"]))


def test_correlations_spearman_ci_is_bonett_wright() -> None:
    table = _cohort()
    out = correlations(table, pairs=[("mmrss", "haq")], confidence=0.9)
    pre = table[table.timepoint == "pre"]
    rho, p = stats.spearmanr(pre["mmrss"], pre["haq"])
    se = np.sqrt((1 + rho**2 / 2) / (8 - 3))
    half = stats.norm.ppf(0.95) * se
    row = out.iloc[0]
    assert row.method == "spearman"
    assert row.r == pytest.approx(rho, rel=1e-12)
    # R's cor.test: no ties and n <= 9, so P is the exact permutation P of rho
    ranks_x, ranks_y = stats.rankdata(pre["mmrss"]), stats.rankdata(pre["haq"])
    perms = np.array(list(itertools.permutations(ranks_y)))
    rhos = np.array([np.corrcoef(ranks_x, perm)[0, 1] for perm in perms])
    tail = min((rhos >= rho - 1e-12).mean(), (rhos <= rho + 1e-12).mean())
    assert row.pvalue == pytest.approx(min(2 * tail, 1.0), rel=1e-12)
    assert row.pvalue_method == "exact permutation (AS 89)"
    assert p != pytest.approx(row.pvalue, rel=1e-3)  # scipy's t approximation is not R's P
    expected = (np.tanh(np.arctanh(rho) - half), np.tanh(np.arctanh(rho) + half))
    assert (row.ci_low, row.ci_high) == pytest.approx(expected)
    assert "Bonett-Wright" in row.ci_method


def test_correlations_pooled_warns_and_counts_observations() -> None:
    table = _cohort()
    out = correlations(table, pairs=[("mmrss", "haq"), ("tc17", "haq")], pool_timepoints=True)
    assert out["timepoint"].tolist() == ["pooled", "pooled"]
    assert out["n"].tolist() == [16, 15]
    assert out["n_subjects"].tolist() == [8, 8]
    assert "not independent" in out.iloc[0].warning
    assert "n = 16 observations from k = 8 subjects" in out.iloc[0].warning
    assert out.iloc[0].r == pytest.approx(stats.spearmanr(table["mmrss"], table["haq"])[0])
    # timepoint=None uses every row as given, and still flags repeated subjects
    everything = correlations(table, pairs=[("mmrss", "haq")], timepoint=None)
    assert everything.iloc[0].n == 16
    assert "not independent" in everything.iloc[0].warning
    post = correlations(table, pairs=[("tc17", "haq")], timepoint="post")
    assert (post.iloc[0].n, post.iloc[0].warning) == (7, "")


def test_correlations_typed_errors_and_degenerate_input() -> None:
    table = _cohort()
    with pytest.raises(ValueError, match="'cd8'"):
        correlations(table, pairs=[("mmrss", "cd8")])
    with pytest.raises(ValueError, match="method"):
        correlations(table, pairs=[("mmrss", "haq")], method="kendall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="baseline"):
        correlations(table, pairs=[("mmrss", "haq")], timepoint="baseline")
    tiny = correlations(table.iloc[:4], pairs=[("mmrss", "haq")])  # 2 pre rows
    assert np.isnan(tiny.iloc[0].r) and "fewer than 3" in tiny.iloc[0].note
    flat = table.assign(haq=1.0)
    assert "constant" in correlations(flat, pairs=[("mmrss", "haq")]).iloc[0].note


def test_subgroup_summary_tests_each_group_and_notes_a_too_small_one() -> None:
    table = _cohort()
    out = subgroup_summary(table, by="group", variables=["mmrss", "tc17"])
    assert out.columns[0] == "subgroup"
    naive = out[out.subgroup == "naive"]
    assert naive["n"].tolist() == [1, 1]
    assert naive["pvalue"].isna().all() and naive["statistic"].isna().all()
    assert naive["note"].str.contains("fewer than 2").all()
    maintenance = out[out.subgroup == "maintenance"].drop(columns="subgroup")
    expected = paired_tests(table[table.group == "maintenance"], variables=["mmrss", "tc17"])
    pd.testing.assert_frame_equal(maintenance.reset_index(drop=True), expected)


def test_subgroup_summary_typed_errors() -> None:
    table = _cohort()
    with pytest.raises(ValueError, match="'arm'"):
        subgroup_summary(table, by="arm", variables=["mmrss"])
    bad = table.copy()
    bad.loc[1, "group"] = "naive2"
    with pytest.raises(ValueError, match="more than one 'group' value"):
        subgroup_summary(bad, by="group", variables=["mmrss"])


def test_engine_paired_test_is_the_expression_implementation() -> None:
    import engine
    import expression

    # one implementation: the engine re-exports expression's paired test and its result types
    assert engine.paired_test is expression.paired_test
    assert engine.PairedTest is expression.PairedTest
    assert engine.Summary is expression.Summary
    result = engine.paired_test([1.0, 2.0, 3.0], [2.0, 4.0, 3.5])
    assert isinstance(result.diff, engine.Summary) and result.diff.n == 3
