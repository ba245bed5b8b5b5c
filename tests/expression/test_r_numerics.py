"""R-equal numerics: random streams, loess, lowess and DESeq2's small-df prior variance.

The references are CSVs written by ``r_reference/make_r_reference.R`` (R 4.2.2, DESeq2
1.38.3), every double as ``%.17g`` and read back exactly; R is not needed to run these tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expression._rloess import loess_fit, loess_predict
from expression._rlowess import lowess
from expression._rprior import (
    BREAKS,
    _r_seq,
    _r_sum,
    kl_divergences,
    r_hist_counts,
    small_df_prior_variance,
)
from expression._rrandom import RStream, qnorm, seed_state

REF = Path(__file__).parent / "r_reference"


def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(REF / name, float_precision="round_trip", keep_default_na=True)


@pytest.fixture(scope="module")
def rng_ref() -> dict[str, np.ndarray]:
    df = _read("rng.csv")
    return {case: g.sort_values("i")["value"].to_numpy() for case, g in df.groupby("case")}


def _as_r_int(words: np.ndarray) -> np.ndarray:
    """Unsigned 32-bit words as R's signed integers."""
    return words.astype(np.uint32).view(np.int32).astype(np.float64)


# ---------------------------------------------------------------- random streams


@pytest.mark.parametrize("seed", [2, 42, -7, 123456789])
def test_seed_state_equals_random_seed(rng_ref: dict[str, np.ndarray], seed: int) -> None:
    ref = rng_ref[f"seed_state_{seed}"]
    st = _as_r_int(seed_state(seed))
    np.testing.assert_array_equal(np.concatenate([st[:6], st[619:625]]), ref[:12])
    assert float(np.sum(st)) == ref[12]


def test_uniform_normal_exponential_streams(rng_ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(RStream(42).runif(40), rng_ref["runif_42"])
    np.testing.assert_array_equal(RStream(42).rnorm(40), rng_ref["rnorm_42"])
    np.testing.assert_array_equal(RStream(7).rnorm(40, mean=3.0, sd=0.5),
                                  rng_ref["rnorm_7_mean3_sd0.5"])
    rng = RStream(7)  # rnorm with sd = 0 draws nothing
    got = np.concatenate([rng.rnorm(5, sd=0.0), rng.runif(5)])
    np.testing.assert_array_equal(got, rng_ref["rnorm_7_sd0_then_runif"])
    np.testing.assert_array_equal(RStream(3).rexp(60), rng_ref["rexp_3"])


@pytest.mark.parametrize("shape", [0.3, 0.5, 1.0, 1.5, 2.5, 5.0, 20.0])
def test_rgamma_stream(rng_ref: dict[str, np.ndarray], shape: float) -> None:
    np.testing.assert_array_equal(RStream(4).rgamma(20, shape),
                                  rng_ref[f"rgamma_4_shape{shape:g}"])


def test_rgamma_with_scale(rng_ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(RStream(5).rgamma(20, 0.7, scale=3.0),
                                  rng_ref["rgamma_5_shape0.7_scale3"])


@pytest.mark.parametrize("df", [1, 2, 3])
def test_deseq2_draw_pattern(rng_ref: dict[str, np.ndarray], df: int) -> None:
    """``set.seed(2); x <- rchisq(1e4, df); y <- rnorm(1e4, 0, 0.5)``, exactly."""
    rng = RStream(2)
    x = rng.rchisq(10_000, float(df))
    y = rng.rnorm(10_000, sd=0.5)
    idx = rng_ref[f"pattern_df{df}_chisq_idx"].astype(int) - 1
    np.testing.assert_array_equal(x[idx], rng_ref[f"pattern_df{df}_chisq"])
    np.testing.assert_array_equal(y[idx], rng_ref[f"pattern_df{df}_norm"])
    assert [_r_sum(x), _r_sum(y)] == list(rng_ref[f"pattern_df{df}_sums"])


@pytest.mark.parametrize("df", [1, 2, 3])
def test_deseq2_full_sequence(rng_ref: dict[str, np.ndarray], df: int) -> None:
    """DESeq2's 200 ``rchisq``/``rnorm`` pairs (4 million draws): checkpoints and final state."""
    grid = _r_seq(0.0, 8.0, 200)
    ref = rng_ref[f"sequence_df{df}_checkpoints"].reshape(-1, 7)
    wanted = {int(r[0]): r[1:] for r in ref}
    rng = RStream(2)
    for g in range(1, 201):
        cx = rng.rchisq(10_000, float(df))
        nz = rng.rnorm(10_000, sd=float(np.sqrt(grid[g - 1])))
        if g in wanted:
            got = [cx[0], cx[-1], nz[0], nz[-1], _r_sum(cx), _r_sum(nz)]
            np.testing.assert_array_equal(got, wanted[g])
    st = _as_r_int(rng.state)
    np.testing.assert_array_equal(np.concatenate([st[:6], st[619:625]]),
                                  rng_ref[f"sequence_df{df}_final_state"])


def test_qnorm(rng_ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(qnorm(rng_ref["qnorm_p"]), rng_ref["qnorm"])
    assert qnorm(0.0)[0] == -np.inf and qnorm(1.0)[0] == np.inf
    assert np.isnan(qnorm(1.5)[0])


def test_r_seq(rng_ref: dict[str, np.ndarray]) -> None:
    got = np.concatenate([_r_seq(0.0, 8.0, 200)[[0, 1, 2, 99, 149, 198, 199]],
                          _r_seq(0.0, 8.0, 1000)[[0, 1, 2, 499, 998, 999]]])
    np.testing.assert_array_equal(got, rng_ref["seq_0_8_200_check"])


# ---------------------------------------------------------------- loess

LOESS = _read("loess.csv")


@pytest.mark.parametrize("case", sorted(LOESS["case"].unique()))
def test_loess_matches_r(case: str) -> None:
    rows = LOESS[LOESS["case"] == case]
    data = rows[rows["role"] == "data"]
    pred = rows[rows["role"] == "pred"]
    fit = loess_fit(data["x"].to_numpy(), data["y"].to_numpy(), span=float(data["span"].iloc[0]),
                    degree=int(data["degree"].iloc[0]))
    got = loess_predict(fit, pred["x"].to_numpy())
    want = pred["y"].to_numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-10)


def test_loess_rejects_bad_input() -> None:
    x = np.linspace(0, 1, 20)
    with pytest.raises(ValueError, match="degree"):
        loess_fit(x, x, degree=3)
    with pytest.raises(ValueError, match="span"):
        loess_fit(x, x, span=0.05)
    with pytest.raises(ValueError, match="same length"):
        loess_fit(x, x[:-1])


# ---------------------------------------------------------------- lowess

LOWESS = _read("lowess.csv")


@pytest.mark.parametrize("case", sorted(LOWESS["case"].unique()))
def test_lowess_matches_r(case: str) -> None:
    rows = LOWESS[LOWESS["case"] == case]
    delta = rows["delta"].iloc[0]
    sx, fit = lowess(rows["x"].to_numpy(), rows["y"].to_numpy(), f=float(rows["f"].iloc[0]),
                     iter=int(rows["iter"].iloc[0]),
                     delta=None if np.isnan(delta) else float(delta))
    np.testing.assert_array_equal(sx, rows["sx"].to_numpy())
    np.testing.assert_allclose(fit, rows["fit"].to_numpy(), rtol=0, atol=1e-11)


# ---------------------------------------------------------------- prior variance

CASES = _read("prior_cases.csv")
MIDS = (BREAKS[:-1] + BREAKS[1:]) / 2.0


def _residuals(case: str) -> np.ndarray:
    """The case's residuals: given ones, or bin midpoints standing for R's histogram."""
    if case.startswith("given"):
        res = _read("prior_resid.csv")
        return res[res["case"] == case].sort_values("i")["resid"].to_numpy()
    hist = _read("prior_hist.csv")
    counts = hist[hist["case"] == case].sort_values("bin")["count"].to_numpy()
    return np.repeat(MIDS, counts)


@pytest.mark.parametrize("case", list(CASES["case"]))
def test_prior_variance_equals_r(case: str) -> None:
    row = CASES[CASES["case"] == case].iloc[0]
    res = _residuals(case)
    df = int(row["df"])
    grid, kl = kl_divergences(res, df)
    np.testing.assert_array_equal(kl, _read("prior_kl.csv")[case].to_numpy())
    # R's loess on R's divergences
    fits = _read("prior_fit.csv")
    fits = fits[fits["case"] == case]
    fine = _r_seq(0.0, 8.0, 1000)
    got = loess_predict(loess_fit(grid, kl, span=0.2), fine)
    np.testing.assert_allclose(got[fits["i"].to_numpy() - 1], fits["fit"].to_numpy(), rtol=0,
                               atol=1e-10)
    assert int(np.argmin(got)) + 1 == int(row["which_min"])
    assert small_df_prior_variance(res, df) == row["prior_var"]


def test_given_residuals_histogram_matches_r() -> None:
    hist = _read("prior_hist.csv")
    for case in [c for c in CASES["case"] if c.startswith("given")]:
        res = _residuals(case)
        inside = res[(res > -10) & (res < 10)]
        counts, n = r_hist_counts(inside)
        want = hist[hist["case"] == case].sort_values("bin")["count"].to_numpy()
        np.testing.assert_array_equal(counts, want)
        assert n == int(CASES.loc[CASES["case"] == case, "n"].iloc[0])


def test_prior_variance_validates() -> None:
    with pytest.raises(ValueError, match="df"):
        small_df_prior_variance(np.zeros(10), 0)
    with pytest.raises(ValueError, match="no finite"):
        small_df_prior_variance(np.array([np.nan, 20.0]), 2)
