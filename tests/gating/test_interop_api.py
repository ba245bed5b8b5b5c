"""The API takes what a user has (DataFrame, AnnData, FlowKit Sample/GatingStrategy) and gives
events back (DataFrame, AnnData, Parquet, h5ad) and FlowJo's statistics table."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import gating
from gating import (
    ConversionError,
    Dimension,
    PolygonGate,
    RectangleGate,
    Strategy,
    apply_plan,
    as_sample,
    as_strategy,
    compile_plan,
    evaluate_plan,
    event_channels,
    load_strategy,
    obs_column,
    read_fcs,
    to_anndata,
    to_dataframe,
    write_events,
    write_fcs,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo import make_demo_study

    root = tmp_path_factory.mktemp("demo")
    study = make_demo_study(root / "study", n_events=2000, n_genes=100)
    return study.fcs[0], load_strategy(study.strategy)


def _counts(result):
    return result.counts.set_index("population")["count"]


def test_dataframe_sample_gates_as_the_file(demo):
    path, strategy = demo
    fcs = read_fcs(path)
    expected = apply_plan(compile_plan(strategy, fcs), fcs, membership=True)
    events = pd.DataFrame(np.asarray(fcs.events), columns=fcs.names)
    markers = dict(zip(fcs.names, fcs.channels["marker"], strict=True))
    sample = as_sample(events, name="tube", spill=fcs.spill, markers=markers)
    assert sample.values.dtype == np.float32  # float32 stays float32: no rounding
    result = apply_plan(compile_plan(strategy, events.pipe(as_sample, name="tube", spill=fcs.spill,
                                                           markers=markers)), sample, membership=True)
    pd.testing.assert_series_equal(_counts(result), _counts(expected))
    assert result.sample == "tube"
    assert (result.membership.to_numpy() == expected.membership.to_numpy()).all()


def test_dataframe_without_spillover_is_a_typed_error_not_uncompensated(demo):
    path, strategy = demo
    fcs = read_fcs(path)
    markers = dict(zip(fcs.names, fcs.channels["marker"], strict=True))
    events = as_sample(pd.DataFrame(np.asarray(fcs.events), columns=fcs.names), markers=markers)
    with pytest.raises(gating.CompensationError):
        compile_plan(strategy, events)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (pd.DataFrame({"A": [1.0], "B": ["x"]}), "not numbers"),
        (pd.DataFrame([[1.0, 2.0]], columns=["A", "A"]), "unique"),
        (pd.DataFrame([[1.0, 2.0]], columns=[0, 1]), "non-empty strings"),
    ],
)
def test_ambiguous_dataframes_are_refused(frame, match):
    with pytest.raises(ConversionError, match=match):
        as_sample(frame)


def test_other_objects_are_refused():
    with pytest.raises(ConversionError, match="channel names"):
        as_sample(np.ones((2, 2)))
    with pytest.raises(ConversionError, match="read it first"):
        as_sample("x.fcs")
    with pytest.raises(ConversionError, match="strategy"):
        as_strategy(object())
    with pytest.raises(ConversionError, match="markers="):
        as_sample(pd.DataFrame({"A": [1.0]}), markers={"B": "CD3"})


def test_anndata_sample_and_round_trip_through_to_anndata(demo):
    path, strategy = demo
    fcs = read_fcs(path)
    result = apply_plan(compile_plan(strategy, fcs), fcs)
    adata = to_anndata(result)
    # X is raw, uns["spill"] the file's matrix: the AnnData gates to the same counts
    again = apply_plan(compile_plan(strategy, adata), adata)
    pd.testing.assert_series_equal(_counts(again), _counts(result))
    with pytest.raises(ConversionError, match="no layer"):
        as_sample(adata, layer="nope")
    comp = as_sample(adata, layer="compensated")
    assert comp.names == list(adata.var_names)


def test_flowkit_sample_gates_as_the_file(demo):
    flowkit = pytest.importorskip("flowkit")
    path, strategy = demo
    fcs = read_fcs(path)
    expected = apply_plan(compile_plan(strategy, fcs), fcs)
    fk_sample = flowkit.Sample(str(path))
    result = apply_plan(compile_plan(strategy, fk_sample), fk_sample)
    pd.testing.assert_series_equal(_counts(result), _counts(expected))
    assert result.sample == fk_sample.id
    fk_sample.set_flagged_events([0, 1])
    with pytest.raises(ConversionError, match="flagged_indices"):
        as_sample(fk_sample)


def test_flowkit_compensation_that_differs_from_the_file_is_ambiguous(demo):
    flowkit = pytest.importorskip("flowkit")
    path, _ = demo
    fk_sample = flowkit.Sample(str(path))
    spill = read_fcs(path).spill
    other = spill.to_numpy().copy()
    other[0, 1] += 0.05
    fk_sample.apply_compensation(flowkit.Matrix(other, list(spill.columns), list(spill.columns)))
    with pytest.raises(ConversionError, match="differs"):
        as_sample(fk_sample)
    same = as_sample(fk_sample, spill=spill)  # said explicitly: fine
    assert same.spill is not None


def test_flowkit_gating_strategy_counts_equal_flowkits(tmp_path):
    flowkit = pytest.importorskip("flowkit")
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 1000, size=(3000, 2)).astype(np.float32)
    path = write_fcs(tmp_path / "t.fcs", values, ["FSC-A", "SSC-A"])
    gs = flowkit.GatingStrategy()
    dims = [flowkit.Dimension("FSC-A", range_min=100, range_max=800),
            flowkit.Dimension("SSC-A", range_min=50)]
    gs.add_gate(flowkit.gates.RectangleGate("Cells", dims), gate_path=("root",))
    poly = flowkit.gates.PolygonGate(
        "Tri", [flowkit.Dimension("FSC-A"), flowkit.Dimension("SSC-A")],
        [[100, 50], [800, 50], [400, 900]])
    gs.add_gate(poly, gate_path=("root", "Cells"))
    fk_counts = gs.gate_sample(flowkit.Sample(str(path))).report.set_index("gate_name")["count"]
    sample = read_fcs(path)
    result = apply_plan(compile_plan(gs, sample), sample)
    ours = result.counts.set_index("id")["count"]
    assert ours["Cells"] == fk_counts["Cells"] and ours["Tri"] == fk_counts["Tri"]
    assert 0 < ours["Tri"] < ours["Cells"]
    assert isinstance(as_strategy(gs), Strategy)


def _two_gate_result(tmp_path, *, membership=False):
    rng = np.random.default_rng(7)
    values = rng.lognormal(5, 1.5, size=(5000, 3)).astype(np.float32) - 20
    spill = pd.DataFrame([[1.0, 0.1], [0.05, 1.0]], index=["FL1-A", "FL2-A"],
                         columns=["FL1-A", "FL2-A"])
    path = write_fcs(tmp_path / "e.fcs", values, ["FSC-A", "FL1-A", "FL2-A"], spill=spill)
    strategy = Strategy(
        transforms={"asinh": gating.Asinh(m=4.5, t=262144, a=0.0)},
        gates=(
            RectangleGate("Cells", (Dimension("FSC-A"),), ((100.0, None),)),
            PolygonGate("P", (Dimension("FL1-A", compensation="FCS", transform="asinh"),
                              Dimension("FL2-A", compensation="FCS", transform="asinh")),
                        ((0.2, 0.2), (0.9, 0.2), (0.9, 0.9)), parent="Cells"),
        ),
    )
    sample = read_fcs(path)
    plan = compile_plan(strategy, sample)
    return plan, sample, apply_plan(plan, sample, membership=membership, stats=True, mfi=["FL1-A"])


def test_to_dataframe_values_are_the_gates_values(tmp_path):
    plan, sample, result = _two_gate_result(tmp_path, membership=True)
    df = to_dataframe(result)
    ev = evaluate_plan(plan, sample)
    for ch in event_channels(plan, sample):
        key = ch.feature.key
        np.testing.assert_array_equal(df[f"{ch.label} | compensated"], ev.untransformed(key, None))
        np.testing.assert_array_equal(df[f"{ch.label} | transformed"], ev.feature(key, None))
        np.testing.assert_array_equal(df[f"{ch.label} | raw"],
                                      np.asarray(sample.events[:, ch.column], dtype=np.float64))
    for pid in ("Cells", "P"):
        assert df[pid].tolist() == result.membership[pid].tolist()
    assert df["event"].tolist() == list(range(sample.n_events))
    assert [p["id"] for p in df.attrs["populations"]] == ["Cells", "P"]
    # without kept membership the sample is gated again: same answer
    _, _, lean = _two_gate_result(tmp_path)
    assert to_dataframe(lean)[["Cells", "P"]].equals(df[["Cells", "P"]])


def test_to_anndata_layout(tmp_path):
    _, sample, result = _two_gate_result(tmp_path, membership=True)
    adata = to_anndata(result)
    assert adata.shape == (sample.n_events, 3)
    assert list(adata.var_names) == ["FSC-A", "FL1-A", "FL2-A"]
    assert set(adata.layers) == {"compensated", "transformed"}
    assert adata.obs["P"].dtype == bool and int(adata.obs["P"].sum()) == int(
        result.counts.set_index("id").loc["P", "count"])
    assert list(adata.uns["populations"]["count"]) == list(result.counts["count"])
    assert adata.var.loc["FL1-A", "compensation"] == "FCS"
    assert obs_column("/Lymphocytes/CD3+") == "Lymphocytes|CD3+"


def test_write_events_in_chunks_equals_in_memory(tmp_path):
    _, sample, result = _two_gate_result(tmp_path)
    df = to_dataframe(result)
    out = write_events(result, tmp_path / "ev.parquet", chunk_events=777)
    back = pq.read_table(out)
    assert pq.ParquetFile(out).metadata.num_row_groups == -(-sample.n_events // 777)
    pd.testing.assert_frame_equal(back.to_pandas(), df, check_like=False)
    h5 = write_events(result, tmp_path / "ev.h5ad", chunk_events=777)
    full = anndata.read_h5ad(h5)
    mem = to_anndata(result)
    np.testing.assert_array_equal(full.X, mem.X)
    for layer in ("compensated", "transformed"):
        np.testing.assert_array_equal(full.layers[layer], mem.layers[layer])
    assert full.obs.equals(mem.obs)
    backed = anndata.read_h5ad(h5, backed="r")
    assert backed.shape == mem.shape and list(backed.obs.columns) == ["Cells", "P"]
    backed.file.close()
    with pytest.raises(ValueError, match="format"):
        write_events(result, tmp_path / "ev.csv")


def test_stats_follow_flowjos_definitions(tmp_path):
    _, sample, result = _two_gate_result(tmp_path, membership=True)
    row = result.stats.iloc[0]
    counts = result.counts.set_index("id")
    n = sample.n_events
    assert row["Cells | Count"] == counts.loc["Cells", "count"]
    assert row["Cells | Freq. of Total"] == pytest.approx(100 * counts.loc["Cells", "count"] / n)
    assert np.isnan(row["Cells | Freq. of Grandparent"])  # a top-level gate has none
    assert row["Cells/P | Freq. of Grandparent"] == pytest.approx(
        100 * counts.loc["P", "count"] / n)
    assert row["Cells/P | Freq. of Parent"] == pytest.approx(counts.loc["P", "percent_of_parent"])
    # per channel, on the compensated values (the same the MFI reports)
    mfi = result.mfi.set_index(["population", "channel"])["median"]
    assert row["Cells/P | Median (FL1-A)"] == mfi.loc[("/Cells/P", "FL1-A")]
    x = to_dataframe(result).loc[result.membership["P"].to_numpy(), "FL1-A | compensated"].to_numpy()
    p16, p84 = np.percentile(x, [15.87, 84.13])
    assert row["Cells/P | Robust SD (FL1-A)"] == pytest.approx(0.5 * (p84 - p16))
    assert row["Cells/P | Mean (FL1-A)"] == pytest.approx(x.mean())
    assert row["Cells/P | CV (FL1-A)"] == pytest.approx(100 * x.std(ddof=1) / x.mean())
    pos = x[x > 0]
    assert row["Cells/P | Geometric Mean (FL1-A)"] == pytest.approx(np.exp(np.log(pos).mean()))
    assert [c for c in result.stats.columns if c.startswith("Cells | Median")] == [
        "Cells | Median (FSC-A)", "Cells | Median (FL1-A)", "Cells | Median (FL2-A)"]
