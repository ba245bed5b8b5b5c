"""Issue 13, gating side: no silent wrong answers, early exit-2 usage errors, locked outputs.

Every case runs on real FCS files written by the test, through the real batch or command line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from engine import BatchOptions, ExecutorSpec, InputError, resolve_inputs, run_batch
from engine.cli import main
from engine.runtime import (
    LOCK_NAME,
    OutputDirError,
    OutputLockedError,
    check_output_dir,
    output_lock,
    remove_stale_partials,
)
from gating import load_strategy, write_strategy_yaml
from tests.gating.test_plan_compensation import STRATEGY, write_sample

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path):
    """Two good files, one with misspelt spillover labels, one without spillover; a strategy."""
    good = [write_sample(tmp_path / f"good{i}.fcs") for i in range(2)]
    bad = write_sample(tmp_path / "bad_labels.fcs", mangle=b"BV510-A")
    none = write_sample(tmp_path / "no_spill.fcs", spill=None)
    strategy = tmp_path / "strategy.yaml"
    strategy.write_text(write_strategy_yaml(STRATEGY))
    return {"good": good, "bad": bad, "none": none, "strategy": strategy, "root": tmp_path}


def _gate(args: list[str]):
    return CliRunner().invoke(main, ["gate", *args], catch_exceptions=False)


def test_uncompensatable_files_are_errors_and_allow_is_recorded(files, tmp_path):
    inputs = resolve_inputs([*files["good"], files["bad"], files["none"]])
    run = run_batch(files["strategy"], inputs, out_dir=tmp_path / "strict",
                    executor=ExecutorSpec(kind="inprocess"))
    errors = run.errors.set_index("path")
    assert sorted(errors.index) == sorted([str(files["bad"]), str(files["none"])])
    assert set(errors["error_type"]) == {"CompensationError"}
    assert "'BV510_A' looks like channel 'BV510-A'" in errors.loc[str(files["bad"]), "message"]
    assert "no spillover" in errors.loc[str(files["none"]), "message"]
    assert set(run.populations["sample"]) == {"good0", "good1"}
    assert "uncompensated" not in run.populations.columns
    meta = json.loads((tmp_path / "strict" / "run.json").read_text())
    assert meta["uncompensated"] == "error" and "uncompensated_files" not in meta

    allowed = run_batch(files["strategy"], inputs, out_dir=tmp_path / "allow",
                        executor=ExecutorSpec(kind="inprocess"),
                        options=BatchOptions(uncompensated="allow"))
    assert allowed.ok
    by_sample = allowed.populations.groupby("sample")["uncompensated"].agg(set)
    assert by_sample.to_dict() == {"good0": {False}, "good1": {False}, "bad_labels": {True},
                                   "no_spill": {True}}
    flagged = allowed.files.set_index("sample")["uncompensated"]
    assert flagged.to_dict() == {"good0": False, "good1": False, "bad_labels": True, "no_spill": True}
    meta = json.loads((tmp_path / "allow" / "run.json").read_text())
    assert meta["uncompensated"] == "allow"
    assert sorted(meta["uncompensated_files"]) == sorted([str(files["bad"]), str(files["none"])])
    assert "BV510_A" in meta["uncompensated_files"][str(files["bad"])][0]


def test_cli_allow_uncompensated_and_info_says_whether_spillover_fits(files, tmp_path):
    out = tmp_path / "o"
    strict = _gate(["--strategy", str(files["strategy"]), "--fcs", str(files["bad"]), "--out", str(out),
                    "--in-process"])
    assert strict.exit_code == 1 and "CompensationError" in strict.output
    allowed = _gate(["--strategy", str(files["strategy"]), "--fcs", str(files["bad"]), "--out",
                     str(tmp_path / "a"), "--in-process", "--allow-uncompensated"])
    assert allowed.exit_code == 0, allowed.output
    assert "1 file(s) gated UNCOMPENSATED" in allowed.output
    info = CliRunner().invoke(main, ["info", str(files["good"][0]), str(files["bad"]), str(files["none"])])
    assert info.exit_code == 0
    rows = {line.split()[0]: line for line in info.output.splitlines()[1:]}
    assert info.output.splitlines()[0].split()[-1] == "spillover"
    assert rows["good0.fcs"].endswith("ok (2x2)")
    assert rows["bad_labels.fcs"].endswith("labels do not match (BV510_A -> BV510-A)")
    assert rows["no_spill.fcs"].endswith("none")


def test_manifest_unknown_and_duplicate_keys_are_errors(files, tmp_path):
    good = files["good"]

    def manifest(text: str) -> Path:
        path = tmp_path / "m.csv"
        path.write_text(text)
        return path

    cases = {
        f"path,smaple\n{good[0]},a\n": r"m\.csv: unknown column 'smaple'; did you mean 'sample'\?",
        f"pth,patient\n{good[0]},1\n": r"unknown column 'pth'; did you mean 'path'\?",
        f"Path,patient\n{good[0]},1\n": r"unknown column 'Path'; did you mean 'path'\?",
        f"path,patient\n{good[0]},1\n{good[1]},2\n{good[0]},3\n": r"m\.csv, line 4: path .* already on line 2",
        f"path,sample\n{good[0]},s1\n{good[1]},s1\n": r"m\.csv, line 3: sample 's1' is already on line 2",
        f"path,count\n{good[0]},1\n": r"column 'count' would overwrite",
        f"path,patient,patient\n{good[0]},1,2\n": r"column 'patient' appears 2 times",
        f"path,file\n{good[0]},x\n": r"both a 'path' and a 'file' column",
    }
    for text, message in cases.items():
        with pytest.raises(InputError, match=message):
            resolve_inputs(manifest=manifest(text))
    result = _gate(["--strategy", str(files["strategy"]), "--manifest",
                    str(manifest(f"path,sample\n{good[0]},s1\n{good[1]},s1\n")), "--out",
                    str(tmp_path / "o"), "--in-process"])
    assert result.exit_code == 2 and "sample 's1' is already on line 2" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def _one_line_exit_2(result, *needles: str, click_usage: bool = False) -> None:
    """Exit 2, no traceback, one ``Error:`` line naming the mistake (click's own parameter
    checks add their usage lines above it)."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and (click_usage or len(lines) == 1), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_usage_mistakes_exit_2_with_one_line_before_any_gating(files, tmp_path):
    fcs = ["--fcs", str(files["good"][0])]
    strategy = ["--strategy", str(files["strategy"])]
    out = ["--out", str(tmp_path / "o")]
    _one_line_exit_2(_gate(["--strategy", str(tmp_path / "missing.yaml"), *fcs, *out]),
                     "missing.yaml: no such file", "preset")
    _one_line_exit_2(_gate(["--strategy", str(files["good"][1]), *fcs, *out]),
                     "is an FCS data file, not a gating strategy", "--fcs")
    blocker = tmp_path / "plain_file"
    blocker.write_text("x")
    _one_line_exit_2(_gate([*strategy, *fcs, "--out", str(blocker / "sub")]),
                     "cannot be created", "is a file")
    _one_line_exit_2(_gate([*strategy, *fcs, "--out", str(blocker)]), "is a file", click_usage=True)
    _one_line_exit_2(_gate([*strategy, *fcs, *out, "--mfi", "PE-A,BV51O-A"]),
                     "--mfi", "'BV51O-A'", "did you mean 'BV510-A'")
    _one_line_exit_2(_gate([*strategy, *fcs, *out, "--group", "Nonexistent"]),
                     "--group 'Nonexistent'", "not one")
    assert not (tmp_path / "o").exists()  # nothing was started


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write to: a chmod-ed one, or for root (which ignores the
    mode bits) a kernel folder that refuses new files."""
    if os.geteuid() != 0:
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o555)
        return locked
    for candidate in (Path("/sys/kernel"), Path("/proc/sys")):
        try:
            fd, name = tempfile.mkstemp(dir=candidate)
        except OSError:
            return candidate
        os.close(fd)
        os.unlink(name)
    pytest.fail("no read-only folder found on this machine for the read-only --out test")


def test_read_only_out_exits_2(files, tmp_path):
    locked = _read_only_folder(tmp_path)
    try:
        result = _gate(["--strategy", str(files["strategy"]), "--fcs", str(files["good"][0]), "--out",
                        str(locked)])
        _one_line_exit_2(result, "is not writable")
    finally:
        if locked.is_relative_to(tmp_path):
            locked.chmod(0o755)


def test_group_that_the_workspace_lacks_exits_2(tmp_path):
    from tests.conftest import CONFORMANCE, require_shared

    folder = require_shared(CONFORMANCE / "flowjo" / "simple_diamond_example")
    wsp = folder / "simple_diamond_example_quad_gate.wsp"
    groups = list(load_strategy(wsp).groups)
    result = _gate(["--strategy", str(wsp), "--fcs", str(folder / "test_data_diamond_01.fcs"), "--out",
                    str(tmp_path / "o"), "--group", groups[0] + "x"])
    _one_line_exit_2(result, f"--group '{groups[0]}x'", "has no such group", f"did you mean '{groups[0]}'")
    assert not (tmp_path / "o").exists()


def test_de_and_normalize_check_the_output_before_computing(tmp_path):
    counts = tmp_path / "counts.csv"
    counts.write_text("gene,s1,s2\ng1,1,2\ng2,3,4\n")
    samples = tmp_path / "samples.csv"
    samples.write_text("sample,patient,timepoint\ns1,p1,pre\ns2,p1,post\n")
    bad_suffix = CliRunner().invoke(main, ["normalize", str(counts), "--out", str(tmp_path / "x.xlsx")])
    _one_line_exit_2(bad_suffix, "unsupported output suffix '.xlsx'", ".parquet")
    no_folder = CliRunner().invoke(main, ["de", str(counts), "--samples", str(samples), "--out",
                                          str(tmp_path / "nowhere" / "de.csv")])
    _one_line_exit_2(no_folder, "does not exist", "create it first")
    sf = CliRunner().invoke(main, ["normalize", str(counts), "--out", str(tmp_path / "n.csv"),
                                   "--size-factors", str(tmp_path / "sf.txt")])
    _one_line_exit_2(sf, "--size-factors", "'.txt'")
    assert not (tmp_path / "n.csv").exists()


def test_a_second_run_into_a_locked_out_fails_at_once_naming_the_holder(files, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    with output_lock(out) as me:
        result = _gate(["--strategy", str(files["strategy"]), "--fcs", str(files["good"][0]), "--out",
                        str(out), "--in-process"])
        _one_line_exit_2(result, "in use by another phenoflow run", f"pid {me.pid}",
                         f"host {socket.gethostname()}", me.started)
        with pytest.raises(OutputLockedError) as err:
            run_batch(files["strategy"], resolve_inputs(files["good"]), out_dir=out,
                      executor=ExecutorSpec(kind="inprocess"))
        assert err.value.holder == me
        # --debug shows the full traceback instead of the one line
        traced = subprocess.run(
            [sys.executable, "-m", "engine.cli", "--debug", "gate", "--strategy", str(files["strategy"]),
             "--fcs", str(files["good"][0]), "--out", str(out), "--in-process"],
            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert traced.returncode == 1 and "Traceback (most recent call last)" in traced.stderr
        assert "OutputLockedError" in traced.stderr
    assert not (out / "parts").exists() or not any((out / "parts").iterdir())
    assert not (out / LOCK_NAME).exists()  # released


def test_a_stale_lock_and_stale_partials_are_cleaned(files, tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "o"
    (out / "parts").mkdir(parents=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead), "host": socket.gethostname(),
                                             "started": "2024-01-01T00:00:00+00:00"}))
    stale = [out / f".populations.csv.{dead}.partial", out / "parts" / f".abc.parquet.{dead}.partial"]
    live = out / f".other.csv.{os.getpid()}.partial"  # a live process's file is kept
    other = out / f".notes.{dead}.txt"  # not the pattern: kept
    for p in (*stale, live, other):
        p.write_text("half")
    with caplog.at_level("WARNING"):
        run = run_batch(files["strategy"], resolve_inputs(files["good"]), out_dir=out,
                        executor=ExecutorSpec(kind="inprocess"))
    assert run.ok
    assert not any(p.exists() for p in stale) and live.exists() and other.exists()
    assert f"taking over a stale lock of pid {dead}" in caplog.text
    assert "removed 2 temporary file(s)" in caplog.text
    assert not (out / LOCK_NAME).exists()
    assert remove_stale_partials(out) == []


def test_check_output_dir_creates_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_output_dir(target) == target and not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputDirError, match="is a file"):
        check_output_dir(tmp_path / "f" / "sub")


def test_batch_accepts_a_loaded_strategy_without_reading_it_again(files, tmp_path, monkeypatch):
    import gating

    loaded = load_strategy(files["strategy"])

    def refuse(*_a, **_k):
        raise AssertionError("the strategy was read again")

    monkeypatch.setattr(gating, "load_strategy", refuse)
    inputs = resolve_inputs(files["good"])
    run = run_batch(loaded, inputs, out_dir=tmp_path / "o", executor=ExecutorSpec(kind="inprocess"))
    assert run.ok and set(run.populations["sample"]) == {"good0", "good1"}
    from engine import prepare_batch

    tasks, texts = prepare_batch(loaded, inputs, out_dir=tmp_path / "o", options=BatchOptions())
    assert len(tasks) == 2 and len(texts) == 1
    assert pd.read_parquet(tmp_path / "o" / "files.parquet")["uncompensated"].tolist() == [False, False]
    np.testing.assert_array_equal(run.files["status"], ["ok", "ok"])
