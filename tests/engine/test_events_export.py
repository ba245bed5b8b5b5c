"""``phenoflow gate --events`` and ``--stats`` on the demo study's real files."""

from __future__ import annotations

import json

import anndata
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from engine.cli import main
from gating import apply_plan, compile_plan, load_strategy, obs_column, read_fcs


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from engine.demo import make_demo_study

    root = tmp_path_factory.mktemp("events")
    return make_demo_study(root / "study", n_events=2000, n_genes=100)


def _gate(study, out, *extra):
    files = [str(p) for p in study.fcs[:4]]
    args = ["gate", "--strategy", str(study.strategy), "--out", str(out), "--in-process"]
    for f in files:
        args += ["--fcs", f]
    return CliRunner().invoke(main, [*args, *extra], catch_exceptions=False)


def test_events_parquet_per_sample_and_resumed(study, tmp_path):
    out = tmp_path / "out"
    first = _gate(study, out, "--events", "parquet")
    assert first.exit_code == 0, first.output
    written = sorted((out / "events").glob("*.parquet"))
    assert [p.stem for p in written] == sorted(p.stem for p in study.fcs[:4])
    strategy = load_strategy(study.strategy)
    sample = read_fcs(study.fcs[0])
    expected = apply_plan(compile_plan(strategy, sample), sample, membership=True)
    table = pq.read_table(out / "events" / f"{study.fcs[0].stem}.parquet")
    frame = table.to_pandas()
    assert len(frame) == sample.n_events
    for pid in expected.membership.columns:  # one boolean column per population id
        assert frame[pid].tolist() == expected.membership[pid].tolist()
    # labelled by $PnN (the strategy names the marker CD3)
    assert {"APC-H7-A | raw", "APC-H7-A | compensated", "APC-H7-A | transformed"} <= set(frame.columns)
    meta = json.loads(table.schema.metadata[b"phenoflow"])
    assert [p["count"] for p in meta["populations"]] == expected.counts["count"].tolist()
    assert json.loads((out / "run.json").read_text())["events"] == "parquet"
    # a second run reuses every part and leaves the event files as they were
    stamps = {p: p.stat().st_mtime_ns for p in written}
    again = _gate(study, out, "--events", "parquet")
    assert again.exit_code == 0 and "(4 from an earlier run)" in again.output
    assert {p: p.stat().st_mtime_ns for p in written} == stamps


def test_events_h5ad_reads_with_anndata(study, tmp_path):
    out = tmp_path / "out"
    result = _gate(study, out, "--events", "h5ad")
    assert result.exit_code == 0, result.output
    adata = anndata.read_h5ad(out / "events" / f"{study.fcs[1].stem}.h5ad")
    sample = read_fcs(study.fcs[1])
    strategy = load_strategy(study.strategy)
    expected = apply_plan(compile_plan(strategy, sample), sample, membership=True)
    assert adata.n_obs == sample.n_events and set(adata.layers) == {"compensated", "transformed"}
    for pid in expected.membership.columns:
        assert adata.obs[obs_column(pid)].tolist() == expected.membership[pid].tolist()
    assert adata.uns["phenoflow"]["sample"] == study.fcs[1].stem
    assert np.isfinite(adata.layers["transformed"]).all()


def test_stats_table_one_row_per_sample(study, tmp_path):
    out = tmp_path / "out"
    result = _gate(study, out, "--stats", "--stats-channels", "CD3,FSC-A")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "stats.parquet")
    csv = pd.read_csv(out / "stats.csv")
    assert list(table["sample"]) == [p.stem for p in study.fcs[:4]] == list(csv["sample"])
    pops = pd.read_parquet(out / "populations.parquet")
    first = pops[pops["sample"] == study.fcs[0].stem].set_index("population")
    row = table.iloc[0]
    path = "/Lymphocytes/Singlets/Live/CD3+"
    label = path.lstrip("/")
    assert row[f"{label} | Count"] == first.loc[path, "count"]
    assert row[f"{label} | Freq. of Parent"] == pytest.approx(first.loc[path, "percent_of_parent"])
    assert row[f"{label} | Freq. of Total"] == pytest.approx(first.loc[path, "percent_of_total"])
    assert f"{label} | Robust SD (APC-H7-A)" in table.columns  # CD3 is the marker of APC-H7-A
    assert f"{label} | Geometric Mean (FSC-A)" in table.columns
    assert not any("(SSC-A)" in c for c in table.columns)


def test_stats_channel_typo_and_channels_without_stats_are_usage_errors(study, tmp_path):
    typo = _gate(study, tmp_path / "a", "--stats", "--stats-channels", "CD33x")
    assert typo.exit_code == 2 and "--stats-channels" in typo.output
    alone = _gate(study, tmp_path / "b", "--stats-channels", "CD3")
    assert alone.exit_code == 2 and "--stats" in alone.output
