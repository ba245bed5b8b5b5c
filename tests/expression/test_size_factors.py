"""Size factors and normalised layers: numpy and Dask give identical results; h5ad round trip."""

from __future__ import annotations

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest

from expression import (
    CountsError,
    cpm,
    fit_size_factors,
    log2p1,
    log_geo_means,
    normalize_counts,
    size_factors,
)


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    rng = np.random.default_rng(7)
    depth = rng.uniform(0.3, 3.0, size=(13, 1))
    mean = rng.gamma(0.6, 40.0, size=(1, 401))
    x = rng.poisson(depth * mean).astype(np.int64)
    x[:, 0] = 0  # all-zero gene
    x[4, 1] = 0  # a single zero leaves gene 1 out of the ratio set
    return x


def _adata(x) -> ad.AnnData:
    n, m = x.shape
    obs = pd.DataFrame(index=[f"s{i}" for i in range(n)])
    var = pd.DataFrame(index=[f"g{j}" for j in range(m)])
    return ad.AnnData(X=x, obs=obs, var=var, layers={"counts": x})


def test_hand_computed_ratio():
    x = np.array([[1, 4, 2], [4, 4, 8]])
    # gene geo means: 2, 4, 4 -> ratios s0: 1/2, 1, 1/2 (median 1/2); s1: 2, 1, 2 (median 2)
    np.testing.assert_allclose(size_factors(x), [0.5, 2.0], rtol=1e-15)
    np.testing.assert_allclose(np.exp(log_geo_means(x)), [2.0, 4.0, 4.0], rtol=1e-15)


def test_even_number_of_genes_takes_the_middle_mean():
    x = np.array([[1, 1, 1, 1], [1, 2, 4, 8]])
    # log ratios of s1: 0, .5, 1, 1.5 (times log 2) -> median 0.75 log 2
    np.testing.assert_allclose(size_factors(x)[1], 2 ** 0.75, rtol=1e-15)


def test_poscounts_hand_computed():
    x = np.array([[0, 4], [4, 4]])
    # gene 0: exp(log 4 / 2) = 2 -> only sample 1 (ratio 2); gene 1 -> ratio 1 for both
    # medians of log ratios: s0 = log 1 -> 1, s1 = (log 2 + log 1) / 2 -> sqrt 2;
    # rescaled to geometric mean 1: 2 ** -0.25, 2 ** 0.25
    np.testing.assert_allclose(
        size_factors(x, method="poscounts"), [2 ** -0.25, 2 ** 0.25], rtol=1e-15
    )


CHUNKINGS = [(13, 401), (13, 50), (4, 401), (3, 37), (1, 1), (5, (100, 1, 300))]


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("method", ["ratio", "poscounts"])
def test_dask_identical_to_numpy(counts, chunks, method):
    lazy = da.from_array(counts, chunks=chunks)
    np.testing.assert_array_equal(
        size_factors(lazy, method=method), size_factors(counts, method=method)
    )
    np.testing.assert_array_equal(
        log_geo_means(lazy, method=method), log_geo_means(counts, method=method)
    )


@pytest.mark.parametrize("chunks", [(3, 37), (13, 401)])
def test_dask_frozen_and_control_genes_identical(counts, chunks):
    lazy = da.from_array(counts, chunks=chunks)
    geo = np.exp(log_geo_means(counts))
    np.testing.assert_array_equal(size_factors(lazy, geo_means=geo), size_factors(counts, geo_means=geo))
    ctrl = np.arange(2, 120)
    np.testing.assert_array_equal(
        size_factors(lazy, control_genes=ctrl), size_factors(counts, control_genes=ctrl)
    )


def test_frozen_geo_means_on_new_samples(counts):
    fit = fit_size_factors(counts[:8])
    new = size_factors(counts[8:], geo_means=np.exp(fit.log_geo_means))
    assert new.shape == (5,)
    np.testing.assert_allclose(np.exp(np.log(new).mean()), 1.0, rtol=1e-14)
    assert fit.rescaled is False


@pytest.mark.parametrize("chunks", [None, (4, 64), (13, 401)])
def test_normalize_counts_numpy_and_dask(counts, chunks):
    eager = _adata(counts)
    normalize_counts(eager)
    x = counts if chunks is None else da.from_array(counts, chunks=chunks)
    adata = _adata(x)
    out = normalize_counts(adata, copy=True)
    assert "normalized" not in adata.layers  # copy=True leaves the input alone
    if chunks is not None:
        assert isinstance(out.layers["normalized"], da.Array)
        assert out.layers["normalized"].chunks == x.chunks
    np.testing.assert_array_equal(out.obs["size_factors"], eager.obs["size_factors"])
    np.testing.assert_array_equal(np.asarray(out.layers["normalized"]), eager.layers["normalized"])
    np.testing.assert_array_equal(
        eager.layers["normalized"], counts / eager.obs["size_factors"].to_numpy()[:, None]
    )
    log2p1(out)
    np.testing.assert_array_equal(
        np.asarray(out.layers["log2p1"]), np.log2(eager.layers["normalized"] + 1)
    )


def test_cpm_numpy_and_dask(counts):
    eager = _adata(counts)
    cpm(eager)
    np.testing.assert_allclose(eager.layers["cpm"].sum(axis=1), 1e6, rtol=1e-12)
    lazy = _adata(da.from_array(counts, chunks=(5, 70)))
    cpm(lazy, key_added="per_million")
    np.testing.assert_array_equal(np.asarray(lazy.layers["per_million"]), eager.layers["cpm"])


def test_uns_survives_h5ad(counts, tmp_path):
    adata = _adata(counts)
    normalize_counts(adata, method="poscounts")
    log2p1(adata)
    path = tmp_path / "n.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    params = back.uns["size_factors"]
    assert params["method"] == "poscounts"
    assert bool(params["rescaled_to_geometric_mean_1"])
    np.testing.assert_array_equal(params["log_geo_means"], adata.uns["size_factors"]["log_geo_means"])
    np.testing.assert_array_equal(back.obs["size_factors"], adata.obs["size_factors"])
    # frozen means from the stored parameters reproduce the factors of the same data
    again = size_factors(counts, geo_means=np.exp(params["log_geo_means"]), method="ratio")
    np.testing.assert_allclose(again, adata.obs["size_factors"], rtol=1e-13)


def test_sample_without_usable_genes_is_named():
    x = np.array([[5, 5, 0], [5, 5, 3], [0, 0, 4]])
    with pytest.raises(CountsError, match="sample c has no positive count"):
        normalize_counts(_named(x, ["a", "b", "c"]), method="poscounts", control_genes=[0, 1])


def _named(x, names):
    adata = _adata(x)
    adata.obs_names = names
    return adata


def test_bad_arguments(counts):
    with pytest.raises(ValueError, match="method"):
        size_factors(counts, method="median")
    with pytest.raises(ValueError, match="shape"):
        size_factors(counts, geo_means=np.ones(3))
    with pytest.raises(KeyError, match="nope"):
        normalize_counts(_adata(counts), control_genes=["g1", "nope"])
    with pytest.raises(KeyError, match="normalize_counts"):
        log2p1(_adata(counts))


def test_dask_layers_write_to_h5ad(counts, tmp_path):
    lazy = _adata(da.from_array(counts, chunks=(4, 100)))
    normalize_counts(lazy)
    log2p1(lazy)
    lazy.write_h5ad(tmp_path / "lazy.h5ad")
    back = ad.read_h5ad(tmp_path / "lazy.h5ad")
    eager = _adata(counts)
    normalize_counts(eager)
    np.testing.assert_array_equal(back.layers["normalized"], eager.layers["normalized"])
    np.testing.assert_array_equal(back.layers["log2p1"], np.log2(eager.layers["normalized"] + 1))
