"""Size factors and simple normalisations against R DESeq2 (paired set and pydeseq2's R references)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from expression import (
    CountsError,
    fit_size_factors,
    log2p1,
    normalize_counts,
    read_counts,
    size_factors,
)
from tests.conftest import CONFORMANCE, require_shared

PAIRED = CONFORMANCE / "deseq2" / "paired"
PYREF = CONFORMANCE / "deseq2" / "pydeseq2_r_reference"
SF_RTOL = 1e-10
NORM_RTOL = 1e-8


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(require_shared(PAIRED / name), index_col=0)


def _max_rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(actual) - expected) / np.abs(expected)))


@pytest.fixture(scope="module")
def paired():
    return read_counts(
        require_shared(PAIRED / "counts.csv"), samples=require_shared(PAIRED / "metadata.csv")
    )


def test_paired_reads_as_samples_by_genes(paired):
    assert paired.shape == (20, 1000)
    assert paired.uns["orientation"] == "genes_x_samples"
    assert paired.layers["counts"].dtype == np.int64
    assert list(paired.obs["timepoint"][:2]) == ["pre", "post"]


@pytest.mark.parametrize("method", ["ratio", "poscounts"])
def test_paired_size_factors(paired, method):
    r = _csv("r_size_factors.csv").loc[paired.obs_names, method].to_numpy()
    assert _max_rel(size_factors(paired.layers["counts"], method=method), r) < SF_RTOL


def test_paired_frozen_geo_means_are_rescaled_like_r(paired):
    r = _csv("r_size_factors.csv").loc[paired.obs_names, "ratio_frozen_geomeans"].to_numpy()
    counts = paired.layers["counts"]
    fit = fit_size_factors(counts)
    frozen = size_factors(counts, geo_means=np.exp(fit.log_geo_means))
    assert _max_rel(frozen, r) < SF_RTOL
    # and the stored logs can be fed back directly
    again = fit_size_factors(counts, log_geo_means=fit.log_geo_means).size_factors
    assert _max_rel(again, r) < SF_RTOL
    assert not np.allclose(frozen, fit.size_factors, rtol=1e-6)  # R's rescaling matters here


def test_paired_log_geo_means_and_used_genes(paired):
    r = _csv("r_log_geomeans.csv").loc[paired.var_names]
    fit = fit_size_factors(paired.layers["counts"])
    np.testing.assert_array_equal(fit.used, r["used_for_ratio"].to_numpy())
    assert fit.used.sum() == 800
    expected = r["log_geomean"].to_numpy()
    np.testing.assert_array_equal(np.isneginf(fit.log_geo_means), np.isneginf(expected))
    finite = np.isfinite(expected)
    assert _max_rel(fit.log_geo_means[finite], expected[finite]) < SF_RTOL


def test_paired_normalized_counts_and_norm_transform(paired):
    adata = normalize_counts(paired, copy=True)
    log2p1(adata)
    for layer, name in (("normalized", "r_normalized_counts.csv"), ("log2p1", "r_log2_norm_plus1.csv")):
        r = _csv(name).loc[adata.var_names, adata.obs_names].to_numpy().T
        got = adata.layers[layer]
        nonzero = r != 0
        np.testing.assert_array_equal(got[~nonzero], 0.0)
        assert _max_rel(got[nonzero], r[nonzero]) < NORM_RTOL


def test_paired_iterate_not_implemented(paired):
    with pytest.raises(ValueError, match="iterate"):
        size_factors(paired.layers["counts"], method="iterate")


def _tiny() -> np.ndarray:
    return _csv("tiny_counts.csv").T.to_numpy()


@pytest.mark.parametrize(
    ("column", "kwargs"),
    [
        ("ratio", {}),
        ("poscounts", {"method": "poscounts"}),
        ("ratio_controlGenes_g1_g4", {"control_genes": [0, 3]}),
        ("ratio_controlGenes_g1_g4", {"control_genes": np.array([1, 0, 0, 1, 0], dtype=bool)}),
    ],
)
def test_tiny_size_factors(column, kwargs):
    r = _csv("tiny_size_factors.csv")[column].to_numpy()
    assert _max_rel(size_factors(_tiny(), **kwargs), r) < SF_RTOL


def test_tiny_control_genes_by_name():
    adata = read_counts(require_shared(PAIRED / "tiny_counts.csv"), orientation="genes_x_samples")
    normalize_counts(adata, control_genes=["g1", "g4"])
    r = _csv("tiny_size_factors.csv")["ratio_controlGenes_g1_g4"].to_numpy()
    assert _max_rel(adata.obs["size_factors"].to_numpy(), r) < SF_RTOL


def test_every_gene_has_a_zero():
    counts = _csv("tiny_every_gene_has_zero_counts.csv").T.to_numpy()
    r = _csv("tiny_every_gene_has_zero_poscounts_sf.csv")["poscounts"].to_numpy()
    assert _max_rel(size_factors(counts, method="poscounts"), r) < SF_RTOL
    r_message = (PAIRED / "tiny_every_gene_has_zero_ratio_error.txt").read_text().strip()
    r_message = r_message.removeprefix("ratio error:").strip()
    with pytest.raises(CountsError, match="poscounts") as info:
        size_factors(counts)
    assert r_message in str(info.value)


PYDESEQ2_SETS = {
    "single_factor": ("datasets/synthetic/test_counts.csv", "datasets/synthetic/test_metadata.csv"),
    "multi_factor": ("datasets/synthetic/test_counts.csv", "datasets/synthetic/test_metadata.csv"),
    "continuous": ("continuous/test_counts.csv", "continuous/test_metadata.csv"),
    "wide": ("wide/test_counts.csv", "wide/test_metadata.csv"),
    "large_counts": (
        "large_counts/test_counts_from_test_code.csv",
        "large_counts/test_metadata_from_test_code.csv",
    ),
}


def _pyref(name: str):
    counts, meta = PYDESEQ2_SETS[name]
    # the synthetic set has 10 genes x 100 samples: only the sample sheet gets its orientation right
    return read_counts(require_shared(PYREF / counts), samples=require_shared(PYREF / meta))


@pytest.mark.parametrize("name", sorted(PYDESEQ2_SETS))
def test_pydeseq2_r_reference_size_factors(name):
    adata = _pyref(name)
    assert adata.uns["orientation"] == "genes_x_samples"
    r = pd.read_csv(require_shared(PYREF / name / "r_test_size_factors.csv"), index_col=0)
    r.index = r.index.astype(str)
    assert _max_rel(size_factors(adata.layers["counts"]), r.loc[adata.obs_names].iloc[:, 0]) < SF_RTOL


def test_pydeseq2_r_reference_poscounts():
    adata = _pyref("single_factor")
    r = pd.read_csv(require_shared(PYREF / "single_factor" / "r_test_size_factors_poscount.csv"), index_col=0)
    got = size_factors(adata.layers["counts"], method="poscounts")
    assert _max_rel(got, r.loc[adata.obs_names].iloc[:, 0].to_numpy()) < SF_RTOL


@pytest.mark.parametrize("method", ["ratio", "poscounts"])
def test_pydeseq2_fit_size_factors_agrees(paired, method):
    from pydeseq2.dds import DeseqDataSet

    counts = pd.DataFrame(paired.layers["counts"], index=paired.obs_names, columns=paired.var_names)
    dds = DeseqDataSet(
        counts=counts, metadata=paired.obs, design="~patient + timepoint", quiet=True
    )
    dds.fit_size_factors(fit_type=method)
    ours = size_factors(paired.layers["counts"], method=method)
    np.testing.assert_allclose(ours, dds.obs["size_factors"].to_numpy(), rtol=1e-12)
