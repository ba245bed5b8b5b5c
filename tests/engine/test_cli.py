"""The command line, run in-process through click's runner on real files."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from engine.cli import main
from gating import write_fcs


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


def test_demo_writes_and_summarises_the_study(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--events", "3000", "--genes", "500"])
    assert result.exit_code == 0, result.output
    fcs = sorted((out / "study" / "fcs").glob("*.fcs"))
    assert len(fcs) == 27  # 15 patients x 2, minus 3 without baseline flow
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if ".fcs" in line}
    assert sorted(rows) == [p.name for p in fcs]
    assert all(row[:3] == ["FCS3.1", "3000", "14"] for row in rows.values())
    assert "500 genes x 20 samples" in result.output
    assert result.output.rstrip().endswith(str((out / "study").resolve()))


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
