"""Hostile sample, gate and population names, and hostile study manifests.

Names that would escape the output directory (``../``, absolute paths, NUL and control
characters, backslashes, Windows device names, very long names) must be made safe in every file
name the batch engine (``phenoflow gate``, membership files) and the study pipeline
(``figures/gates/<sample>/...``) write: each test runs the real pipeline on such input and
asserts that every written file lies inside the output folder and nothing appeared outside it.
Study manifests are YAML from users: Python tags, alias bombs and recursive aliases are refused
with a :class:`StudyError` naming the manifest, quickly and without building the expansion.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from engine import ExecutorSpec, StudyError, load_study, run_study
from engine.cli import main
from engine.runtime import safe_name
from gating import write_fcs

HOSTILE_NAMES = [
    "../../escaped",
    "/tmp/absolute-escape",
    "..",
    "a\x01b\x1fc\x7fd",
    "nul\x00byte",
    "tab\there\nnewline",
    "back\\slash\\..\\..\\x",
    "CON",
    "nul.txt",
    "COM1",
    "L" * 400,
    ".hidden",
    "naïve ✓ ünïcode",
    "$x^2$ mathtext",
]


def _inventory(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, dirs, files in os.walk(root) for f in files + dirs}


def _assert_all_inside(out: Path) -> list[Path]:
    """Every file and folder under ``out`` resolves inside ``out`` (no symlink tricks)."""
    base = out.resolve()
    written = []
    for d, dirs, files in os.walk(out):
        for name in files + dirs:
            p = Path(d) / name
            assert Path(os.path.realpath(p)).is_relative_to(base), p
            assert not any(ord(ch) < 32 or ch in "\\:" for ch in name), repr(name)
            assert len(name.encode()) <= 255
            stem = name.split(".", 1)[0].upper()
            assert stem not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT1"}, name
            written.append(p)
    return written


STRATEGY = """\
phenoflow-strategy: 1
transforms:
  lin: {type: linear, T: 1000, A: 0}
dimensions:
  FSC-A: {transform: lin}
  FL1-A: {transform: lin}
gates:
  - {name: "..", rectangle: {FSC-A: [0.1, 0.9], FL1-A: [0.1, 0.9]}}
  - {name: "CON", parent: "..", range: {dim: FL1-A, min: 0.3}}
  - {name: "a\\x01b\\tc", parent: "..", range: {dim: FL1-A, max: 0.3}}
  - {name: "%s", parent: "CON", range: {dim: FSC-A, min: 0.2}}
""" % ("G" * 300)


def test_gate_cli_makes_every_sample_name_safe(tmp_path):
    rng = np.random.default_rng(7)
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for k, name in enumerate(HOSTILE_NAMES):
        events = rng.uniform(0, 1000, size=(300, 2)).astype(np.float32)
        path = write_fcs(data / f"f{k}.fcs", events, ["FSC-A", "FL1-A"])
        rows.append({"path": path.name, "sample": name, "site": name})
    manifest = data / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    strategy = data / "strategy.yaml"
    strategy.write_text(STRATEGY)
    out = tmp_path / "run" / "out"
    before = _inventory(tmp_path)
    result = CliRunner().invoke(main, ["gate", "--strategy", str(strategy), "--manifest",
                                       str(manifest), "--out", str(out), "--membership",
                                       "--h5ad", "--in-process"])
    assert result.exit_code == 0, result.output
    after = _inventory(tmp_path)
    assert {p for p in after - before if not p.startswith(str(out))} == {str(out.parent)}
    written = _assert_all_inside(out)
    members = sorted((out / "membership").iterdir())
    assert len(members) == len(HOSTILE_NAMES)  # distinct names stay distinct
    pops = pd.read_parquet(out / "populations.parquet")
    read_back = pd.read_csv(manifest, dtype=str, keep_default_na=False)["sample"]
    assert set(pops["sample"]) == set(read_back)  # names are kept as data, unchanged
    assert len(pops) == len(HOSTILE_NAMES) * 4
    assert len(written) > len(HOSTILE_NAMES)
    import anndata

    table = anndata.read_h5ad(out / "populations.h5ad")
    assert table.n_obs == len(HOSTILE_NAMES)


@pytest.fixture(scope="module")
def hostile_study(tmp_path_factory):
    """A small demo study whose gate-plot patient has hostile sample and gate names."""
    from engine.demo import make_demo_study

    root = tmp_path_factory.mktemp("hostile-study")
    demo = make_demo_study(root / "data", n_events=2000, n_genes=200, n_patients=8,
                           n_biopsy_patients=6)
    manifest = yaml.safe_load(demo.study.read_text())
    names = {"P02_pre": "../../../escape\x00-pre", "P02_post": "/tmp/abs\x01post\\..\\CON"}
    for entry in manifest["fcs"]:
        entry["sample"] = names.get(entry["sample"], entry["sample"])
    manifest["figures"]["gate_plot_patient"] = "P02"
    # a gate on the plotted path gets a hostile name too (and every reference to it)
    strategy = (root / "data" / "strategy.yaml").read_text()
    hostile_gate = "NUL.. \\x07"
    strategy = strategy.replace("name: Live\n", f'name: "{hostile_gate}"\n')
    strategy = strategy.replace("parent: Live\n", f'parent: "{hostile_gate}"\n')
    (root / "data" / "strategy.yaml").write_text(strategy)
    real_gate = yaml.safe_load(f'x: "{hostile_gate}"')["x"]
    for pop in manifest["populations_of_interest"]:
        for key in ("path", "parent_path"):
            pop[key] = pop[key].replace("/Live/", f"/{real_gate}/")
    demo.study.write_text(yaml.safe_dump(manifest, sort_keys=False, allow_unicode=False))
    return root, demo.study, names


def test_study_figures_make_hostile_sample_and_gate_names_safe(hostile_study):
    root, manifest, names = hostile_study
    out = root / "out"
    before = _inventory(root.parent)
    run = run_study(manifest, out_dir=out, executor=ExecutorSpec(kind="inprocess"))
    after = _inventory(root.parent)
    assert {p for p in after - before if not p.startswith(str(out))} == set()
    _assert_all_inside(out)
    gate_dirs = sorted((out / "figures" / "gates").iterdir())
    assert len(gate_dirs) == 2  # the plotted patient's pre and post samples
    assert all(any(d.glob("*.png")) for d in gate_dirs)
    panels = [p for p in run.figures if p.name.startswith("gates_")]
    assert sorted(p.name for p in panels) == sorted(f"gates_{safe_name(n)}.png" for n in names.values())
    assert sorted(d.name for d in gate_dirs) == sorted(safe_name(n) for n in names.values())
    freq = run.table("population_frequencies")
    assert set(names.values()) <= set(freq["sample"])  # the names themselves are kept as data
    report = (out / "report.md").read_text()
    assert "escape" in report and "-pre" in report


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: !!python/object/apply:os.system ['echo pwned']\n", "python/object"),
        ("name: x\nfcs: !!python/object/new:subprocess.Popen [[touch, /tmp/pwned]]\n",
         "python/object"),
        ("lol: &a0 [" + ", ".join(["lol"] * 10) + "]\n"
         + "".join(f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 9))
         + "clinical: *a8\n", "alias bomb"),
        ("fcs: &f [*f]\n", "recursive alias"),
        ("name: " + "[" * 2_000 + "]" * 2_000 + "\n", "nested too deeply"),
    ],
    ids=["python-object", "python-popen", "billion-laughs", "recursive", "deep"],
)
def test_hostile_manifest_yaml_is_refused(text, words, tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    traced = words != "nested too deeply"  # tracemalloc slows deep recursion 40x
    if traced:
        tracemalloc.start()
    with pytest.raises(StudyError, match=words) as info:
        load_study(path)
    assert info.value.manifest == path.resolve()
    assert str(path.resolve()) in str(info.value)
    if not traced:
        return
    grown_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert grown_mib < 100, f"refusing the manifest allocated {grown_mib:.0f} MiB"
    assert not Path("/tmp/pwned").exists()
