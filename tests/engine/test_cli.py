"""The command line, run in-process through click's runner on real files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from engine.cli import main
from gating import (
    Dimension,
    RectangleGate,
    Strategy,
    apply_plan,
    compile_plan,
    read_fcs,
    write_fcs,
    write_gatingml,
)


def test_info_reports_good_and_bad_files(tmp_path):
    good = write_fcs(tmp_path / "good.fcs", np.ones((7, 2)), ["FSC-A", "FITC-A"])
    bad = tmp_path / "bad.fcs"
    bad.write_bytes(good.read_bytes()[:300])  # truncated inside DATA
    result = CliRunner().invoke(main, ["info", str(good), str(bad)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["file", "version", "events", "channels"]
    assert lines[1].split()[:4] == ["good.fcs", "FCS3.1", "7", "2"]
    assert "bad.fcs" in lines[2] and "FCSTruncatedError" in lines[2]


def test_info_all_good_exits_zero(tmp_path):
    good = write_fcs(tmp_path / "g.fcs", np.ones((3, 1)), ["A"])
    assert CliRunner().invoke(main, ["info", str(good)]).exit_code == 0


def test_demo_runs_the_study_and_prints_the_report(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--events", "3000", "--genes", "500"])
    assert result.exit_code == 0, result.output
    fcs = sorted((out / "study" / "fcs").glob("*.fcs"))
    assert len(fcs) == 27  # 15 patients x 2, minus 3 without baseline flow
    lines = result.output.splitlines()
    header = next(line.split() for line in lines if line.startswith("file "))
    assert header[-1] == "Tc17%CD8"
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split()[:1] and line.split()[0].endswith(".fcs")}
    assert sorted(rows) == [p.name for p in fcs]
    assert all(row[:3] == ["FCS3.1", "3000", "14"] for row in rows.values())
    # the printed Tc17 % of CD8+ is the gating result of the study run
    pops = pd.read_parquet(out / "gating" / "populations.parquet")
    tc17 = pops[pops["population"].str.endswith("/CD8+/Tc17")].set_index("sample")["percent_of_parent"]
    for name, row in rows.items():
        assert float(row[-1]) == pytest.approx(tc17[name.removesuffix(".fcs")], abs=0.006)
    tests = pd.read_csv(out / "tables" / "clinical_tests.csv").set_index("variable")
    mmrss = next(line for line in lines if line.strip().startswith("MMRSS:"))
    assert f"n = {tests.loc['MMRSS', 'n']}" in mmrss
    assert (out / "report.html").is_file() and (out / "study.json").is_file()
    assert result.output.rstrip().endswith(f"report: {(out / 'report.html').resolve()}")
    # `phenoflow study` on the demo's manifest into the same folder reuses every gated file
    tables = {p.name: p.read_bytes() for p in (out / "tables").iterdir()}
    again = CliRunner().invoke(main, ["study", str(out / "study" / "study.yaml"), "--out", str(out),
                                      "--in-process"])
    assert again.exit_code == 0, again.output
    assert "gated 27 of 27 FCS files (27 from an earlier run)" in again.output
    assert {p.name: p.read_bytes() for p in (out / "tables").iterdir()} == tables


def test_study_command_reports_manifest_errors(tmp_path):
    bad = tmp_path / "study.yaml"
    bad.write_text("name: x\ntimepoints: [pre, post]\n")
    result = CliRunner().invoke(main, ["study", str(bad), "--out", str(tmp_path / "out"), "--in-process"])
    assert result.exit_code == 2  # a usage mistake (issue 13), was 1
    assert f"{bad.resolve()}: clinical: required key is missing" in result.output
    both = CliRunner().invoke(main, ["study", str(bad), "--out", str(tmp_path / "o"), "--in-process",
                                     "--scheduler", "tcp://127.0.0.1:1"])
    assert both.exit_code == 2 and "choose one executor" in both.output


def test_demo_data_and_version(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["demo-data", str(tmp_path / "d"), "--events", "1000", "--genes", "300"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "truth.json").is_file()
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0 and "phenoflow" in version.output


def test_bad_arguments_are_reported(tmp_path):
    result = CliRunner().invoke(main, ["demo-data"])
    assert result.exit_code == 2 and "Missing argument" in result.output


def test_gate_writes_tidy_counts_membership_and_errors(tmp_path):
    rng = np.random.default_rng(4)
    files = []
    for name in ("a b", "c"):
        files.append(write_fcs(tmp_path / f"{name}.fcs", rng.uniform(0, 10, (500, 2)), ["X", "Y"]))
    broken = tmp_path / "broken.fcs"
    broken.write_bytes(files[0].read_bytes()[:400])
    strategy = Strategy(
        gates=(RectangleGate("Low", (Dimension("X"),), ((None, 5.0),)),
               RectangleGate("LowY", (Dimension("Y"),), ((None, 5.0),), parent="Low")),
    )
    xml = tmp_path / "s.xml"
    write_gatingml(strategy, xml)
    out = tmp_path / "out"
    args = ["gate", "--strategy", str(xml), "--out", str(out), "--membership", "--in-process"]
    for f in (*files, broken):
        args += ["--fcs", str(f)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "gated 2 of 3 files" in result.output
    pops = pd.read_parquet(out / "populations.parquet")
    for f in files:
        sample = read_fcs(f)
        expected = apply_plan(compile_plan(strategy, sample), sample).counts
        got = pops[pops["sample"] == f.stem].reset_index(drop=True)
        pd.testing.assert_frame_equal(got[list(expected.columns)], expected, check_dtype=False)
        assert set(got["file"]) == {str(f)} and set(got["dataset"]) == {0}
    errors = pd.read_parquet(out / "errors.parquet")
    assert errors["path"].tolist() == [str(broken)]
    assert errors["error_type"].tolist() == ["FCSTruncatedError"]
    written = sorted(p.name for p in (out / "membership").iterdir())
    assert len(written) == 2 and "c.parquet" in written and all("/" not in n and " " not in n for n in written)
    member = pd.read_parquet(out / "membership" / "c.parquet")
    assert list(member.columns) == ["Low", "LowY"] and len(member) == 500


def test_info_and_the_batch_expand_a_folder_alike(tmp_path):
    from pathlib import Path

    from engine import resolve_inputs

    folder = tmp_path / "fcs"
    (folder / "sub").mkdir(parents=True)
    write_fcs(folder / "a.fcs", np.ones((3, 1)), ["A"])
    write_fcs(folder / "sub" / "b.FCS", np.ones((4, 1)), ["A"])
    (folder / "._a.fcs").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")  # AppleDouble
    (folder / "notes.txt").write_text("not FCS\n")
    result = CliRunner().invoke(main, ["info", str(folder)])
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines()[1:]]
    batch = [Path(i.path).name for i in resolve_inputs([folder])]
    assert listed == batch == ["a.fcs", "b.FCS"]
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = CliRunner().invoke(main, ["info", str(empty)])
    assert nothing.exit_code == 2 and "no FCS files given" in nothing.output


def test_one_progress_display_quiet_loops_and_batch_lines():
    import io
    import json

    from engine import ErrorRecord, TaskOutcome
    from engine.cli._progress import Progress, track

    stream = io.StringIO()
    assert list(track([1, 2, 3], label="reading", stream=stream)) == [1, 2, 3]
    assert stream.getvalue() == ""  # off a terminal a short loop stays silent
    error = ErrorRecord(path="b.fcs", sample="b", stat=(0, 0), error_type="FCSTruncatedError",
                        message="file ends after 0 bytes")
    with Progress(2, label="gating", json_lines=True, every=0.0, stream=stream) as progress:
        progress.update(TaskOutcome(key="k1", path="a.fcs", sample="a", n_events=100, seconds=0.1))
        progress.update(TaskOutcome(key="k2", path="b.fcs", sample="b", error=error))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["done"], r["total"], r["failed"]) for r in lines] == [(1, 2, 0), (2, 2, 1)]
    assert lines[-1]["events_per_s"] > 0


def _paired_counts(tmp_path):
    rng = np.random.default_rng(4)
    n_patients, n_genes = 6, 200
    patient = np.repeat(np.arange(1, n_patients + 1), 2)  # integer codes 1..6
    timepoint = np.tile(["pre", "post"], n_patients)
    base = rng.gamma(2.0, 50.0, n_genes)
    effect = rng.normal(0, 0.8, n_patients)
    mu = base[None, :] * np.exp(effect[patient - 1])[:, None]
    mu[timepoint == "post", :20] *= 3.0
    size = 1.0 / (0.05 + 2.0 / mu)  # DESeq2's trend shape: dispersion 0.05 + 2 / mean
    counts = rng.negative_binomial(size, size / (size + mu))
    names = [f"S{i}" for i in range(2 * n_patients)]
    pd.DataFrame(counts.T, index=[f"g{i}" for i in range(n_genes)], columns=names).to_csv(
        tmp_path / "counts.csv")
    pd.DataFrame({"sample": names, "patient": patient, "timepoint": timepoint}).to_csv(
        tmp_path / "samples.csv", index=False)
    return ["de", str(tmp_path / "counts.csv"), "--samples", str(tmp_path / "samples.csv")]


def test_de_fits_integer_patient_codes_as_factors_unless_numeric_is_given(tmp_path):
    args = _paired_counts(tmp_path)
    factor = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "factor.csv")])
    assert factor.exit_code == 0, factor.output
    assert "integer-coded patient fitted as factor" in factor.output
    numeric = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "numeric.csv"),
                                        "--numeric", "patient"])
    assert numeric.exit_code == 0, numeric.output
    assert "fitted as factor" not in numeric.output
    a = pd.read_csv(tmp_path / "factor.csv")
    b = pd.read_csv(tmp_path / "numeric.csv")
    assert not np.allclose(a["pvalue"], b["pvalue"], equal_nan=True)  # the two models differ


def test_the_command_line_starts_without_the_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys, engine.cli, engine, engine.runtime; "
            "print(sorted(m for m in ('numba', 'scipy', 'pandas', 'matplotlib', 'dask', 'gating', "
            "'expression') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["gate", "de", "normalize", "info", "study", "convert"])
def test_subcommand_help_starts_without_the_heavy_libraries(command):
    """``phenoflow CMD --help`` (and the Numba cache set-up every command does first) imports
    neither Numba nor the data libraries: the program itself (``python -m engine.cli``) run
    with ``-X importtime``, which lists every module the process imported."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", command, "--help"],
                          capture_output=True, text=True, check=True)
    assert "Usage:" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "engine" in imported and "click" in imported  # the listing is there
    heavy = {"numba", "scipy", "pandas", "matplotlib", "dask", "pydeseq2"}
    assert not heavy & imported, sorted(heavy & imported)


def test_reading_and_writing_a_strategy_does_not_load_pandas_or_scipy(tmp_path):
    """(Numba itself imports the top-level ``scipy`` package, which is cheap.)"""
    import subprocess
    import sys

    code = ("import sys, gating; s = gating.preset('study_panel'); "
            f"gating.write_gatingml(s, {str(tmp_path / 's.xml')!r}); "
            "print(sorted(m for m in ('scipy.optimize', 'scipy.stats', 'pandas', 'matplotlib', "
            "'dask') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "s.xml").stat().st_size > 0


def test_info_reads_text_without_starting_numba(tmp_path):
    """``phenoflow info`` reads TEXT (and checks the spillover matrix) without the decoding
    kernels, the plan compiler or the transforms: Numba is never imported."""
    import subprocess
    import sys

    from gating import write_fcs

    rng = np.random.default_rng(3)
    spill = pd.DataFrame([[1.0, 0.1], [0.05, 1.0]], index=["A", "B"], columns=["A", "B"])
    write_fcs(tmp_path / "s.fcs", rng.normal(500, 100, (200, 2)).astype(np.float32), ["A", "B"],
              spill=spill)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", "info",
                           str(tmp_path / "s.fcs")], capture_output=True, text=True, check=True)
    assert "ok (2x2)" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "gating._fcs._read" in imported  # the listing is there
    assert not {"numba", "gating._plan", "gating._transforms", "gating._fcs._kernels"} & imported


def test_converting_a_strategy_file_does_not_load_pandas(tmp_path):
    """``phenoflow convert`` of a strategy file (no FCS files to bind) loads neither pandas nor
    the FCS reader: the FlowJo writer and the strategy loader import them only to read files."""
    import subprocess
    import sys

    from gating import preset, write_gatingml

    src = tmp_path / "s.xml"
    write_gatingml(preset("study_panel"), src)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", "convert", str(src),
                           "--to", "yaml", "--out", str(tmp_path / "s.yaml")],
                          capture_output=True, text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "gating._strategy" in imported  # the listing is there
    assert not {"pandas", "gating._fcs", "gating._evaluate"} & imported
    assert (tmp_path / "s.yaml").read_text().strip()


def test_de_lrt_and_lfc_threshold_from_the_command_line(tmp_path):
    args = _paired_counts(tmp_path)
    wald = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "wald.csv")])
    lrt = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "lrt.csv"), "--test", "LRT",
                                    "--reduced", "~ patient"])
    assert wald.exit_code == 0 and lrt.exit_code == 0, lrt.output
    a, b = pd.read_csv(tmp_path / "wald.csv"), pd.read_csv(tmp_path / "lrt.csv")
    assert not np.allclose(a["pvalue"], b["pvalue"], equal_nan=True)
    thresholded = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "t.csv"),
                                            "--lfc-threshold", "1"])
    assert thresholded.exit_code == 0
    c = pd.read_csv(tmp_path / "t.csv")
    assert (c["pvalue"].dropna() >= a["pvalue"].dropna() - 1e-12).all()  # a harder null
    missing = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "x.csv"), "--test", "LRT"])
    assert missing.exit_code == 2 and "reduced" in missing.output
    assert not (tmp_path / "x.csv").exists()


def test_normalize_vst_nsub_option(tmp_path):
    args = _paired_counts(tmp_path)[1:]
    for nsub in ("all", "50"):
        done = CliRunner().invoke(main, ["normalize", *args[:1], "--samples", args[2],
                                         "--method", "vst", "--nsub", nsub,
                                         "--out", str(tmp_path / f"vst_{nsub}.csv")])
        assert done.exit_code == 0, done.output
    full = pd.read_csv(tmp_path / "vst_all.csv", index_col=0)
    sub = pd.read_csv(tmp_path / "vst_50.csv", index_col=0)
    assert full.shape == sub.shape and not np.allclose(full.to_numpy(), sub.to_numpy())
    bad = CliRunner().invoke(main, ["normalize", *args[:1], "--samples", args[2], "--method",
                                    "vst", "--nsub", "some", "--out", str(tmp_path / "v.csv")])
    assert bad.exit_code == 2 and "--nsub" in bad.output


def test_normalising_counts_does_not_load_the_de_or_plotting_stack():
    import subprocess
    import sys

    code = ("import sys; from expression import normalize_file, cpm, read_counts; "
            "print(sorted(m for m in ('pydeseq2', 'matplotlib', 'scipy.stats', 'sklearn') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_normalising_a_table_file_does_not_import_anndata(tmp_path):
    """``normalize_file`` on a CSV works on the light CountTable (anndata's import alone cost
    0.6 s of a 1.1 s command); an ``.h5ad`` output still gets the whole AnnData."""
    import subprocess
    import sys

    counts = pd.DataFrame(np.arange(1, 61).reshape(10, 6) % 17 + 1,  # genes x samples
                          index=[f"g{i}" for i in range(10)], columns=[f"s{j}" for j in range(6)])
    counts.to_csv(tmp_path / "c.csv")
    code = ("import sys; from expression import normalize_file; "
            f"t = normalize_file({str(tmp_path / 'c.csv')!r}, out={str(tmp_path / 'n.csv')!r}); "
            "print(type(t).__name__, 'anndata' in sys.modules, sorted(t.layers))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["CountTable", "False", "['counts',", "'normalized']"]
    written = pd.read_csv(tmp_path / "n.csv", index_col=0)
    sf = np.exp(np.median(np.log(counts.to_numpy() / np.exp(np.log(counts.to_numpy()).mean(axis=1,
                                                                   keepdims=True))), axis=0))
    np.testing.assert_allclose(written.to_numpy(), counts.to_numpy() / sf, rtol=1e-12)
    code = code.replace("n.csv", "n.h5ad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import anndata as ad

    back = ad.read_h5ad(tmp_path / "n.h5ad")
    assert sorted(back.layers) == ["counts", "normalized"] and "size_factors" in back.obs


def test_a_reader_warning_is_one_line_on_the_command_line(tmp_path):
    """The command line shows a reader's repair note once, as ``FCSWarning: <file>: <note>``,
    without Python's file, line and source-line decoration."""
    import subprocess
    import sys

    from tests.fcs_factory import build_dataset

    blob = build_dataset(np.arange(20, dtype=np.uint64).reshape(10, 2), data_end_fudge=1) + b"\0"
    path = tmp_path / "x.fcs"
    path.write_bytes(blob)
    done = subprocess.run([sys.executable, "-m", "engine.cli", "info", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"FCSWarning: {path}: ") and "one byte past" in lines[0]
