"""FlowJo's table-editor statistics (``apply_plan(stats=...)``, ``phenoflow gate --stats``):
values against numpy on files written here, and memory bounded by one channel at a time.

The reference compensates as the gating kernels do (``sum_t x[:, t] * W[t, k]`` in detector
order, ``W`` the unmixing matrix): the statistics then equal numpy's exactly. A BLAS product
``X @ W`` rounds some events' values differently in the last bit (it depends on how BLAS splits
the rows), so against it the statistics agree to 1e-13 relative.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from gating import (
    Asinh,
    BooleanGate,
    Dimension,
    EllipsoidGate,
    PolygonGate,
    RectangleGate,
    Strategy,
    apply_plan,
    as_sample,
    compile_plan,
    evaluate_plan,
    read_fcs,
    to_dataframe,
    write_fcs,
)
from gating._compensation import unmixing_matrix

FLUOR = ["FL1-A", "FL2-A", "FL3-A", "FL4-A"]
NAMES = ["FSC-A", "SSC-A", *FLUOR]


def _events(n: int, n_fluor: int = 4, seed: int = 3) -> tuple[np.ndarray, pd.DataFrame, list[str]]:
    rng = np.random.default_rng(seed)
    fluor = [f"FL{i}-A" for i in range(1, n_fluor + 1)]
    x = np.empty((n, 2 + n_fluor), dtype=np.float32)
    x[:, :2] = rng.lognormal(9, 0.6, size=(n, 2))
    x[:, 2:] = rng.lognormal(5, 1.4, size=(n, n_fluor)) - 40  # negatives after compensation
    x[rng.random(n) < 0.01, 2] = 0.0  # exact zeros: left out of the geometric mean
    spill = np.eye(n_fluor) + 0.08 * rng.random((n_fluor, n_fluor)) * (1 - np.eye(n_fluor))
    return x, pd.DataFrame(spill, index=fluor, columns=fluor), ["FSC-A", "SSC-A", *fluor]


def _strategy() -> Strategy:
    fl = [Dimension(c, compensation="FCS", transform="asinh") for c in FLUOR[:2]]
    return Strategy(
        transforms={"asinh": Asinh(m=4.5, t=262144, a=0.0)},
        gates=(
            RectangleGate("Cells", (Dimension("FSC-A"),), ((3000.0, None),)),
            PolygonGate("P", tuple(fl), ((0.05, 0.05), (0.6, 0.05), (0.6, 0.7), (0.1, 0.5)),
                        parent="Cells"),
            EllipsoidGate("E", (Dimension("FSC-A"), Dimension("SSC-A")), (8000.0, 8000.0),
                          ((2.0e7, 0.5e7), (0.5e7, 2.0e7)), 1.0, parent="Cells"),
            RectangleGate("Hi", (fl[1],), ((0.3, None),), parent="P"),
            BooleanGate("PnotE", "and", (("P", False), ("E", True)), parent="Cells"),
        ),
    )


def _reference(values: np.ndarray, spill: pd.DataFrame, names: list[str]) -> np.ndarray:
    unmix = unmixing_matrix(spill.to_numpy(), inverted=False)
    det = [names.index(c) for c in spill.columns]
    comp = values.astype(np.float64)
    for k, col in enumerate(det):
        acc = np.zeros(len(values))
        for t, c in enumerate(det):
            acc += values[:, c].astype(np.float64) * unmix[t, k]
        comp[:, col] = acc
    return comp


def _numpy_stats(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return dict.fromkeys(("Median", "Mean", "Geometric Mean", "CV", "Robust SD"), np.nan)
    p50, p16, p84 = np.percentile(x, [50.0, 15.87, 84.13])
    pos = x[x > 0]
    return {
        "Median": float(np.median(x)),
        "Mean": float(np.mean(x)),
        "Geometric Mean": float(np.exp(np.mean(np.log(pos)))),
        "CV": float(100 * np.std(x, ddof=1) / np.mean(x)),
        "Robust SD": float(0.5 * (p84 - p16)),
        "p50": float(p50),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    values, spill, names = _events(30_001)
    path = write_fcs(tmp_path_factory.mktemp("stats") / "s.fcs", values, names, spill=spill)
    return values, spill, names, path


@pytest.mark.parametrize("source", ["fcs", "dataframe"])
def test_stats_equal_numpy_on_every_population_and_channel(written, source):
    values, spill, names, path = written
    sample = read_fcs(path) if source == "fcs" else as_sample(
        pd.DataFrame(values, columns=names), spill=spill, name="s")
    result = apply_plan(compile_plan(_strategy(), sample), sample, membership=True, stats=names)
    row = result.stats.iloc[0]
    comp = _reference(values, spill, names)
    blas = values.astype(np.float64)
    blas[:, 2:] = values[:, 2:].astype(np.float64) @ unmixing_matrix(spill.to_numpy(),
                                                                      inverted=False)
    checked = 0
    for pop_row in result.counts.itertuples():
        mask = result.membership[pop_row.id].to_numpy()
        label = pop_row.population.lstrip("/")
        assert row[f"{label} | Count"] == mask.sum() == pop_row.count
        for j, channel in enumerate(names):
            want = _numpy_stats(comp[mask, j])
            loose = _numpy_stats(blas[mask, j])
            assert want["Median"] == want["p50"]  # FlowJo's median: the 50th percentile
            for stat in ("Median", "Mean", "Geometric Mean", "CV", "Robust SD"):
                got = row[f"{label} | {stat} ({channel})"]
                assert got == want[stat], (label, channel, stat)
                assert got == pytest.approx(loose[stat], rel=1e-13)
                checked += 1
    assert checked == 5 * len(names) * 5  # 5 populations


def test_stats_median_is_the_mfi_and_the_exported_compensated_values(written):
    *_, path = written
    sample = read_fcs(path)
    result = apply_plan(compile_plan(_strategy(), sample), sample, membership=True,
                        stats=["FL1-A", "FL2-A"], mfi=["FL1-A", "FL2-A"])
    frame = to_dataframe(result)
    mfi = result.mfi.set_index(["population", "channel"])["median"]
    row = result.stats.iloc[0]
    for pop_row in result.counts.itertuples():
        mask = result.membership[pop_row.id].to_numpy()
        label = pop_row.population.lstrip("/")
        for channel in ("FL1-A", "FL2-A"):
            median = row[f"{label} | Median ({channel})"]
            assert median == mfi.loc[(pop_row.population, channel)]
            assert median == np.median(frame.loc[mask, f"{channel} | compensated"].to_numpy())


def test_stats_memory_is_one_channel_at_a_time(tmp_path):
    """Numpy allocations of the statistics step (traced, the mapped file is not) stay within a
    few float64 columns of events, whatever the number of channels: before, all channels'
    compensated values and the spillover's detector columns were held at once (here 22
    columns)."""
    n = 200_000
    values, spill, names = _events(n, n_fluor=10, seed=5)
    path = write_fcs(tmp_path / "wide.fcs", values, names, spill=spill)
    sample = read_fcs(path)
    plan = compile_plan(_strategy(), sample)
    ev = evaluate_plan(plan, sample)
    apply_plan(plan, sample, stats=names[:3], evaluator=ev)  # warm
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = apply_plan(plan, sample, stats=names, evaluator=ev)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    column = n * 8
    assert len(names) == 12 and result.stats.shape[1] == 1 + 5 * (4 + 5 * 12)
    assert peak - base < 5 * column, f"{(peak - base) / column:.1f} columns"


@pytest.mark.parametrize("chunk_bytes", [None, 1], ids=["one-chunk", "8-event-chunks"])
def test_stats_are_the_same_in_every_storage_layout_and_chunking(tmp_path, monkeypatch,
                                                                  chunk_bytes):
    """Integer events stored as float32 (read from the mapping), big-endian int16 and bit-packed
    integers (decoded) give the same table, also compensated chunk by chunk of 8 events."""
    from tests.fcs_factory import build_dataset

    if chunk_bytes is not None:
        monkeypatch.setattr("gating._fcs._data.CHUNK_BYTES", chunk_bytes)
    values, spill, names = _events(2_000, seed=9)
    values = np.clip(np.rint(values / 64), 0, 1023)  # integers exact in every layout
    coefficients = (repr(float(v)) for v in spill.to_numpy().ravel())
    spill_text = ",".join(["4", *spill.columns, *coefficients])
    tables = []
    for i, (version, datatype, bits, order) in enumerate([
        ("FCS3.1", "F", None, "1,2,3,4"),
        ("FCS2.0", "I", [16] * 6, "4,3,2,1"),
        ("FCS2.0", "I", [10, 11, 10, 12, 10, 10], "1,2,3,4"),
    ]):
        stored = values.astype(np.uint64) if datatype == "I" else values.astype(np.float32)
        blob = build_dataset(stored, version=version, datatype=datatype, bits=bits,
                             byteorder=order, names=names, ranges=[1024] * 6,
                             extra={"$SPILLOVER": spill_text})
        (tmp_path / f"l{i}.fcs").write_bytes(blob)
        sample = read_fcs(tmp_path / f"l{i}.fcs")
        strategy = Strategy(gates=(
            RectangleGate("Cells", (Dimension("FSC-A"),), ((100.0, None),), name="Cells"),
            RectangleGate("Hi", (Dimension("FL1-A", compensation="FCS"),), ((2.0, None),),
                          parent="Cells", name="Hi"),
        ))
        result = apply_plan(compile_plan(strategy, sample), sample, stats=names,
                            sample_name="s")
        tables.append(result.stats)
    assert 0 < tables[0]["Cells/Hi | Count"].iloc[0] < tables[0]["Cells | Count"].iloc[0]
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0], check_exact=True)
