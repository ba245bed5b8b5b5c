"""The statistics layer against R 4.2.2 (``tests/engine/r_reference``, made by the R script
there), on random cohorts with ties and zeros: ``cor.test`` for Spearman (R's AS 89 exact or
Edgeworth P without ties, t with ties) and Pearson (t test, Fisher-z confidence interval),
``wilcox.test(post, pre, paired = TRUE)`` (our ``wilcoxon_exact="r"`` mode), ``t.test(post, pre,
paired = TRUE)`` with its confidence interval, and ``p.adjust(method = "BH")``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import bh_adjust, correlations, paired_test, paired_tests
from engine._stats._corr import spearman_pvalue

REFERENCE = Path(__file__).parent / "r_reference" / "cor_test.csv"


def _cases() -> pd.DataFrame:
    table = pd.read_csv(REFERENCE, dtype=str, keep_default_na=False)
    assert len(table) > 150
    return table


def _vector(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split(";")])


def _close(ours: float, theirs: str, tol: float = 1e-10) -> bool:
    if theirs in ("NA", "NaN"):
        return bool(np.isnan(ours))
    value = float(theirs)
    return abs(ours - value) <= tol * max(abs(value), 1e-300) or abs(ours - value) < 1e-15


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_cor_test_equals_r(method):
    cases = _cases()
    cases = cases[cases["method"] == method]
    checked = 0
    for row in cases.itertuples():
        x, y = _vector(row.x), _vector(row.y)
        table = pd.DataFrame({"a": x, "b": y, "patient": np.arange(x.size)})
        out = correlations(table, pairs=[("a", "b")], method=method, timepoint=None).iloc[0]
        assert _close(out.r, row.estimate, 1e-12), (row.case, out.r, row.estimate)
        assert _close(out.pvalue, row.p), (row.case, out.pvalue, row.p, out.pvalue_method)
        if method == "pearson" and row.ci_low != "NA":
            assert _close(out.ci_low, row.ci_low, 1e-9) and _close(out.ci_high, row.ci_high, 1e-9)
        checked += 1
    assert checked > 70


def test_spearman_small_perfect_correlation_is_not_astronomically_significant():
    rho, p, how = spearman_pvalue(np.arange(5.0), np.arange(5.0) * 2)
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / 120) and how.startswith("exact")
    _, p_t, how_t = spearman_pvalue(np.arange(5.0), np.arange(5.0) * 2, exact=False)
    assert how_t.startswith("t distribution") and p_t < 1e-8  # what scipy and R (exact=FALSE) give


def test_exact_spearman_p_is_refused_where_it_cannot_be_exact():
    with pytest.raises(ValueError, match="n <= 9 without ties"):
        spearman_pvalue(np.array([1.0, 1, 2, 3]), np.arange(4.0), exact=True)
    with pytest.raises(ValueError, match="n <= 9"):
        spearman_pvalue(np.arange(12.0), np.arange(12.0), exact=True)
    table = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [2.0, 1, 4, 3], "patient": range(4)})
    with pytest.raises(ValueError, match="exact must be"):
        correlations(table, pairs=[("a", "b")], timepoint=None, exact="yes")


def _paired_cases() -> pd.DataFrame:
    table = pd.read_csv(REFERENCE.parent / "paired_tests.csv", dtype=str, keep_default_na=False)
    assert len(table) >= 70
    return table


def test_wilcoxon_in_r_mode_equals_wilcox_test():
    for row in _paired_cases().itertuples():
        pre, post = _vector(row.pre), _vector(row.post)
        result = paired_test(pre, post, wilcoxon_exact="r")
        assert _close(result.statistic, row.V, 1e-12), (row.case, result.statistic, row.V)
        assert _close(result.pvalue, row.wilcox_p), (row.case, result.pvalue, row.wilcox_p,
                                                     result.method)


def test_r_switches_to_the_normal_approximation_at_50_pairs():
    cases = _paired_cases()
    for row in cases[cases["n"].isin(["49", "50"])].itertuples():
        pre, post = _vector(row.pre), _vector(row.post)
        if len(set(np.abs(post - pre))) < len(pre) or (post == pre).any():
            continue  # R uses the approximation with ties or zeros at any n
        r_mode = paired_test(pre, post, wilcoxon_exact="r")
        assert ("exact" in r_mode.method) == (row.n == "49"), (row.n, r_mode.method)
        ours = paired_test(pre, post)  # the default is exact up to exact_max = 50 pairs
        assert "exact" in ours.method


def test_paired_t_equals_t_test_with_its_confidence_interval():
    checked = 0
    for row in _paired_cases().itertuples():
        pre, post = _vector(row.pre), _vector(row.post)
        result = paired_test(pre, post, method="t")
        if row.t == "NA":  # R stopped ("data are essentially constant")
            assert np.isnan(result.statistic) and "constant" in result.note
            continue
        for ours, theirs in ((result.statistic, row.t), (result.pvalue, row.t_p),
                             (result.df, row.df), (result.estimate, row.estimate),
                             (result.ci_low, row.ci_low), (result.ci_high, row.ci_high)):
            assert _close(ours, theirs), (row.case, ours, theirs)
        checked += 1
    assert checked >= 60


def test_bh_equals_p_adjust():
    table = pd.read_csv(REFERENCE.parent / "p_adjust_bh.csv", float_precision="round_trip")
    np.testing.assert_allclose(bh_adjust(table["p"].to_numpy()), table["padj"].to_numpy(),
                               rtol=1e-12, atol=0)


def test_constant_and_non_finite_differences_are_noted_not_wrong():
    nearly = paired_test([1.0, 2.0, 3.0], [1.1, 2.1, 3.1], method="t")  # R: essentially constant
    assert np.isnan(nearly.statistic) and "essentially constant" in nearly.note
    assert nearly.estimate == pytest.approx(0.1)
    infinite = paired_test([0.0, 1.0, 1.0, 2.0], [1.0, 2.0, np.inf, 4.0], method="t")
    assert np.isnan(infinite.pvalue) and "not finite" in infinite.note
    ranked = paired_test([0.0, 1.0, 1.0, 2.0], [1.0, 2.0, np.inf, 4.0], wilcoxon_exact="r")
    assert ranked.statistic == 10.0  # R ranks an infinite difference as the largest
    assert ranked.pvalue == pytest.approx(0.09751254, rel=1e-7)  # wilcox.test's value


@pytest.mark.parametrize("options", [
    {"exact_max": None}, {"exact_max": -1}, {"exact_max": 2.5}, {"wilcoxon_exact": "R"},
    {"conf_level": 95}, {"zero_method": "zsplit"},
])
def test_test_options_are_validated(options):
    with pytest.raises(ValueError):
        paired_test([1.0, 2.0, 3.0], [2.0, 3.0, 5.0], **options)
    table = pd.DataFrame({"patient": [1, 1, 2, 2, 3, 3], "timepoint": ["pre", "post"] * 3,
                          "x": [1.0, 2.0, 2.0, 3.5, 3.0, 5.0]})
    with pytest.raises(ValueError):
        paired_tests(table, **options)


def test_table_functions_pass_the_options_through():
    table = pd.DataFrame({"patient": np.repeat(np.arange(8), 2), "timepoint": ["pre", "post"] * 8,
                          "x": [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 4.5, 5.0, 7.0, 6.0, 7.0, 7.0,
                                9.0, 8.0, 8.0]})
    ours = paired_tests(table).iloc[0]
    r_mode = paired_tests(table, wilcoxon_exact="r").iloc[0]
    assert "exact" in ours.method and "normal approximation" in r_mode.method
    t = paired_tests(table, method="t", conf_level=0.9).iloc[0]
    assert t.ci_low < t.estimate < t.ci_high
