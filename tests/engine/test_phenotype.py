"""``phenoflow phenotype`` (issue 16): Leiden clusters of one gated population vs its children."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from engine._phenotype import best_union, phenotype, score_clusters
from engine.cli import main
from engine.demo import make_demo_study

CD3 = "/Lymphocytes/Singlets/Live/CD3+"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    study = make_demo_study(tmp_path_factory.mktemp("pheno") / "study", n_events=2000, n_genes=100)
    return sorted(study.fcs)[:6]


def test_cli_recovers_planted_cd4_cd8_split(files, tmp_path):
    out = tmp_path / "out"
    args = ["phenotype", "--strategy", "study_panel", "--population", CD3, "--out", str(out),
            "--per-file", "600", "--seed", "3"]
    for path in files:
        args += ["--fcs", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "agreement.csv", keep_default_na=False).set_index("population")
    assert set(table.index) == {f"{CD3}/CD4+", f"{CD3}/CD8+"}
    for name in ("CD4+", "CD8+"):
        row = table.loc[f"{CD3}/{name}"]
        assert row["f1"] > 0.9, (name, row.to_dict())
        assert row["precision"] > 0.9 and row["recall"] > 0.9
        assert row["f1"] >= row["f1_cluster"]
    events = pd.read_parquet(out / "clusters.parquet")
    assert list(events.columns[:3]) == ["file", "event", "cluster"]
    assert {f"{CD3}/CD4+", f"{CD3}/CD8+"} <= set(events.columns)
    assert events.groupby("file").size().max() <= 600 and events["file"].nunique() == 6
    assert not events.duplicated(["file", "event"]).any()
    meta = json.loads((out / "phenotype.json").read_text())
    assert meta["seed"] == 3 and meta["per_file"] == 600 and meta["population"] == CD3
    assert {"scanpy", "igraph", "phenoflow"} <= set(meta["versions"])
    assert (out / "agreement.png").stat().st_size > 10_000
    assert not [p for p in out.iterdir() if p.name.startswith(".") and "tmp" in p.name]


def test_same_seed_same_clusters(files):
    first = phenotype("study_panel", files, population="CD3+", per_file=400, seed=11)
    again = phenotype("study_panel", list(reversed(files)), population="CD3+", per_file=400,
                      seed=11)
    pd.testing.assert_frame_equal(first.events, again.events)
    pd.testing.assert_frame_equal(first.agreement, again.agreement)
    other = phenotype("study_panel", files, population="CD3+", per_file=400, seed=12)
    assert not first.events[["file", "event"]].equals(other.events[["file", "event"]])
    assert first.population == CD3 and first.n_clusters >= 2


@pytest.mark.parametrize("population", ["/Lymphocytes/Nope", "CXCR3+", f"{CD3}/CD4+/Th1"])
def test_bad_population_is_one_line_exit_2(files, tmp_path, population):
    result = CliRunner().invoke(main, ["phenotype", "--strategy", "study_panel", "--fcs",
                                       str(files[0]), "--population", population,
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --population"), result.output
    assert not (tmp_path / "o").exists()


def test_best_union_is_optimal():
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = rng.integers(1, 30, size=6)
        tp = np.minimum(sizes, rng.integers(0, 30, size=6))
        n_pop = int(tp.sum() + rng.integers(0, 10))
        _, f1 = best_union(tp, sizes, n_pop)
        brute = max(
            2 * tp[m].sum() / (n_pop + sizes[m].sum())
            for k in range(1, 64) for m in [np.array([(k >> i) & 1 for i in range(6)], bool)]
        ) if n_pop else 0.0
        assert f1 == pytest.approx(brute)


def test_score_clusters_single_and_union():
    flags = pd.DataFrame({"A": [True, True, True, False], "B": [False, False, False, True]})
    table = score_clusters(np.array([0, 0, 1, 2]), flags).set_index("population")
    assert table.loc["A", "f1"] == pytest.approx(1.0) and table.loc["A", "clusters"] in ("0;1", "1;0")
    assert table.loc["A", "f1_cluster"] == pytest.approx(0.8) and table.loc["A", "cluster"] == "0"
    assert table.loc["B", "f1"] == pytest.approx(1.0) and table.loc["B", "clusters"] == "2"
