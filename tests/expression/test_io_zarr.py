"""read_counts on Zarr stores: plain arrays (both layouts) and AnnData stores, read lazily."""

from __future__ import annotations

import warnings

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr

from expression import CountsError, normalize_counts, read_counts, validate_counts


@pytest.fixture
def counts() -> pd.DataFrame:
    """Samples x genes, more genes than samples, every gene expressed."""
    rng = np.random.default_rng(7)
    values = rng.negative_binomial(5, 0.05, size=(6, 40)) + 1
    return pd.DataFrame(
        values.astype(np.int32),
        index=[f"P{i // 2}_{'pre' if i % 2 == 0 else 'post'}" for i in range(6)],
        columns=[f"G{j}" for j in range(40)],
    )


def _array_store(path, values, chunks, **attrs):
    z = zarr.open_array(str(path), mode="w", shape=values.shape, chunks=chunks, dtype=values.dtype)
    z[:] = values
    z.attrs.update(attrs)
    return path


def _expected_normalised(frame: pd.DataFrame) -> np.ndarray:
    reference = ad.AnnData(X=frame.to_numpy().astype(np.int64))
    normalize_counts(reference, layer=None)
    return np.asarray(reference.layers["normalized"])


def test_plain_array_with_ids_is_lazy_and_normalises_like_numpy(tmp_path, counts):
    store = _array_store(
        tmp_path / "c.zarr", counts.to_numpy(), (2, 16),
        samples=list(counts.index), genes=list(counts.columns), orientation="samples_x_genes",
    )
    adata = read_counts(store)
    assert isinstance(adata.layers["counts"], da.Array)
    assert adata.layers["counts"].chunksize == (2, 16)  # the store's own chunks
    assert list(adata.obs_names) == list(counts.index)
    assert list(adata.var_names) == list(counts.columns)
    assert adata.uns["orientation_detected_by"] == "Zarr attribute"
    np.testing.assert_array_equal(adata.layers["counts"].compute(), counts.to_numpy())
    validate_counts(adata)
    normalize_counts(adata)
    got = adata.layers["normalized"]
    got = got.compute() if hasattr(got, "compute") else got
    np.testing.assert_allclose(got, _expected_normalised(counts), rtol=1e-13, atol=0)


def test_genes_by_samples_array_and_sheet_order(tmp_path, counts):
    store = _array_store(
        tmp_path / "g.zarr", counts.to_numpy().T.copy(), (20, 3),
        samples=list(counts.index), genes=list(counts.columns),
    )
    sheet = pd.DataFrame(
        {"patient": [s.split("_")[0] for s in counts.index],
         "timepoint": [s.split("_")[1] for s in counts.index]},
        index=counts.index,
    ).iloc[::-1]
    adata = read_counts(store, samples=sheet)
    assert adata.uns["orientation"] == "genes_x_samples"
    assert list(adata.obs_names) == list(sheet.index)
    np.testing.assert_array_equal(
        np.asarray(adata.layers["counts"].compute()), counts.loc[sheet.index].to_numpy()
    )
    assert list(adata.obs["timepoint"]) == list(sheet["timepoint"])


def test_array_without_ids_uses_longer_axis_and_generated_ids(tmp_path, counts):
    store = _array_store(tmp_path / "n.zarr", counts.to_numpy().T.copy(), (40, 6))
    adata = read_counts(store)
    assert adata.shape == counts.shape
    assert adata.obs_names[0] == "sample_0" and adata.var_names[-1] == "gene_39"
    assert adata.uns["orientation_detected_by"] == "longer axis is genes"
    forced = read_counts(store, orientation="samples_x_genes")
    assert forced.shape == counts.shape[::-1]


def test_anndata_store_prefers_counts_layer(tmp_path, counts):
    adata = ad.AnnData(
        X=np.zeros(counts.shape, dtype=np.float32),
        obs=pd.DataFrame({"patient": ["P"] * 6}, index=counts.index),
        var=pd.DataFrame(index=counts.columns),
        layers={"counts": counts.to_numpy()},
    )
    with warnings.catch_warnings():  # anndata/zarr format-transition notices while writing the fixture
        warnings.simplefilter("ignore", UserWarning)
        adata.write_zarr(tmp_path / "a.zarr")
    read = read_counts(tmp_path / "a.zarr")
    assert isinstance(read.X, da.Array)
    np.testing.assert_array_equal(read.X.compute(), counts.to_numpy())
    assert list(read.obs["patient"]) == ["P"] * 6
    assert read.uns["orientation_detected_by"] == "AnnData store"


def test_zarr_errors_name_the_store(tmp_path, counts):
    bad_ids = _array_store(tmp_path / "b.zarr", counts.to_numpy(), (6, 40),
                           samples=["a", "b"], genes=list(counts.columns))
    with pytest.raises(CountsError, match=r"b\.zarr.*'samples'.*2 ids"):
        read_counts(bad_ids)
    cube = zarr.open_array(str(tmp_path / "cube.zarr"), mode="w", shape=(2, 2, 2), dtype="int32")
    cube[:] = 1
    with pytest.raises(CountsError, match=r"cube\.zarr.*2-D"):
        read_counts(tmp_path / "cube.zarr")
    group = zarr.open_group(str(tmp_path / "grp.zarr"), mode="w")
    group.attrs["x"] = 1
    with pytest.raises(CountsError, match="not an AnnData store"):
        read_counts(tmp_path / "grp.zarr")
    sheet = pd.DataFrame({"patient": ["X"]}, index=["nobody"])
    good = _array_store(tmp_path / "ok.zarr", counts.to_numpy(), (6, 40),
                        samples=list(counts.index), genes=list(counts.columns))
    with pytest.raises(CountsError):
        read_counts(good, samples=sheet)


def test_cli_normalize_reads_a_zarr_store(tmp_path, counts):
    from click.testing import CliRunner

    from engine.cli import main

    store = _array_store(
        tmp_path / "c.zarr", counts.to_numpy(), (3, 20),
        samples=list(counts.index), genes=list(counts.columns), orientation="samples_x_genes",
    )
    out, sf = tmp_path / "n.csv", tmp_path / "sf.csv"
    result = CliRunner().invoke(
        main, ["normalize", str(store), "--method", "ratio", "--out", str(out), "--size-factors", str(sf)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, index_col=0)
    assert list(table.columns) == list(counts.index)
    np.testing.assert_allclose(table.to_numpy().T, _expected_normalised(counts), rtol=1e-13)
    assert list(pd.read_csv(sf)["sample"]) == list(counts.index)
