"""The study pipeline on a small demo study: it recovers what the generator planted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from engine import ExecutorSpec, StudyError, StudyRun, load_study, run_study
from engine.demo import DemoStudy, make_demo_study

SMALL = {"n_events": 5000, "n_genes": 1000}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoStudy, StudyRun, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("study")
    study = make_demo_study(root / "data", **SMALL)  # the default seed, as `phenoflow demo`
    run = run_study(study.study, out_dir=root / "out", executor=ExecutorSpec(kind="inprocess"))
    tables = {p.name: p.read_bytes() for p in sorted((run.out_dir / "tables").iterdir())}
    return study, run, tables


@pytest.fixture(scope="module")
def truth(demo: tuple[DemoStudy, StudyRun, dict[str, bytes]]) -> dict[str, Any]:
    return json.loads(demo[0].truth.read_text())


@pytest.fixture(scope="module")
def run(demo: tuple[DemoStudy, StudyRun, dict[str, bytes]]) -> StudyRun:
    return demo[1]


def _row(table: pd.DataFrame, **match: object) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for key, value in match.items():
        mask &= (table[key] == value).to_numpy()
    assert mask.sum() == 1, f"{match}: {mask.sum()} rows"
    return table[mask].iloc[0]


# --- what the study recovers --------------------------------------------------------------------


def test_outputs_written(run: StudyRun) -> None:
    for name, parquet in run.tables.items():
        assert parquet.is_file() and parquet.with_suffix(".csv").is_file(), name
    expected = {"clinical_tests", "population_frequencies", "population_tests", "correlations",
                "differential_expression", "geneset_scores", "geneset_tests", "subgroup_summary"}
    assert expected <= set(run.tables)
    for png in run.figures:
        assert png.stat().st_size > 0 and png.with_suffix(".svg").is_file()
    stems = {p.stem for p in run.figures}
    assert {"clinical_slopes", "population_slopes", "correlations", "volcano",
            "geneset_slopes"} <= stems
    assert sum(s.startswith("gates_") for s in stems) == 2  # one patient, pre and post
    record = json.loads(run.record.read_text())
    assert set(record["inputs"]) >= {"manifest", "clinical", "strategy", "counts", "samples"}
    assert all(len(v["sha256"]) == 64 for v in record["inputs"].values())
    assert record["versions"]["pydeseq2"] and record["strategy"]["sha256"]
    assert record["gating"]["failed"] == 0


def test_mmrss_decreases(run: StudyRun, truth: dict[str, Any]) -> None:
    row = _row(run.table("clinical_tests"), variable="MMRSS")
    realised = truth["clinical"]["realised"]["MMRSS"]
    assert row["n"] == realised["pre"]["n"] == realised["post"]["n"]
    assert row["pre_mean"] == pytest.approx(realised["pre"]["mean"])
    assert row["post_mean"] == pytest.approx(realised["post"]["mean"])
    assert row["pre_sd"] == pytest.approx(realised["pre"]["sd"])
    assert row["pre_sem"] == pytest.approx(realised["pre"]["sem"])
    assert row["post_mean"] < row["pre_mean"]
    assert row["pvalue"] < 0.01
    assert row["padj"] >= row["pvalue"]


def test_tc17_of_cd8_decreases_and_matches_the_events(run: StudyRun, truth: dict[str, Any]) -> None:
    parent = truth["flow"]["tc17_parent"]
    freq = run.table("population_frequencies")
    tc17 = freq[(freq["population"] == "Tc17") & (freq["denominator"] == parent)]
    files = truth["flow"]["files"]
    assert set(tc17["sample"]) == set(files)
    for r in tc17.itertuples(index=False):
        assert r.percent == pytest.approx(files[r.sample]["tc17_pct_of_cd8_generated"], abs=0.6)
    total = freq[(freq["population"] == "Tc17") & (freq["denominator"] == "total events")]
    assert (total["denominator_count"] == SMALL["n_events"]).all()
    row = _row(run.table("population_tests"), variable=f"Tc17 (% of {parent})")
    pairs = [p for p, v in truth["patients"].items() if v["baseline_flow"]]
    assert row["n"] == len(pairs)
    assert row["post_mean"] < row["pre_mean"]
    assert row["pvalue"] < 0.05


def test_baseline_tc17_correlates_with_mmrss(run: StudyRun, truth: dict[str, Any]) -> None:
    planted = truth["correlations"]["tc17_pre_vs_mmrss_pre"]
    corr = run.table("correlations")
    for method in ("spearman", "pearson"):
        row = _row(corr, x="Tc17", y="MMRSS", method=method)
        assert row["timepoint"] == "pre" and row["n"] == planted["n"]
        # gating recovers the generated events' Tc17 closely: r within 0.1 of theirs
        assert row["r"] == pytest.approx(planted["generated_events"][method], abs=0.1)
        assert abs(row["r"] - planted["target"]) < 0.2
        assert row["ci_low"] < row["r"] < row["ci_high"]
        assert row["pvalue"] < 0.05


def test_pooled_correlation_warns(run: StudyRun, truth: dict[str, Any]) -> None:
    planted = truth["correlations"]["mmrss_vs_haq_di_pooled"]
    row = _row(run.table("correlations"), x="MMRSS", y="HAQ_DI")
    assert row["timepoint"] == "pooled" and row["n"] == planted["n"]
    assert row["r"] == pytest.approx(planted["pearson"])
    assert "not independent" in row["warning"]


def test_gene_set_scores_decrease(run: StudyRun, truth: dict[str, Any]) -> None:
    tests = run.table("geneset_tests")
    sets = truth["expression"]["gene_sets"]
    assert set(sets) <= set(tests["variable"])  # the planted sets (gene_sets.gmt)
    for name in sets:  # interferon and TGF-beta
        row = _row(tests, variable=name)
        assert row["n"] == len(truth["biopsy_patients"])
        assert row["diff_mean"] < 0 and row["post_mean"] < row["pre_mean"]
        assert row["pvalue"] < 0.05
    de = run.table("differential_expression").set_index("gene")
    planted = pd.Series(truth["expression"]["log2_fold_change_post_vs_pre"])
    assert (de.loc[planted.index, "log2FoldChange"] < 0).mean() > 0.9
    assert de.loc[planted.index, "log2FoldChange"].corr(planted) > 0.5
    others = de.drop(planted.index)
    assert abs(others["log2FoldChange"].median()) < 0.1


def test_subgroups_cover_the_cohort(run: StudyRun, truth: dict[str, Any]) -> None:
    sub = run.table("subgroup_summary")
    groups = pd.Series({p: v["group"] for p, v in truth["patients"].items()})
    mmrss = sub[sub["variable"] == "MMRSS"].set_index("subgroup")["n"]
    assert mmrss.to_dict() == groups.value_counts().to_dict()


def test_report_walks_through_the_study(run: StudyRun) -> None:
    html = run.report.read_text()
    for heading in ("Cohort", "Clinical response", "Flow cytometry", "Skin RNA", "Correlations",
                    "Subgroups", "Methods"):
        assert f">{heading}</h2>" in html
    assert html.count('<img src="data:image/png;base64,') == len(run.figures)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    md = run.report_md.read_text()
    for png in run.figures:
        assert f"]({png.relative_to(run.out_dir).as_posix()})" in md


# --- re-runs and validation ---------------------------------------------------------------------


def test_rerun_resumes_and_gives_identical_tables(
    demo: tuple[DemoStudy, StudyRun, dict[str, bytes]],
) -> None:
    study, first, tables = demo
    again = run_study(study.study, out_dir=first.out_dir, executor=ExecutorSpec(kind="inprocess"))
    assert again.gating.resumed == len(study.fcs)
    now = {p.name: p.read_bytes() for p in sorted((again.out_dir / "tables").iterdir())}
    assert sorted(now) == sorted(tables)
    for name, data in tables.items():
        assert now[name] == data, name


def _broken(study: DemoStudy, tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(study.study.read_text())
    change(raw)
    for name in ("strategy.yaml", "counts.csv", "samples.csv", "clinical.csv", "gene_sets.gmt",
                 "truth.json"):
        shutil.copy(study.out_dir / name, tmp_path / name)
    for f in raw["fcs"]:
        f["path"] = str(study.out_dir / f["path"])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (lambda m: m.update(counts="nope.csv"), "counts", "file not found"),
        (lambda m: m["populations_of_interest"][0].update(path="/Lymphocytes/Nope"),
         "populations_of_interest[0].path", "unknown population"),
        (lambda m: m["outcomes"].append("MMRS"), "outcomes[8]", "not a column of clinical.csv"),
        (lambda m: m.update(subgroup="cohort"), "subgroup", "not a column"),
        (lambda m: m["correlations"][1].update(y="HAQ"), "correlations[1].y", "not a clinical"),
        (lambda m: m["fcs"][0].update(timepoint="week2"), "fcs[0].timepoint", "not one of"),
        (lambda m: m["fcs"][3].update(path="missing.fcs"), "fcs[3].path", "file not found"),
        (lambda m: m.pop("clinical"), "clinical", "required key is missing"),
        (lambda m: m["expression"].update(design="~ donor + timepoint"), "expression.design",
         "'donor' is not a column"),
        (lambda m: m["statistics"].update(paired_test="sign"), "statistics.paired_test",
         "not one of"),
    ],
)
def test_manifest_errors_name_file_and_key(
    demo: tuple[DemoStudy, StudyRun, dict[str, bytes]], tmp_path: Path, change, key: str,
    message: str,
) -> None:
    path = _broken(demo[0], tmp_path, change)
    with pytest.raises(StudyError, match=message) as info:
        load_study(path)
    assert info.value.key == key
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_demo_manifest_is_complete(demo: tuple[DemoStudy, StudyRun, dict[str, bytes]]) -> None:
    study = load_study(demo[0].study)
    assert study.expression is not None and study.subgroup == "group"
    assert study.expression.gene_sets[0] == str(demo[0].gene_sets.resolve())
    assert {(c.x, c.y, c.pool_timepoints) for c in study.correlations} == {
        ("Tc17", "MMRSS", False), ("MMRSS", "HAQ_DI", True)}
    assert [s.path for s in study.fcs] == [p.resolve() for p in demo[0].fcs]


def test_manifest_accepts_a_preset_and_defaults(
    demo: tuple[DemoStudy, StudyRun, dict[str, bytes]], tmp_path: Path,
) -> None:
    def change(m: dict[str, Any]) -> None:
        m.update(strategy="study_panel")
        for key in ("patients", "statistics", "figures", "columns"):
            m.pop(key)

    study = load_study(_broken(demo[0], tmp_path, change))
    assert study.strategy == "study_panel" and "strategy" not in study.input_files()
    clinical = pd.read_csv(demo[0].clinical)
    assert study.patients == tuple(dict.fromkeys(clinical["patient"]))
    assert (study.subject, study.time, study.paired_test) == ("patient", "timepoint", "wilcoxon")
    assert study.key_populations == tuple(p.name for p in study.populations)


# --- one strategy read, one evaluation per sample and place -------------------------------------


def test_strategy_read_once_and_each_sample_evaluated_once_per_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real demo study run, counted: ``gating.load_strategy`` calls (by calling module) and
    evaluations (every evaluation builds one ``gating.Evaluator``) by sample file."""
    import collections
    import sys

    import gating

    demo = make_demo_study(tmp_path / "data", n_events=2000, n_genes=300)
    loads: list[str] = []
    evaluated: collections.Counter[str] = collections.Counter()
    load, init = gating.load_strategy, gating.Evaluator.__init__

    def counting_load(*args: Any, **kwargs: Any) -> Any:
        loads.append(sys._getframe(1).f_globals["__name__"])
        return load(*args, **kwargs)

    def counting_init(self: Any, plan: Any, sample: Any) -> None:
        evaluated[Path(sample.path).name] += 1
        init(self, plan, sample)

    monkeypatch.setattr(gating, "load_strategy", counting_load)
    monkeypatch.setattr(gating.Evaluator, "__init__", counting_init)

    study = load_study(demo.study)
    assert loads == ["engine._study._manifest"] and study.loaded_strategy is not None
    loads.clear()
    run = run_study(study, out_dir=tmp_path / "out", executor=ExecutorSpec(kind="inprocess"))
    # the study never reads its strategy again: the batch gets the loaded strategy
    assert loads == []
    drawn = {s.path.name for s in study.fcs if s.patient == study.gate_plot_patient}
    assert len(drawn) == 2 and sum(p.stem.startswith("gates_") for p in run.figures) == 2
    files = {s.path.name for s in study.fcs}
    # every file is evaluated exactly once: the drawn ones by the batch in this process, whose
    # evaluation also draws all their figures
    assert evaluated == {name: 1 for name in files}
    assert sum(evaluated.values()) == len(files)
    assert "2 watched in the driver" in run.gating.executor

    loads.clear()
    evaluated.clear()
    again = run_study(study, out_dir=tmp_path / "out", executor=ExecutorSpec(kind="inprocess"))
    assert again.gating.resumed == len(files)
    assert [m for m in loads if not m.startswith("engine._batch")] == []
    assert evaluated == {name: 1 for name in drawn}  # resumed: only the figures evaluate


def test_one_p_value_text_in_figures_tables_and_terminal(run: StudyRun) -> None:
    from engine._study._document import format_value
    from engine.cli._study import headline
    from engine.runtime import format_p

    for p in (4e-6, 0.0009, 0.0123, 0.0625, 0.5432):
        for column in ("pvalue", "padj", "P", "padj (BH)", "wilcoxon_pvalue"):
            assert format_value(p, column) == format_p(p)
    assert format_value(0.5432, "r") == "0.5432"  # other numbers: 4 significant digits
    assert format_p(float("nan")) == format_p(None) == "NA"
    tests = run.table("clinical_tests")
    lines = headline(run)
    row = tests[tests["variable"] == "MMRSS"].iloc[0]
    assert any(line.startswith("  MMRSS:") and f"P = {format_p(row['pvalue'])}," in line
               for line in lines)
    html = run.report.read_text()
    assert f"<td class=\"n\">{format_p(row['pvalue'])}</td>" in html


# --- report views (issue 16) --------------------------------------------------------------------


def test_paired_panels_show_the_pairs_and_the_n_they_state(run: StudyRun) -> None:
    from engine._study._figures import slope_grid

    freq, tests = run.table("population_frequencies"), run.table("population_tests")
    variables = list(tests["variable"])
    fig = slope_grid(freq, variables=variables, subject="patient", time="timepoint",
                     order=["pre", "post"], pvalues=dict(zip(tests["variable"], tests["pvalue"],
                                                             strict=True)),
                     value="percent", variable="variable")
    for ax, name in zip(fig.axes, variables, strict=False):
        wide = (freq[freq["variable"] == name]
                .pivot(index="patient", columns="timepoint", values="percent")
                .reindex(columns=["pre", "post"]).dropna())
        pairs = [line for line in ax.lines if line.get_gid() == "pair"]
        n = int(tests.loc[tests["variable"] == name, "n"].iloc[0])
        assert len(pairs) == len(wide) == n
        assert f"n = {n} pairs" in ax.get_title()
        (bars,) = [c for c in ax.collections if c.get_gid() == "median"]
        medians = [seg[0][1] for seg in bars.get_segments()]
        np.testing.assert_allclose(medians, wide.median().to_numpy())  # over the pairs only
        ups = int((wide["post"] > wide["pre"]).sum())
        assert f"{ups} up" in ax.get_title()


def test_report_tables_put_p_first_and_rna_has_pca_and_ma(run: StudyRun) -> None:
    html = run.report.read_text()
    stems = {p.stem for p in run.figures}
    assert {"pca", "ma"} <= stems
    assert 'alt="PCA of the biopsy samples"' in html and 'alt="MA plot"' in html
    for header in html.split("<thead>")[1:]:
        cells = header.split("</thead>")[0].split("<th")[1:]
        names = [c.split(">", 1)[1].split("</th")[0] for c in cells]
        if "P" in names:
            assert names.index("P") <= 2 and names.index("padj (BH)") == names.index("P") + 1
    assert "@media print" in html


def test_pca_is_deseq2_plotpca(run: StudyRun) -> None:
    from engine._study._figures import pca_coordinates

    rng = np.random.default_rng(7)
    x = rng.normal(size=(10, 800)) * rng.uniform(0.1, 3.0, 800)
    scores, share = pca_coordinates(x, ntop=500)
    keep = np.argsort(-x.var(axis=0, ddof=1), kind="stable")[:500]
    centred = x[:, keep] - x[:, keep].mean(axis=0)
    eigen = np.sort(np.linalg.eigvalsh(np.cov(centred.T)))[::-1][:10]
    np.testing.assert_allclose(scores.var(axis=0, ddof=1), eigen[: scores.shape[1]], rtol=1e-8,
                               atol=1e-9)
    np.testing.assert_allclose(share, eigen / np.trace(np.cov(centred.T)), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.abs(scores[:, :2]), np.abs(centred @ np.linalg.svd(
        centred, full_matrices=False)[2][:2].T), rtol=1e-8)
