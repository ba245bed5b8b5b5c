"""DESeq2's gene-wise dispersion arithmetic against R, bit for bit.

The references are CSVs written by ``r_reference/make_dispersion_reference.R`` (R 4.2.2, DESeq2
1.38.3, reference BLAS), every double as ``%.17g`` and read back exactly; R is not needed to
run these tests. Bit equality is the point: DESeq2's line search compares log posteriors that
differ by a few units in the last place on genes whose first step is tiny (the first gene here
is pasilla's FBgn0011300: R rejects its first proposal and stops after 2 iterations, keeping the
start; 1 iteration would send it to the grid and move the whole trend by ~1e-3).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expression import _dispersion as disp
from expression import _kernels as k

REF = Path(__file__).parent / "r_reference"


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(REF / name, float_precision="round_trip")


@pytest.fixture(scope="module")
def cases() -> dict[str, np.ndarray]:
    df = _read("dispersion_cases.csv")
    sf = np.array([1.1382629765908434, 1.7930003553503908, 0.64954703060372565,
                   0.75168922342648814, 1.635575096576068, 0.76126976804231616,
                   0.83265263532883327])
    x = np.column_stack([np.ones(7), np.r_[np.zeros(4), np.ones(3)]])
    out = {name: df[name].to_numpy() for name in df.columns if name != "gene"}
    out["y"] = np.ascontiguousarray(df[[f"count{j}" for j in range(1, 8)]].to_numpy(float))
    out["mu"] = np.ascontiguousarray(df[[f"mu{j}" for j in range(1, 8)]].to_numpy())
    out["sf"], out["x"] = sf, x
    return out


def test_digamma_and_lgamma_are_r_bits() -> None:
    ref = _read("digamma.csv")
    ours = np.array([k.digamma(v) for v in ref["x"]])
    np.testing.assert_array_equal(ours, ref["digamma"].to_numpy())
    np.testing.assert_array_equal(np.array([k.lgamma(v) for v in ref["x"]]),
                                  ref["lgamma"].to_numpy())


def test_base_moments_rough_and_linear_mu_are_r_bits(cases: dict[str, np.ndarray]) -> None:
    normed = cases["y"] / cases["sf"]
    base_mean = disp._r_row_means(normed)
    base_var = disp._r_row_var(normed)
    np.testing.assert_array_equal(base_mean, cases["base_mean"])
    np.testing.assert_array_equal(base_var, cases["base_var"])
    np.testing.assert_array_equal(disp.rough_dispersions(normed, cases["x"]), cases["rough"])
    np.testing.assert_array_equal(
        disp.moments_dispersions(base_mean, base_var, cases["sf"]), cases["moments"])
    mu = disp.linear_model_mu(normed, cases["x"]) * cases["sf"]
    np.testing.assert_array_equal(np.where(mu < 0.5, 0.5, mu), cases["mu"])


def test_log_posterior_derivative_and_line_search_are_r_bits(cases: dict[str, np.ndarray]) -> None:
    y, mu, x = cases["y"], cases["mu"], cases["x"]
    log_alpha = np.log(cases["alpha_init"])
    lp = np.array([k.log_posterior(a, y[g], mu[g], x, 0.0, 1.0, False, True)
                   for g, a in enumerate(log_alpha)])
    dlp = np.array([k.dlog_posterior(a, y[g], mu[g], x, 0.0, 1.0, False, True)
                    for g, a in enumerate(log_alpha)])
    np.testing.assert_array_equal(lp, cases["initial_lp"])
    np.testing.assert_array_equal(dlp, cases["initial_dlp"])
    res = disp.line_search(y, mu, x, cases["alpha_init"])
    np.testing.assert_array_equal(res["iterations"], cases["iter"])
    np.testing.assert_array_equal(res["log_alpha"], cases["log_alpha"])
    assert res["iterations"][0] == 2  # FBgn0011300: the first proposal rejected, as in R
    assert math.isclose(res["last_lp"][0], cases["last_lp"][0], rel_tol=0, abs_tol=0)


def test_r_qr_parts_equal_r() -> None:
    # R: q <- qr(model.matrix(~ condition)); qr.Q(q); solve(qr.R(q)), printed with %.17g
    x = np.column_stack([np.ones(7), np.r_[np.zeros(4), np.ones(3)]])
    q, rinv = disp._r_qr_parts(x)
    assert q[0, 0] == -0.37796447300922731 and q[1, 0] == -0.3779644730092272
    assert q[0, 1] == -0.32732683535398871 and q[1, 1] == -0.32732683535398843
    assert q[2, 1] == -0.32732683535398854 and q[4, 1] == 0.43643578047198472
    assert rinv[0, 1] == -0.32732683535398843 and rinv[1, 1] == 0.76376261582597327
