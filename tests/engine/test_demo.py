"""Tests for the deterministic demo-study generator (``engine.demo``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.path import Path as PolygonPath
from scipy import stats

from engine import load_study
from engine.demo import DemoStudy, make_demo_study
from engine.demo._panel import logicle_inverse
from expression import read_gmt
from gating import read_fcs

N_EVENTS = 20_000
N_GENES = 2000
SMALL = {"n_events": N_EVENTS, "n_genes": N_GENES}
PRESET = Path(__file__).resolve().parents[2] / "gating" / "presets" / "study_panel.yaml"
SCATTER_AND_TIME = ["FSC-A", "FSC-H", "SSC-A", "Time"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> DemoStudy:
    return make_demo_study(tmp_path_factory.mktemp("demo_a"), seed=7, **SMALL)


@pytest.fixture(scope="module")
def truth(study: DemoStudy) -> dict[str, Any]:
    return json.loads(study.truth.read_text())


@pytest.fixture(scope="module")
def clinical(study: DemoStudy) -> pd.DataFrame:
    return pd.read_csv(study.clinical)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _wide(clinical: pd.DataFrame, column: str) -> pd.DataFrame:
    return clinical.pivot(index="patient", columns="timepoint", values=column)


# --- files and determinism ---------------------------------------------------------------------


def test_files_written_and_listed(study: DemoStudy, truth: dict[str, Any]) -> None:
    assert all(p.is_file() for p in study.files)
    missing = set(truth["patients_without_baseline_flow"])
    assert len(missing) == 3
    names = {p.name for p in study.fcs}
    expected = {f"P{i:02d}_{tp}.fcs" for i in range(1, 16) for tp in ("pre", "post")}
    assert names == expected - {f"{p}_pre.fcs" for p in missing}
    listing = yaml.safe_load(study.study.read_text())
    assert [study.out_dir / f["path"] for f in listing["fcs"]] == list(study.fcs)
    for key in ("strategy", "counts", "samples", "clinical", "truth"):
        assert study.out_dir / listing[key] == getattr(study, key)
    assert {"Tc17"} <= {p["name"] for p in listing["populations_of_interest"]}
    tc17 = next(p for p in listing["populations_of_interest"] if p["name"] == "Tc17")
    assert tc17["parent"] == "CD8+" and tc17["path"].endswith("/CD8+/Tc17")
    assert set(listing["outcomes"]) <= set(pd.read_csv(study.clinical).columns)
    assert study.strategy.read_bytes() == PRESET.read_bytes()
    assert listing["gene_sets"][0] == study.gene_sets.name
    assert read_gmt(study.gene_sets) == truth["expression"]["gene_sets"]


def test_listing_is_a_valid_study_manifest(study: DemoStudy, truth: dict[str, Any]) -> None:
    manifest = load_study(study.study)
    assert manifest.timepoints == ("pre", "post")
    assert [s.path for s in manifest.fcs] == [p.resolve() for p in study.fcs]
    assert {(s.patient, s.timepoint) for s in manifest.fcs} == {
        (p, tp) for p, v in truth["patients"].items() for tp in ("pre", "post")
        if tp == "post" or v["baseline_flow"]
    }
    assert manifest.subgroup == "group"
    assert set(manifest.outcomes) == set(truth["clinical"]["realised"])
    gate_patient = manifest.gate_plot_patient
    assert gate_patient is not None and truth["patients"][gate_patient]["baseline_flow"]
    assert manifest.expression is not None
    assert manifest.expression.design == "~ patient + timepoint"


def test_same_seed_gives_identical_files(study: DemoStudy, tmp_path: Path) -> None:
    again = make_demo_study(tmp_path / "again", seed=7, **SMALL)
    assert _tree(again.out_dir) == _tree(study.out_dir)


def test_different_seed_gives_different_files(study: DemoStudy, tmp_path: Path) -> None:
    other = make_demo_study(tmp_path / "other", seed=8, **SMALL)
    a, b = _tree(study.out_dir), _tree(other.out_dir)
    assert a["strategy.yaml"] == b["strategy.yaml"]
    for name in ("counts.csv", "clinical.csv", "truth.json", "fcs/P15_post.fcs"):
        assert a[name] != b[name]


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_biopsy_patients"):
        make_demo_study(tmp_path, n_patients=5, n_biopsy_patients=6, **SMALL)
    with pytest.raises(ValueError, match="missing_baseline_flow"):
        make_demo_study(
            tmp_path, n_patients=5, n_biopsy_patients=3, missing_baseline_flow=3, **SMALL
        )
    with pytest.raises(ValueError, match="n_genes"):
        make_demo_study(tmp_path, n_events=2000, n_genes=10)


# --- flow cytometry ----------------------------------------------------------------------------


def test_fcs_files_read_back_with_panel(study: DemoStudy, truth: dict[str, Any]) -> None:
    panel = truth["flow"]["panel"]
    for path in study.fcs:
        fcs = read_fcs(path)
        assert fcs.events.shape == (N_EVENTS, 14)
        table = fcs.channels.set_index("name")
        assert set(table.index) == {p["channel"] for p in panel} | set(SCATTER_AND_TIME)
        for p in panel:
            assert table.loc[p["channel"], "marker"] == p["marker"]
        assert fcs.spill is not None
        assert list(fcs.spill.columns) == [p["channel"] for p in panel]
        planted = pd.DataFrame(truth["flow"]["spillover"]["rows_fluorochromes_columns_detectors"])
        np.testing.assert_allclose(
            fcs.spill.to_numpy(), planted.T.loc[fcs.spill.index, fcs.spill.columns].to_numpy()
        )
        assert float(fcs.metadata["$TIMESTEP"]) == pytest.approx(0.01)
        time = fcs.events[:, list(table.index).index("Time")]
        assert np.all(np.diff(time) >= 0) and time[-1] > 0


def test_planted_tc17_decrease_in_truth(truth: dict[str, Any]) -> None:
    pats = truth["patients"]
    both = [p for p, v in pats.items() if v["baseline_flow"]]
    pre = np.array([pats[p]["tc17_pct_of_cd8"]["pre"] for p in both])
    post = np.array([pats[p]["tc17_pct_of_cd8"]["post"] for p in both])
    assert len(both) == 12 and np.all(pre > 0) and np.all(post > 0)
    assert post.mean() < pre.mean()
    assert stats.wilcoxon(pre, post).pvalue < 0.05
    files = truth["flow"]["files"]
    for p in both:
        for tp in ("pre", "post"):
            f = files[f"{p}_{tp}"]
            assert f["tc17_pct_of_cd8_planted"] == pats[p]["tc17_pct_of_cd8"][tp]
            assert f["n_events"] == N_EVENTS == sum(f["class_counts"].values())


def _gate(strategy: dict[str, Any], name: str, parent: str | None = None) -> dict[str, Any]:
    return next(g for g in strategy["gates"] if g["name"] == name and g.get("parent") == parent)


def _tc17_by_numpy(
    path: Path, strategy: dict[str, Any], *, compensate: bool = True
) -> tuple[float, float]:
    """Crude numpy gating of one file: (Tc17 % of CD8+, CXCR3+ % of CD8+)."""
    import flowkit

    fcs = read_fcs(path)
    names = list(fcs.channels["name"])
    markers = dict(zip(fcs.channels["marker"], names, strict=True))
    spill = fcs.spill
    assert spill is not None
    fl = fcs.events[:, [names.index(c) for c in spill.columns]].astype(np.float64)
    if compensate:
        fl = fl @ np.linalg.inv(spill.to_numpy())
    t = strategy["transforms"]["fluor"]
    logicle = flowkit.transforms.LogicleTransform(
        param_t=t["T"], param_w=t["W"], param_m=t["M"], param_a=t["A"]
    )
    lg = logicle.apply(fl)
    col = {
        m: lg[:, list(spill.columns).index(markers[m])]
        for m in ("LiveDead", "CD3", "CD4", "CD8", "CXCR3", "CCR4", "CCR6")
    }
    scale = strategy["transforms"]["scatter"]["T"]
    sc = {c: fcs.events[:, names.index(c)] / scale for c in ("FSC-A", "FSC-H", "SSC-A")}

    def polygon(gate: dict[str, Any]) -> np.ndarray:
        x, y = gate["polygon"]["dims"]
        return PolygonPath(gate["polygon"]["vertices"]).contains_points(np.c_[sc[x], sc[y]])

    mask = polygon(_gate(strategy, "Lymphocytes"))
    mask &= polygon(_gate(strategy, "Singlets", "Lymphocytes"))
    mask &= col["LiveDead"] < _gate(strategy, "Live", "Singlets")["range"]["max"]
    mask &= col["CD3"] >= _gate(strategy, "CD3+", "Live")["range"]["min"]
    rect = _gate(strategy, "CD8+", "CD3+")["rectangle"]
    cd8 = mask & (col["CD8"] >= rect["CD8"][0]) & (col["CD4"] < rect["CD4"][1])
    pos = {
        m: col[m] >= _gate(strategy, f"{m}+", "CD8+")["range"]["min"]
        for m in ("CXCR3", "CCR4", "CCR6")
    }
    assert _gate(strategy, "Tc17", "CD8+")["boolean"] == "CCR6+ and CXCR3+ and not CCR4+"
    tc17 = cd8 & pos["CCR6"] & pos["CXCR3"] & ~pos["CCR4"]
    return 100.0 * tc17.sum() / cd8.sum(), 100.0 * (cd8 & pos["CXCR3"]).sum() / cd8.sum()


def test_numpy_gating_recovers_planted_tc17(study: DemoStudy, truth: dict[str, Any]) -> None:
    """Gating with the preset's thresholds recovers each file's Tc17 % of CD8+.

    Tolerances: within 0.3 percentage points of the Tc17 % among the CD8+ T cells actually
    generated (truth ``tc17_pct_of_cd8_generated``; only gate misclassification differs), and
    within 4 binomial standard errors (+0.2 points) of the planted probability.
    """
    strategy = yaml.safe_load(study.strategy.read_text())
    files = truth["flow"]["files"]
    for path in study.fcs:
        f = files[path.stem]
        gated, _ = _tc17_by_numpy(path, strategy)
        assert gated == pytest.approx(f["tc17_pct_of_cd8_generated"], abs=0.3)
        p = f["tc17_pct_of_cd8_planted"] / 100.0
        n_cd8 = f["lymphocyte_counts"]["CD8 T"]
        se = 100.0 * math.sqrt(p * (1 - p) / n_cd8)
        assert gated == pytest.approx(100.0 * p, abs=4 * se + 0.2)


def test_compensation_is_needed(study: DemoStudy, truth: dict[str, Any]) -> None:
    strategy = yaml.safe_load(study.strategy.read_text())
    path = study.fcs[0]
    planted = truth["flow"]["files"][path.stem]["cd8_subset_planted"]
    cxcr3 = 100.0 * sum(
        v for k, v in planted.items() if k in ("Tc1", "CXCR3+CCR4+", "Tc17", "CR-triple")
    )
    _, compensated = _tc17_by_numpy(path, strategy)
    _, raw = _tc17_by_numpy(path, strategy, compensate=False)
    assert compensated == pytest.approx(cxcr3, abs=3.0)
    assert abs(raw - cxcr3) > 20.0


def test_logicle_inverse_matches_flowkit() -> None:
    import flowkit

    y = np.linspace(-0.05, 1.0, 200)
    t = flowkit.transforms.LogicleTransform(param_t=262144, param_w=0.5, param_m=4.5, param_a=0)
    np.testing.assert_allclose(t.apply(logicle_inverse(y)[:, None])[:, 0], y, atol=1e-9)


# --- clinical ----------------------------------------------------------------------------------


def test_clinical_table_matches_truth(clinical: pd.DataFrame, truth: dict[str, Any]) -> None:
    assert len(clinical) == 30
    assert (clinical.groupby("timepoint").size() == 15).all()
    groups = clinical.drop_duplicates("patient")["group"].value_counts()
    assert groups.to_dict() == {"maintenance": 12, "treatment-naive": 3}
    mmrss = _wide(clinical, "MMRSS")
    for p, v in truth["patients"].items():
        assert mmrss.loc[p, "pre"] == v["MMRSS"]["pre"]
        assert mmrss.loc[p, "post"] == v["MMRSS"]["post"]
    for name, by_tp in truth["clinical"]["realised"].items():
        for tp, summary in by_tp.items():
            values = clinical.loc[clinical["timepoint"] == tp, name]
            assert values.mean() == pytest.approx(summary["mean"])
            assert values.std() == pytest.approx(summary["sd"])
    assert clinical.filter(like="VAS_").stack().between(0, 10).all()
    assert clinical["HAQ_DI"].between(0, 3).all()
    assert clinical["BSA_percent"].between(0, 100).all()


def test_clinical_decreases(clinical: pd.DataFrame) -> None:
    for name, alpha in (("MMRSS", 0.01), ("VAS_flexibility", 0.05), ("VAS_softness", 0.05)):
        wide = _wide(clinical, name)
        assert wide["post"].mean() < wide["pre"].mean()
        assert stats.wilcoxon(wide["pre"], wide["post"], method="approx").pvalue < alpha


def test_clinical_spread_option(study: DemoStudy, truth: dict[str, Any], tmp_path: Path) -> None:
    """The paper's ± is read as an SEM by default (SD = ± x sqrt(15)) and as an SD on request."""
    sd_run = make_demo_study(tmp_path, seed=7, n_events=2000, n_genes=100, clinical_spread="sd")
    sd_truth = json.loads(sd_run.truth.read_text())
    for t, factor in ((truth, math.sqrt(15)), (sd_truth, 1.0)):
        pm = t["clinical"]["targets_pre_mean_pm_post_mean_pm"]["MMRSS"][1]
        realised = t["clinical"]["realised"]["MMRSS"]["pre"]["sd"]
        assert 0.5 < realised / (pm * factor) < 1.5
    assert sd_truth["parameters"]["clinical_spread"] == "sd"


def test_baseline_correlation_matches_truth(clinical: pd.DataFrame, truth: dict[str, Any]) -> None:
    corr = truth["correlations"]["tc17_pre_vs_mmrss_pre"]
    with_flow = sorted(p for p, v in truth["patients"].items() if v["baseline_flow"])
    tc17 = np.array([truth["patients"][p]["tc17_pct_of_cd8"]["pre"] for p in with_flow])
    mmrss = _wide(clinical, "MMRSS").loc[with_flow, "pre"].to_numpy(float)
    assert corr["n"] == len(with_flow) == 12
    assert np.corrcoef(tc17, mmrss)[0, 1] == pytest.approx(corr["planted"]["pearson"])
    assert stats.spearmanr(tc17, mmrss).statistic == pytest.approx(corr["planted"]["spearman"])
    assert abs(corr["planted"]["pearson"] - corr["target"]) <= 0.1
    haq = truth["correlations"]["mmrss_vs_haq_di_pooled"]
    r = np.corrcoef(clinical["MMRSS"], clinical["HAQ_DI"])[0, 1]
    assert r == pytest.approx(haq["pearson"]) and abs(r - haq["target"]) <= 0.1


# --- counts ------------------------------------------------------------------------------------


def test_counts_shape_and_sample_sheet(study: DemoStudy, truth: dict[str, Any]) -> None:
    counts = pd.read_csv(study.counts, index_col="gene")
    samples = pd.read_csv(study.samples)
    assert counts.shape == (N_GENES, 20)
    assert list(counts.columns) == list(samples["sample"])
    assert all(pd.api.types.is_integer_dtype(t) for t in counts.dtypes)
    assert (counts.to_numpy() >= 0).all()
    assert counts.index.is_unique
    assert sorted(set(samples["patient"])) == truth["biopsy_patients"]
    assert (
        samples.groupby("patient")["timepoint"].apply(lambda s: sorted(s) == ["post", "pre"]).all()
    )
    sets = truth["expression"]["gene_sets"]
    planted = truth["expression"]["log2_fold_change_post_vs_pre"]
    assert set(planted) == set(sets["interferon"]) | set(sets["tgf_beta"])
    assert set(planted) <= set(counts.index)
    assert all(v < 0 for v in planted.values())


def test_gene_sets_go_down_after_normalisation(study: DemoStudy, truth: dict[str, Any]) -> None:
    counts = pd.read_csv(study.counts, index_col="gene")
    samples = pd.read_csv(study.samples)
    x = counts.to_numpy(float)
    expressed = (x > 0).all(axis=1)
    log_geo = np.log(x[expressed]).mean(axis=1)
    size = np.exp(np.median(np.log(x[expressed]) - log_geo[:, None], axis=0))  # median of ratios
    norm = pd.DataFrame(np.log2(x / size + 1.0), index=counts.index, columns=counts.columns)
    pre = samples.loc[samples["timepoint"] == "pre"].set_index("patient")["sample"]
    post = samples.loc[samples["timepoint"] == "post"].set_index("patient")["sample"]
    lfc = (norm[post.loc[pre.index].to_numpy()].to_numpy() - norm[pre.to_numpy()].to_numpy()).mean(
        axis=1
    )
    lfc = pd.Series(lfc, index=counts.index)
    sets = truth["expression"]["gene_sets"]
    for genes in (sets["interferon"], sets["tgf_beta"]):
        assert lfc[genes].mean() < -0.4
        assert (lfc[genes] < 0).mean() > 0.8
    others = lfc.drop(sets["interferon"] + sets["tgf_beta"])
    assert abs(others.mean()) < 0.1
    planted = pd.Series(truth["expression"]["log2_fold_change_post_vs_pre"])
    assert lfc[planted.index].corr(planted) > 0
