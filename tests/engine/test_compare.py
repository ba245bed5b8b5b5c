"""Comparing two gating strategies on the same files (``engine._compare._run``, ``phenoflow compare``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from engine import (
    Comparison,
    compare_strategies,
    format_score,
    pair_labels,
    parse_mapping,
    read_mapping,
)
from engine.cli import main
from engine.demo import DemoStudy, make_demo_study
from gating import (
    Dimension,
    RectangleGate,
    Strategy,
    apply_plan,
    compile_plan,
    preset,
    preset_path,
    read_fcs,
    write_fcs,
    write_gatingml,
)

CD8 = "/Lymphocytes/Singlets/Live/CD3+/CD8+"
CD8_GATE = "rectangle: {CD8: [0.45, null], CD4: [null, 0.45]}"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> DemoStudy:
    return make_demo_study(tmp_path_factory.mktemp("compare_study"), seed=11, n_events=4000, n_genes=200)


@pytest.fixture(scope="module")
def files(study: DemoStudy) -> list[Path]:
    return list(study.fcs[:2])


def _edited(folder: Path, name: str, old: str, new: str, *, count: int = 1) -> Path:
    """The preset YAML with ``old`` replaced by ``new`` (checking it occurs ``count`` times)."""
    text = preset_path("study_panel").read_text()
    assert text.count(old) == count, f"the preset changed: {old!r} occurs {text.count(old)} times"
    path = folder / name
    path.write_text(text.replace(old, new))
    return path


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The preset with the CD8+ gate's CD8 threshold moved up into the positive population."""
    folder = tmp_path_factory.mktemp("moved")
    return _edited(folder, "moved.yaml", CD8_GATE, CD8_GATE.replace("0.45, null", "0.67, null"))


@pytest.fixture(scope="module")
def moved_comparison(moved: Path, files: list[Path]) -> Comparison:
    return compare_strategies("study_panel", moved, files, labels=("orig", "moved"))


def _gate(strategy, path: Path):
    sample = read_fcs(path)
    return apply_plan(compile_plan(strategy, sample), sample, membership=True)


def test_moved_threshold_changes_only_that_gate_and_its_descendants(moved_comparison, moved, files):
    from gating import load_strategy

    got = moved_comparison.per_file.set_index(["file", "population_a"])
    a_strategy, b_strategy = preset("study_panel"), load_strategy(moved)
    n_populations = len(a_strategy.population_order())
    assert len(got) == n_populations * len(files)
    assert (moved_comparison.per_file["match"] == "path").all()
    assert moved_comparison.unmatched.empty and moved_comparison.ok
    for path in files:
        ra, rb = _gate(a_strategy, path), _gate(b_strategy, path)
        counts_b = rb.counts.set_index("population")["count"]
        for row in ra.counts.itertuples():
            mine = got.loc[(str(path), row.population)]
            in_a = ra.membership[row.id].to_numpy()
            in_b = rb.membership[row.id].to_numpy()
            both, either = int((in_a & in_b).sum()), int((in_a | in_b).sum())
            assert mine["count_a"] == row.count and mine["count_b"] == counts_b[row.population]
            assert mine["difference"] == counts_b[row.population] - row.count
            assert mine["in_both"] == both
            assert mine["only_a"] == int((in_a & ~in_b).sum()) and mine["only_b"] == int((~in_a & in_b).sum())
            expected_f1 = 2 * both / (in_a.sum() + in_b.sum()) if either else 1.0
            assert mine["f1"] == pytest.approx(expected_f1, rel=1e-12)
            assert mine["jaccard"] == pytest.approx(both / either if either else 1.0, rel=1e-12)
    summary = moved_comparison.summary.set_index("population_a")
    affected = summary.index.str.startswith(CD8)
    assert affected.sum() == 12  # CD8+ and its 11 descendants
    assert (summary.loc[~affected, ["f1_mean", "f1_min", "jaccard_mean", "jaccard_min"]] == 1.0).all().all()
    assert (summary.loc[~affected, "max_abs_difference"] == 0).all()
    # a higher threshold can only drop events: B's CD8+ (and all below it) is a subset of A's
    below = moved_comparison.per_file[moved_comparison.per_file["population_a"].str.startswith(CD8)]
    assert (below["only_b"] == 0).all() and (below["only_a"] > 0).any()
    assert summary.loc[CD8, "f1_mean"] < 1.0 and summary.loc[CD8, "difference"] < 0
    populated = below[below["count_a"] >= 10]  # too few events may all lie above the new threshold
    assert len(populated) >= 16 and (populated["f1"] < 1.0).all() and (populated["jaccard"] < 1.0).all()
    totals = moved_comparison.per_file.groupby("population_a")[["count_a", "count_b"]].sum()
    pd.testing.assert_frame_equal(summary[["count_a", "count_b"]].sort_index(), totals.sort_index(), check_dtype=False)


def test_timing_reports_each_strategy_per_file_and_in_total(moved_comparison, files):
    timing = moved_comparison.timing
    per_file = timing[timing["scope"] == "file"]
    assert sorted(per_file["file"].unique()) == sorted(map(str, files))
    assert per_file.groupby("file")["stage"].apply(sorted).tolist() == [["a", "b", "read"]] * len(files)
    total = timing[timing["scope"] == "total"].set_index("stage")
    assert total.loc[["a", "b"], "label"].tolist() == ["orig", "moved"]
    assert (total["files"] == len(files)).all()
    assert (total["events"] == sum(read_fcs(f).n_events for f in files)).all()
    for stage, rows in per_file.groupby("stage"):
        assert total.loc[stage, "seconds"] == pytest.approx(rows["seconds"].sum())
        assert total.loc[stage, "events_per_s"] == pytest.approx(total.loc[stage, "events"] / rows["seconds"].sum())
    strategies = per_file[per_file["stage"] != "read"]
    assert np.allclose(strategies["seconds"], strategies["compile_s"] + strategies["apply_s"])
    assert (timing["seconds"] > 0).all()


def test_renamed_population_is_unmatched_until_mapped(tmp_path, files):
    renamed = _edited(tmp_path, "renamed.yaml", "  - name: Tc17\n", "  - name: Tc17_new\n")
    plain = compare_strategies("study_panel", renamed, files)
    unmatched = set(zip(plain.unmatched["side"], plain.unmatched["population"], strict=True))
    assert unmatched == {("a", f"{CD8}/Tc17"), ("b", f"{CD8}/Tc17_new")}
    assert (plain.unmatched["files"] == len(files)).all()
    assert f"{CD8}/Tc17" not in set(plain.per_file["population_a"])
    mapped = compare_strategies("study_panel", renamed, files, mapping={f"{CD8}/Tc17": f"{CD8}/Tc17_new"})
    assert mapped.unmatched.empty
    row = mapped.summary.set_index("population_a").loc[f"{CD8}/Tc17"]
    assert (row["population_b"], row["match"]) == (f"{CD8}/Tc17_new", "mapping")
    assert row["f1_min"] == 1.0 and row["max_abs_difference"] == 0 and row["count_a"] > 0


def test_last_path_component_matches_only_when_unique(tmp_path, files):
    renamed = _edited(tmp_path, "lymphs.yaml", "Lymphocytes", "Lymphs", count=3)
    a_paths = [preset("study_panel").path(p) for p in preset("study_panel").population_order()]
    names = pd.Series([p.rsplit("/", 1)[-1] for p in a_paths])
    unique = set(names[~names.duplicated(keep=False)]) - {"Lymphocytes"}
    result = compare_strategies("study_panel", renamed, files)
    summary = result.summary
    assert (summary["match"] == "name").all()
    assert {p.rsplit("/", 1)[-1] for p in summary["population_a"]} == unique
    assert (summary["population_b"] == summary["population_a"].str.replace("/Lymphocytes", "/Lymphs")).all()
    assert (summary["f1_min"] == 1.0).all()
    ambiguous = {p for p in a_paths if p.rsplit("/", 1)[-1] not in unique}
    assert set(result.unmatched.loc[result.unmatched["side"] == "a", "population"]) == ambiguous
    # an explicit mapping takes over for populations whose names are not unique
    mapping = {"/Lymphocytes": "/Lymphs", f"{CD8}/CXCR3+": f"{CD8.replace('Lymphocytes', 'Lymphs')}/CXCR3+"}
    mapped = compare_strategies("study_panel", renamed, files, mapping=mapping).summary.set_index("population_a")
    assert mapped.loc[list(mapping), "match"].tolist() == ["mapping", "mapping"]
    assert mapped.loc[list(mapping), "population_b"].tolist() == list(mapping.values())
    assert (mapped.loc[list(mapping), "f1_min"] == 1.0).all()


def test_gatingml_export_agrees_with_the_yaml_original(tmp_path, files):
    xml = tmp_path / "panel.xml"
    write_gatingml(preset("study_panel"), xml)
    result = compare_strategies(preset_path("study_panel"), xml, files, out_dir=tmp_path / "out")
    assert result.ok and result.unmatched.empty
    assert len(result.summary) == len(preset("study_panel").population_order())
    assert (result.per_file[["f1", "jaccard"]] == 1.0).all().all()
    assert (result.per_file["difference"] == 0).all() and (result.per_file["count_a"] > 0).all()
    written = pd.read_parquet(tmp_path / "out" / "per_file.parquet")
    pd.testing.assert_frame_equal(written, result.per_file)


def _tiny(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    return [
        write_fcs(tmp_path / f"t{i}.fcs", rng.uniform(0, 10, (400, 2)), ["X", "Y"]) for i in range(2)
    ]


def test_ids_empty_populations_and_bad_arguments(tmp_path):
    x = (Dimension("X"),)
    a = Strategy(gates=(
        RectangleGate("g1", x, ((None, 5.0),), name="Low"),
        RectangleGate("g2", x, ((100.0, None),), name="Never"),
        RectangleGate("g3", x, ((100.0, None),), name="Gone"),
    ))
    b = Strategy(gates=(
        RectangleGate("h1", x, ((None, 4.0),), name="Small"),
        RectangleGate("h2", x, ((200.0, None),), name="Never"),
        RectangleGate("h3", x, ((9.0, None),), name="Gone"),
    ))
    files = _tiny(tmp_path)
    result = compare_strategies(a, b, files, mapping={"g1": "/Small"})
    rows = result.per_file.set_index(["file", "population_a"])
    for path in files:
        values = read_fcs(path).events[:, 0]
        low = rows.loc[(str(path), "/Low")]
        assert low["population_b"] == "/Small" and low["match"] == "mapping"
        assert (low["count_a"], low["count_b"]) == ((values < 5).sum(), (values < 4).sum())
        assert low["f1"] == pytest.approx(2 * (values < 4).sum() / ((values < 5).sum() + (values < 4).sum()))
        never = rows.loc[(str(path), "/Never")]  # empty in both: agreement is defined as 1
        assert (never["f1"], never["jaccard"], never["percent_difference"]) == (1.0, 1.0, 0.0)
        gone = rows.loc[(str(path), "/Gone")]  # empty in A only
        assert gone["f1"] == 0.0 and gone["count_b"] > 0 and np.isnan(gone["percent_difference"])
    with pytest.raises(ValueError, match="'nope' is neither"):
        compare_strategies(a, b, [tmp_path / "never_read.fcs"], mapping={"nope": "h1"})
    with pytest.raises(ValueError, match="distinct"):
        compare_strategies(a, b, files, labels=("same", "same"))
    with pytest.raises(ValueError, match="no FCS files"):
        compare_strategies(a, b, [])
    with pytest.raises(ValueError, match="not a FlowJo workspace"):
        compare_strategies(a, b, files, group_b="Group 1")


def test_mapping_parsers_and_short_labels(tmp_path):
    assert parse_mapping(["/a/b=/c", "x=y", "/p=q=/r/s"]) == {"/a/b": "/c", "x": "y", "/p=q": "/r/s"}
    for bad in ("nothing", "=b", "a=b=c"):
        with pytest.raises(ValueError):
            parse_mapping([bad])
    csv = tmp_path / "map.csv"
    csv.write_text('a,b\n"/x,1",/y\n\n/z,/w\n')
    assert read_mapping(csv) == {"/x,1": "/y", "/z": "/w"}
    csv.write_text("a,b\n/x,/y\n\n/z\n")
    with pytest.raises(ValueError, match="line 4 needs an A and a B"):
        read_mapping(csv)
    assert [format_score(v) for v in (1.0, 0.99996, 0.5, 0.0)] == ["1", "0.9999", "0.5000", "0.0000"]
    summary = pd.DataFrame({
        "population_a": ["/L/CD4+/CXCR3+", "/L/CD8+/CXCR3+", "/L/Tc17"],
        "population_b": ["/L/CD4+/CXCR3+", "/M/CD8+/CXCR3+", "/L/Tc17x"],
    })
    assert pair_labels(summary) == ["CD4+/CXCR3+", "CD8+/CXCR3+ ↔ CD8+/CXCR3+", "Tc17 ↔ Tc17x"]


def test_cli_writes_tables_and_figure(tmp_path, files, moved):
    folder = tmp_path / "fcs"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    out = tmp_path / "out"
    args = ["compare", "--strategy", "study_panel", "--strategy", str(moved), "--fcs", str(folder),
            "--out", str(out), "--label-a", "orig", "--label-b", "moved"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for name in ("per_file", "summary", "timing", "unmatched", "errors"):
        parquet = pd.read_parquet(out / f"{name}.parquet")
        csv = pd.read_csv(out / f"{name}.csv")
        assert list(parquet.columns) == list(csv.columns) and len(parquet) == len(csv)
    summary = pd.read_parquet(out / "summary.parquet").set_index("population_a")
    assert (summary["files"] == len(files)).all()
    image = imread(out / "agreement.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0  # something was drawn
    lines = result.output.splitlines()
    assert lines[0].startswith(f"compared {len(files)} of {len(files)} files")
    cd8 = next(line.split() for line in lines if line.startswith("CD8+ "))
    assert float(cd8[2]) == pytest.approx(summary.loc[CD8, "f1_mean"], abs=1e-4) and float(cd8[2]) < 1
    assert int(cd8[-2]) == summary.loc[CD8, "difference"]
    assert any(line.startswith("time orig:") for line in lines)
    assert any(line.startswith("time moved:") for line in lines)


def test_cli_reports_and_skips_a_corrupt_file(tmp_path, files):
    broken = tmp_path / "broken.fcs"
    broken.write_bytes(files[0].read_bytes()[:500])
    out = tmp_path / "out"
    args = ["compare", "--strategy", "study_panel", "--strategy", str(preset_path("study_panel")),
            "--fcs", str(files[0]), "--fcs", str(broken), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert f"FAILED {broken} (read)" in result.output
    assert "compared 1 of 2 files" in result.output
    errors = pd.read_parquet(out / "errors.parquet")
    assert errors["file"].tolist() == [str(broken)] and errors["stage"].tolist() == ["read"]
    assert errors["error_type"].iloc[0].startswith("FCS")
    assert set(pd.read_parquet(out / "per_file.parquet")["file"]) == {str(files[0])}


def test_cli_mapping_options_and_bad_arguments(tmp_path, files):
    renamed = _edited(tmp_path, "renamed.yaml", "  - name: Tc17\n", "  - name: Tc17_new\n")
    runner = CliRunner()
    base = ["compare", "--strategy", "study_panel", "--strategy", str(renamed), "--fcs", str(files[0])]
    mapping = tmp_path / "map.csv"
    mapping.write_text(f"A,B\n{CD8}/Tc17,{CD8}/Tc17_new\n")
    ok = runner.invoke(main, [*base, "--out", str(tmp_path / "o1"), "--map-file", str(mapping)])
    assert ok.exit_code == 0, ok.output
    summary = pd.read_parquet(tmp_path / "o1" / "summary.parquet").set_index("population_a")
    assert summary.loc[f"{CD8}/Tc17", "match"] == "mapping"
    unmapped = runner.invoke(main, [*base, "--out", str(tmp_path / "o2")])
    assert unmapped.exit_code == 0 and f"unmatched in A: {CD8}/Tc17" in unmapped.output
    one = runner.invoke(main, ["compare", "--strategy", "study_panel", "--fcs", str(files[0]), "--out", str(tmp_path / "o3")])
    assert one.exit_code == 2 and "exactly two --strategy" in one.output
    typo = runner.invoke(main, [*base, "--out", str(tmp_path / "o4"), "--map", f"{CD8}/Tc71={CD8}/Tc17_new"])
    assert typo.exit_code == 2 and "neither a population path nor an id" in typo.output
    assert not (tmp_path / "o4").exists()
    malformed = runner.invoke(main, [*base, "--out", str(tmp_path / "o5"), "--map", "no-equals"])
    assert malformed.exit_code == 2
    missing = runner.invoke(main, [*base[:4], str(tmp_path / "nope.yaml"), *base[5:], "--out", str(tmp_path / "o6")])
    assert missing.exit_code == 2 and "--strategy" in missing.output
