"""The statistics layer against R 4.2.2 (``tests/engine/r_reference``, made by the R script
there): ``cor.test`` for Spearman (R's AS 89 exact/Edgeworth P without ties, t with ties) and
Pearson (t test, Fisher-z confidence interval), on random cohorts with ties and zeros."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import correlations
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
