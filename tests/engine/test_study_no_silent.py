"""No silent wrong answers in the study pipeline (issue 13).

- unknown keys at every level of the manifest are errors naming the file, the key path and the
  closest valid key; value typos (a contrast level, a test name) are found when the manifest is
  loaded, before any gating; an output folder that cannot be written too;
- integer patient ids in the biopsy sample sheet follow the one design rule and the decision is
  in ``study.json``;
- tables, the run record, the report, figures and the demo's files are written atomically: a
  write that fails half-way (a real process over its file-size limit, as on a full disk) leaves
  no partial file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from engine import ExecutorSpec, StudyError, load_study, run_study
from engine.demo import DemoStudy, make_demo_study

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStudy:
    return make_demo_study(tmp_path_factory.mktemp("demo") / "data", n_events=1000, n_genes=300)


def _manifest(study: DemoStudy, tmp_path: Path, change) -> Path:
    raw = yaml.safe_load(study.study.read_text())
    change(raw)
    for name in ("strategy.yaml", "counts.csv", "samples.csv", "clinical.csv", "gene_sets.gmt",
                 "truth.json"):
        if not (tmp_path / name).exists():
            shutil.copy(study.out_dir / name, tmp_path / name)
    for f in raw["fcs"]:
        f["path"] = str(study.out_dir / f["path"])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _set(section: str, key: str, value: Any):
    return lambda m: m[section].update({key: value})


@pytest.mark.parametrize(
    ("change", "key", "closest"),
    [
        (lambda m: m["statistics"].update(paired_tests="t"), "statistics.paired_tests", "paired_test"),
        (lambda m: m.update(subgroups=m.pop("subgroup")), "subgroups", "subgroup"),
        (lambda m: m.update(corelations=m.pop("correlations")), "corelations", "correlations"),
        (lambda m: m["expression"].update(desing="~ patient + timepoint"), "expression.desing",
         "design"),
        (lambda m: m["columns"].update(subjects="patient"), "columns.subjects", "subject"),
        (lambda m: m["fcs"][2].update(timpoint="pre"), "fcs[2].timpoint", "timepoint"),
        (lambda m: m["populations_of_interest"][1].update(parnt="CD8+"),
         "populations_of_interest[1].parnt", "parent"),
        (lambda m: m["correlations"][0].update(methods="pearson"), "correlations[0].methods",
         "method"),
        (lambda m: m["figures"].update(key_population=["Tc17"]), "figures.key_population",
         "key_populations"),
        (lambda m: m.update(timepoints={"pre": "pre", "pots": "post"}), "timepoints.pots", "post"),
        (lambda m: m.update(reviewer="someone"), "reviewer", None),
    ],
)
def test_unknown_keys_name_file_key_and_closest(demo, tmp_path, change, key, closest):
    path = _manifest(demo, tmp_path, change)
    with pytest.raises(StudyError, match="unknown key") as info:
        load_study(path)
    assert info.value.key == key
    assert str(info.value).startswith(f"{path.resolve()}: {key}: unknown key")
    if closest is not None:
        assert f"did you mean {closest!r}?" in str(info.value)
    else:
        assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (lambda m: m.update(subgroup={"column": "group"}), "subgroup", "expected a non-empty string"),
        (lambda m: m.update(statistics="ttest"), "statistics", "expected a mapping"),
        (lambda m: m.update(expression=["design"]), "expression", "expected a mapping"),
        (_set("statistics", "paired_test", "ttest"), "statistics.paired_test", "not one of"),
        (_set("statistics", "correlation", "kendall"), "statistics.correlation", "not one of"),
        (_set("expression", "contrast", ["timepoint", "week4", "pre"]), "expression.contrast",
         "contrast level 'week4' not found in 'timepoint'"),
        (_set("expression", "contrast", ["visit", "post", "pre"]), "expression.contrast",
         "'visit' is not a column of samples.csv"),
        (_set("expression", "contrast", ["timepoint", "pre", "pre"]), "expression.contrast",
         "compares 'pre' with itself"),
        (_set("expression", "numeric", ["age"]), "expression.numeric", "not design variables"),
        (_set("expression", "score", "gsva"), "expression.score", "not one of"),
        (_set("expression", "fit_type", "local"), "expression.fit_type", "not one of"),
        (lambda m: m.pop("counts"), "counts", "required when 'expression' or 'samples'"),
    ],
)
def test_value_typos_are_found_when_the_manifest_is_loaded(demo, tmp_path, change, key, message):
    path = _manifest(demo, tmp_path, change)
    with pytest.raises(StudyError, match=message) as info:
        load_study(path)
    assert info.value.key == key


def test_a_contrast_typo_stops_the_run_before_any_gating(demo, tmp_path):
    path = _manifest(demo, tmp_path, _set("expression", "contrast", ["timepoint", "Post", "pre"]))
    out = tmp_path / "out"
    with pytest.raises(StudyError, match="contrast level 'Post' not found"):
        run_study(path, out_dir=out, executor=ExecutorSpec(kind="inprocess"))
    assert not out.exists()  # nothing gated, nothing written


def test_an_unwritable_output_folder_stops_the_run_before_any_gating(demo, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StudyError, match=r"\(out\): output folder .* cannot be written"):
        run_study(demo.study, out_dir=blocker / "out", executor=ExecutorSpec(kind="inprocess"))


def _with_batch(demo: DemoStudy, tmp_path: Path) -> None:
    """samples.csv with an integer-coded ``batch`` (patients processed in pairs: 5 batches)."""
    sheet = pd.read_csv(demo.samples)
    numbers = {p: k for k, p in enumerate(dict.fromkeys(sheet["patient"]))}
    sheet["batch"] = [numbers[p] // 2 + 1 for p in sheet["patient"]]
    (tmp_path / "samples.csv").write_text(sheet.to_csv(index=False))


def _batch_design(m: dict[str, Any]) -> None:
    m["expression"]["design"] = "~ batch + timepoint"


def test_numeric_opt_out_is_checked_at_load(demo, tmp_path):
    _with_batch(demo, tmp_path)
    study = load_study(_manifest(demo, tmp_path, _batch_design))
    assert study.expression is not None and study.expression.numeric == ()
    kept = load_study(_manifest(demo, tmp_path, lambda m: (
        _batch_design(m), m["expression"].update(numeric=["batch"]))))
    assert kept.expression is not None and kept.expression.numeric == ("batch",)
    with pytest.raises(StudyError, match=r"numeric= names \['patient'\]") as info:
        load_study(_manifest(demo, tmp_path, lambda m: (
            _batch_design(m), m["expression"].update(numeric=["patient"]))))
    assert info.value.key == "expression.numeric"


def test_the_trend_fit_type_is_a_manifest_setting(demo, tmp_path):
    """``expression.fit_type: mean`` is the explicit way on where the parametric trend cannot be
    fitted (R's local fit is not implemented); it is loaded and defaults to parametric."""
    assert load_study(_manifest(demo, tmp_path, lambda m: None)).expression.fit_type == "parametric"
    chosen = load_study(_manifest(demo, tmp_path, _set("expression", "fit_type", "mean")))
    assert chosen.expression is not None and chosen.expression.fit_type == "mean"


# --- atomic outputs --------------------------------------------------------------------------

_LIMITED = """
import resource, signal, sys
sys.path.insert(0, {repo!r})
{setup}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
try:
{body}
except OSError as exc:
    print("FAILED", type(exc).__name__, exc.errno)
    sys.exit(3)
print("WROTE")
"""


def _limited(setup: str, body: str, limit: int, cwd: Path) -> str:
    """Run ``body`` in a real process whose files cannot grow past ``limit`` bytes."""
    script = _LIMITED.format(repo=str(REPO), setup=textwrap.dedent(setup),
                             body=textwrap.indent(textwrap.dedent(body), "    "), limit=limit)
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    return done.stdout + done.stderr


def _partial(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".partial" in p.name or p.suffix == ".probe")


def test_study_tables_report_and_figures_are_atomic(tmp_path):
    out = tmp_path / "out"
    setup = f"""
        import numpy as np, pandas as pd
        from pathlib import Path
        from engine._study._run import _write_table
        from engine._study._document import Section, Table, write_report
        from engine._study._figures import save_figure
        from engine.runtime import new_figure
        out = Path({str(out)!r})
        frame = pd.DataFrame(np.random.default_rng(0).random((20000, 5)), columns=list("abcde"))
    """
    text = _limited(setup, "_write_table(frame, out / 'tables', 'big')", 100_000, tmp_path)
    assert "FAILED OSError 27" in text, text
    assert list((out / "tables").iterdir()) == [] and _partial(out) == []
    text = _limited(
        setup,
        "write_report([Section('s', (Table('t', frame),))], title='r', out_dir=out)",
        100_000, tmp_path)
    assert "FAILED OSError" in text, text
    assert not (out / "report.html").exists() and not (out / "report.md").exists()
    assert _partial(out) == []
    text = _limited(setup, """
        fig = new_figure(figsize=(8, 8))
        fig.add_subplot().scatter(*np.random.default_rng(1).random((2, 5000)))
        save_figure(fig, out / 'figures' / 'scatter')
    """, 20_000, tmp_path)
    assert "FAILED OSError" in text, text
    assert list((out / "figures").iterdir()) == [] and _partial(out) == []
    # with room enough, the same calls write complete files
    text = _limited(setup, "_write_table(frame.head(10), out / 'tables', 'small')", 100_000, tmp_path)
    assert "WROTE" in text, text
    assert len(pd.read_parquet(out / "tables" / "small.parquet")) == 10


def test_demo_files_are_atomic(tmp_path):
    out = tmp_path / "demo"
    # FCS files of 1000 events fit in 150 kB, the 5000-gene count table does not
    text = _limited("from engine.demo import make_demo_study",
                    f"make_demo_study({str(out)!r}, n_events=1000, n_genes=5000)", 150_000, tmp_path)
    assert "FAILED OSError" in text, text
    assert (out / "fcs").is_dir() and any((out / "fcs").iterdir())
    assert not (out / "counts.csv").exists() and _partial(out) == []


def test_study_record_names_the_design_decisions(demo, tmp_path):
    _with_batch(demo, tmp_path)
    path = _manifest(demo, tmp_path, _batch_design)
    run = run_study(path, out_dir=tmp_path / "out", executor=ExecutorSpec(kind="inprocess"))
    expression = json.loads(run.record.read_text())["parameters"]["expression"]
    assert expression["numeric"] == []
    assert expression["fit_type"] == "parametric"
    assert expression["de"]["dispersion_trend"]["requested"] == "parametric"
    assert expression["design_variables"] == {"batch": "factor (integer codes)",
                                              "timepoint": "factor"}
    assert expression["de"]["integer_factors"] == ["batch"]
    assert expression["de"]["levels"]["batch"] == ["1", "2", "3", "4", "5"]
    assert _partial(tmp_path / "out") == []


def test_a_second_study_run_into_the_same_folder_is_refused_while_the_first_holds_it(tmp_path):
    from engine import ExecutorSpec, run_study
    from engine.demo import make_demo_study
    from engine.runtime import OutputLockedError, output_lock

    demo = make_demo_study(tmp_path / "data", n_events=1000, n_genes=120)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".report.html.{2**22 + 12345}.partial"  # a killed run's leftover (dead pid)
    stale.write_text("half")
    with output_lock(out) as holder, pytest.raises(OutputLockedError, match=str(holder.pid)):
        run_study(demo.study, out_dir=out, executor=ExecutorSpec(kind="inprocess"))
    assert stale.exists() and not (out / "study.json").exists()  # refused before any work
    run = run_study(demo.study, out_dir=out, executor=ExecutorSpec(kind="inprocess"))
    assert run.report.is_file() and not stale.exists()


def test_a_clinical_table_naming_a_column_twice_is_refused(demo, tmp_path):
    """pandas would read the second ``MMRSS``-like column as ``<name>.1`` and the study would
    compare the first one without a word."""
    text = (demo.out_dir / "clinical.csv").read_text().splitlines()
    header = text[0].split(",")
    header[-1] = header[-2]  # the last column now repeats the one before it
    (tmp_path / "clinical.csv").write_text("\n".join([",".join(header), *text[1:]]) + "\n")
    with pytest.raises(StudyError, match=f"names the column '{header[-2]}' 2 times") as info:
        load_study(_manifest(demo, tmp_path, lambda m: None))
    assert info.value.key == "clinical"


def test_a_dispersion_trend_that_cannot_be_fitted_stops_the_study_in_one_line(demo, tmp_path):
    """Counts whose dispersion grows with the mean leave no parametric trend ``a0 + a1/mean``
    (R would switch to its local fit, not implemented): ``phenoflow study`` exits 2 with one
    line naming ``expression.fit_type: mean``; with that key the study runs and records it."""
    import numpy as np
    from click.testing import CliRunner

    from engine.cli import main

    counts = pd.read_csv(demo.out_dir / "counts.csv", index_col=0)
    rng = np.random.default_rng(3)
    mu = rng.gamma(2.0, 50.0, counts.shape[0])[:, None] * np.ones(counts.shape[1])
    size = 1.0 / (0.002 * mu)  # dispersion 0.002 x mean: rising, not falling, with the mean
    flat = pd.DataFrame(rng.negative_binomial(size, size / (size + mu)), index=counts.index,
                        columns=counts.columns)
    flat.to_csv(tmp_path / "counts.csv")
    refused = CliRunner().invoke(main, ["study", str(_manifest(demo, tmp_path, lambda m: None)),
                                        "--out", str(tmp_path / "out"), "--in-process"])
    assert refused.exit_code == 2, refused.output
    assert "dispersion trend cannot be fitted" in refused.output
    assert "expression: {fit_type: mean}" in refused.output.splitlines()[-1]
    assert "Traceback" not in refused.output
    assert not (tmp_path / "out" / "study.json").exists()
    path = _manifest(demo, tmp_path, _set("expression", "fit_type", "mean"))
    run = run_study(path, out_dir=tmp_path / "out2", executor=ExecutorSpec(kind="inprocess"))
    record = json.loads(run.record.read_text())["parameters"]["expression"]
    assert record["fit_type"] == "mean" and record["de"]["dispersion_trend"]["fit_type"] == "mean"
