"""``phenoflow gate`` freezes its start-up heap only as the process's own command line: a run
from ``sys.argv`` moves the objects made so far into the collector's permanent generation; a
caller invoking the command in-process with its own arguments keeps its collector untouched.
Either way the results are the same."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from engine.cli import main
from gating import Dimension, RectangleGate, Strategy, write_fcs, write_strategy_yaml


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    for i in range(2):
        write_fcs(tmp_path / f"s{i}.fcs", rng.normal(500, 200, size=(1000, 2)).astype(np.float32),
                  ["A", "B"])
    strategy = tmp_path / "strategy.yaml"
    gate = RectangleGate("R", (Dimension("A"),), ((500.0, None),))
    strategy.write_text(write_strategy_yaml(Strategy(gates=(gate,))))
    return tmp_path, strategy


def _counts(out: Path) -> list[int]:
    return pd.read_parquet(out / "populations.parquet")["count"].tolist()


def test_an_in_process_caller_keeps_its_collector(files: tuple[Path, Path], tmp_path: Path) -> None:
    folder, strategy = files
    before = gc.get_freeze_count()
    result = CliRunner().invoke(main, ["gate", "--strategy", str(strategy), "--fcs", str(folder),
                                       "--out", str(tmp_path / "out"), "--in-process"])
    assert result.exit_code == 0, result.output
    assert gc.get_freeze_count() == before


def test_the_command_line_of_the_process_freezes_its_start_up_heap(
    files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, strategy = files
    gc.unfreeze()
    monkeypatch.setattr(sys, "argv", ["phenoflow", "gate", "--strategy", str(strategy), "--fcs",
                                      str(folder), "--out", str(tmp_path / "own"), "--in-process"])
    try:
        with pytest.raises(SystemExit) as done:
            main()  # as `phenoflow` and `python -m engine.cli` call it: arguments from sys.argv
        assert done.value.code == 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # the test process's own collector, as it was
    result = CliRunner().invoke(main, ["gate", "--strategy", str(strategy), "--fcs", str(folder),
                                       "--out", str(tmp_path / "caller"), "--in-process"])
    assert result.exit_code == 0 and _counts(tmp_path / "own") == _counts(tmp_path / "caller")
