"""VST: API, parameters in ``uns`` (h5ad-writable), errors, ``normalize_counts``/CLI ``--method vst``."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from engine.cli import main
from expression import normalize_counts, vst
from expression._dispersion import DispersionTrend, fit_trend, trimmed_mean
from expression._vst import vst_transform


def _study(n_patients: int = 6, n_genes: int = 300, seed: int = 3) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame(
        {"patient": np.repeat([f"P{i:02d}" for i in range(n_patients)], 2),
         "timepoint": ["pre", "post"] * n_patients},
        index=[f"S{i:02d}" for i in range(2 * n_patients)],
    )
    mean = np.exp(rng.normal(3.5, 1.5, n_genes))
    disp = 0.1 + 2.0 / mean
    sf = np.exp(rng.normal(0, 0.3, len(obs)))
    mu = sf[:, None] * mean[None, :]
    counts = rng.negative_binomial(1 / disp, 1 / (1 + mu * disp)).astype(np.int64)
    adata = ad.AnnData(X=counts.copy(), obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_genes)]))
    adata.layers["counts"] = counts
    return adata


@pytest.fixture(scope="module")
def study() -> ad.AnnData:
    return _study()


def test_vst_anndata_layer_and_params_roundtrip_h5ad(study, tmp_path):
    adata = study.copy()
    assert vst(adata, threads=1) is None
    params = adata.uns["vst"]
    assert params["fit_type"] == "parametric" and params["blind"] and params["design"] == "~ 1"
    assert params["asympt_disp"] > 0 and params["extra_pois"] > 0
    trend = DispersionTrend("parametric", params["asympt_disp"], params["extra_pois"], np.nan, 1)
    normed = adata.layers["counts"] / params["size_factors"][:, None]
    np.testing.assert_allclose(adata.layers["vst"], vst_transform(normed, trend), rtol=0, atol=1e-12)
    # the VST is monotone in the normalised count and close to log2 for large counts
    big = normed > 1000
    assert np.abs(adata.layers["vst"][big] - np.log2(normed[big])).max() < 0.5
    adata.write_h5ad(tmp_path / "v.h5ad")
    back = ad.read_h5ad(tmp_path / "v.h5ad")
    assert back.uns["vst"]["asympt_disp"] == params["asympt_disp"]


def test_vst_design_and_given_size_factors(study):
    sf = np.linspace(0.5, 1.5, study.n_obs)
    blind = vst(np.asarray(study.X), size_factors=sf, threads=1)
    design = vst(np.asarray(study.X), blind=False, obs=study.obs, size_factors=sf, threads=1)
    assert blind.shape == design.shape == study.shape
    assert not np.allclose(blind, design)  # the design absorbs patient effects: smaller dispersions


def test_vst_mean_fit_closed_form(study):
    adata = study.copy()
    vst(adata, fit_type="mean", key_added="vm", threads=1)
    alpha = adata.uns["vm"]["mean_disp"]
    q = adata.layers["counts"] / adata.uns["vm"]["size_factors"][:, None]
    expected = (2 * np.arcsinh(np.sqrt(alpha * q)) - np.log(alpha) - np.log(4)) / np.log(2)
    np.testing.assert_allclose(adata.layers["vm"], expected, rtol=1e-13)


def test_trimmed_mean_is_r_mean_trim():
    x = np.arange(1, 2001, dtype=float)
    x[-1] = 1e9  # trim 0.001 of 2000 drops 3 at each end (floor(2) + 1)
    assert trimmed_mean(x, 0.001) == pytest.approx(np.mean(np.sort(x)[2:-2]))


def test_trend_needs_estimates_above_the_minimum():
    base_mean = np.linspace(1, 100, 50)
    disp = np.full(50, 1e-7)  # all within 100 x minDisp: R stops; here TrendFitError
    with pytest.raises(ValueError, match="2 orders of magnitude"):
        fit_trend(base_mean, disp)
    from expression._dispersion import TrendFitError, fit_trend_as_requested

    for fit_type in ("parametric", "mean"):  # R stops for every fit type
        with pytest.raises(TrendFitError, match="R DESeq2 stops here too"):
            fit_trend_as_requested(base_mean, disp, fit_type=fit_type, what="VST")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fit_type": "local"}, "fit_type must be one of"),
        ({"size_factors": np.ones(3)}, "size_factors has 3 values"),
        ({"blind": False, "design": "~ donor"}, r"design variable\(s\) \['donor'\]"),
    ],
)
def test_vst_errors(study, kwargs, message):
    with pytest.raises(ValueError, match=message):
        vst(study.copy(), threads=1, **kwargs)


def test_vst_matrix_errors(study):
    with pytest.raises(ValueError, match="needs a sample sheet"):
        vst(np.asarray(study.X), blind=False)
    bad = np.asarray(study.X, dtype=float)
    bad[0, 0] = 0.5
    with pytest.raises(ValueError, match="non-negative integers"):
        vst(bad)


def test_normalize_counts_vst(study):
    adata = study.copy()
    normalize_counts(adata, method="vst")
    assert {"normalized", "vst"} <= set(adata.layers)
    np.testing.assert_allclose(adata.uns["vst"]["size_factors"], adata.obs["size_factors"])


def test_cli_normalize_vst(study, tmp_path):
    counts = pd.DataFrame(study.layers["counts"].T, index=study.var_names, columns=study.obs_names)
    counts.to_csv(tmp_path / "counts.csv")
    study.obs.to_csv(tmp_path / "samples.csv")
    args = ["normalize", str(tmp_path / "counts.csv"), "--samples", str(tmp_path / "samples.csv"),
            "--method", "vst"]
    blind = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b.csv")])
    assert blind.exit_code == 0, blind.output
    design = CliRunner().invoke(
        main, [*args, "--no-blind", "--fit-type", "mean", "--out", str(tmp_path / "d.csv")]
    )
    assert design.exit_code == 0, design.output
    b = pd.read_csv(tmp_path / "b.csv", index_col=0)
    d = pd.read_csv(tmp_path / "d.csv", index_col=0)
    assert b.shape == d.shape == (study.n_vars, study.n_obs)
    expected = vst(study.copy().layers["counts"], threads=1)
    np.testing.assert_allclose(b.to_numpy().T, expected, rtol=1e-12)
    assert not np.allclose(b.to_numpy(), d.to_numpy())


def test_normalize_file_vst_design_needs_samples(study, tmp_path):
    from expression._normalize import normalize_file

    counts = pd.DataFrame(study.layers["counts"].T, index=study.var_names, columns=study.obs_names)
    counts.to_csv(tmp_path / "counts.csv")
    with pytest.raises(ValueError, match="needs a sample sheet"):
        normalize_file(tmp_path / "counts.csv", out=tmp_path / "v.csv", method="vst", blind=False)
    assert not (tmp_path / "v.csv").exists()


def test_n_threads_is_a_deprecated_alias_of_threads(study):
    counts = np.asarray(study.layers["counts"])
    with pytest.warns(DeprecationWarning, match="'n_threads' is deprecated, use 'threads'"):
        old = vst(counts, n_threads=1)
    np.testing.assert_array_equal(old, vst(counts, threads=1))
    with pytest.raises(TypeError, match="deprecated spelling 'n_threads'"):
        vst(counts, threads=1, n_threads=1)
