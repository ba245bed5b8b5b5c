"""validate_counts: one typed error per bad-input kind, naming the first offending gene/sample."""

from __future__ import annotations

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import pytest

from expression import CountsError, read_counts, validate_counts


def _adata(x, genes=None, samples=None) -> ad.AnnData:
    n, m = np.shape(x)
    obs = pd.DataFrame(index=samples or [f"s{i}" for i in range(n)])
    var = pd.DataFrame(index=genes or [f"g{j}" for j in range(m)])
    with np.errstate(all="ignore"):
        return ad.AnnData(X=x, obs=obs, var=var, layers={"counts": x})


def _good() -> np.ndarray:
    return np.arange(1, 13, dtype=np.float64).reshape(3, 4)


@pytest.mark.parametrize("lazy", [False, True])
def test_good_counts_pass(lazy):
    x = _good()
    validate_counts(_adata(da.from_array(x, chunks=(2, 3)) if lazy else x))
    validate_counts(_adata(x.astype(np.int64)))


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize(
    ("value", "what"),
    [(-1.0, "negative"), (2.5, "non-integer"), (np.nan, "missing"), (np.inf, "infinite")],
)
def test_bad_values_name_gene_and_sample(value, what, lazy):
    x = _good()
    x[2, 1] = value
    x[1, 3] = value  # a later gene: the first offending gene is reported
    adata = _adata(da.from_array(x, chunks=(2, 2)) if lazy else x)
    with pytest.raises(CountsError, match=what) as info:
        validate_counts(adata)
    assert info.value.gene == "g1" and info.value.sample == "s2"
    assert "'g1'" in str(info.value) and "'s2'" in str(info.value)


def test_negative_integer_counts():
    x = _good().astype(np.int64)
    x[0, 2] = -3
    with pytest.raises(CountsError, match="negative count -3 at gene 'g2', sample 's0'"):
        validate_counts(_adata(x))


@pytest.mark.filterwarnings("ignore:(Variable|Observation) names are not unique:UserWarning")
def test_duplicated_ids():
    with pytest.raises(CountsError, match="duplicated gene id 'g1'"):
        validate_counts(_adata(_good(), genes=["g0", "g1", "g1", "g3"]))
    with pytest.raises(CountsError, match="duplicated sample id 'a'") as info:
        validate_counts(_adata(_good(), samples=["a", "b", "a"]))
    assert info.value.sample == "a"


def test_sheet_and_matrix_disagree():
    adata = _adata(_good())
    with pytest.raises(CountsError, match="'s9' is in the sample sheet but not in the count matrix"):
        validate_counts(adata, samples=pd.DataFrame(index=["s0", "s1", "s2", "s9"]))
    with pytest.raises(CountsError, match="'s2' is in the count matrix but not in the sample sheet"):
        validate_counts(adata, samples=pd.DataFrame(index=["s0", "s1"]))
    validate_counts(adata, samples=pd.DataFrame(index=["s2", "s0", "s1"]))


def test_read_counts_checks_the_sheet(tmp_path):
    path = tmp_path / "c.csv"
    pd.DataFrame(_good().T.astype(int), index=["g0", "g1", "g2", "g3"], columns=["a", "b", "c"]).to_csv(path)
    with pytest.raises(CountsError, match="'z' is in the sample sheet"):
        read_counts(path, samples=pd.DataFrame({"group": [1, 2, 3, 4]}, index=["a", "b", "c", "z"]))


@pytest.mark.parametrize("lazy", [False, True])
def test_all_zero_sample(lazy):
    x = _good()
    x[1] = 0
    with pytest.raises(CountsError, match="sample 's1' has only zero counts"):
        validate_counts(_adata(da.from_array(x, chunks=2) if lazy else x))


def test_non_numeric_dtype():
    adata = _adata(np.ones((2, 2)))
    adata.layers["counts"] = np.array([[1, 2], [3, 4]], dtype=complex)
    with pytest.raises(CountsError, match="real numbers"):
        validate_counts(adata)


def test_missing_layer_is_a_key_error():
    with pytest.raises(KeyError, match="raw"):
        validate_counts(_adata(_good()), layer="raw")
