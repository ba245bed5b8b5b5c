"""Out-of-core normalisation: a Zarr store normalised on a real two-process LocalCluster.

The full-size proof (60,000 genes x 20,000 samples under 2 GB workers) is
``python -m benchmarks.bench_expression --parts none --zarr``; this is the same path at CI size.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import anndata as ad
import dask.array as da
import distributed
import numpy as np
import pytest
import zarr

from expression import normalize_counts

N_SAMPLES, N_GENES = 300, 2000
MEMORY_LIMIT = 600 * 2**20  # bytes per worker


def _counts() -> np.ndarray:
    """Samples x genes negative-binomial counts with zeros (some genes drop out of the ratios)."""
    rng = np.random.default_rng(7)
    mu = np.exp(rng.normal(3.0, 1.8, N_GENES))
    factors = np.exp(rng.normal(0.0, 0.4, N_SAMPLES))
    mean = factors[:, None] * mu[None, :]
    size = 1 / (0.05 + 0.5 / np.sqrt(mu))
    return rng.negative_binomial(size, size / (size + mean)).astype(np.int32)


def _vm_hwm_mib(status: str) -> float:
    line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_zarr_normalised_on_local_cluster_equals_in_memory(tmp_path: Path) -> None:
    counts = _counts()
    assert (counts == 0).any(axis=0).sum() > 100  # the 'ratio' method has genes to drop
    store, out_store = tmp_path / "counts.zarr", tmp_path / "normalized.zarr"
    z = zarr.open_array(store, mode="w", shape=counts.shape, chunks=(64, 500), dtype="int32")
    z[:] = counts

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=MEMORY_LIMIT,
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        assert len(pids) == 2 and os.getpid() not in pids.values()
        adata = ad.AnnData(X=da.from_zarr(str(store)))
        with distributed.get_task_stream(client) as stream:
            normalize_counts(adata, layer=None)
            adata.layers["normalized"].to_zarr(str(out_store))
        # the work ran in the worker processes, none of which was restarted
        ran_on = {t["worker"] for t in stream.data}
        assert ran_on and ran_on <= set(pids)
        assert client.run(os.getpid) == pids
        peaks = client.run(Path("/proc/self/status").read_text)
    assert all(_vm_hwm_mib(s) < MEMORY_LIMIT / 2**20 for s in peaks.values())

    reference = ad.AnnData(X=counts)
    normalize_counts(reference, layer=None)
    sf, sf_mem = adata.obs["size_factors"].to_numpy(), reference.obs["size_factors"].to_numpy()
    np.testing.assert_allclose(sf, sf_mem, rtol=1e-12, atol=0)
    written = zarr.open_array(out_store, mode="r")[:]
    assert written.dtype == np.float64 and written.shape == counts.shape
    np.testing.assert_allclose(written, reference.layers["normalized"], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(written, counts / sf[:, None])
    assert (
        adata.uns["size_factors"]["n_genes_used"] == reference.uns["size_factors"]["n_genes_used"]
    )
