"""The program's entry point (:func:`engine.cli.run`) ends its process without the interpreter's
teardown once a command is done (:func:`engine.cli._process.leave_now`), keeping the exit
status, the flushed output and the log, and falls back to the normal exit while a thread or a
child process still runs; :func:`engine.cli.main` raises ``SystemExit`` for its caller."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from gating import Dimension, RectangleGate, Strategy, write_fcs, write_strategy_yaml

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


def test_the_status_and_the_flushed_output_are_kept() -> None:
    for code, status in (("None", 0), ("3", 3), ("'bye'", 1)):
        run = _python(f"""
            import sys
            from engine.cli._process import leave_now
            sys.stdout.write("written, not flushed")
            leave_now({code})
            raise SystemExit("not reached")
        """)
        assert run.returncode == status, run.stderr
        assert run.stdout == "written, not flushed"
        assert ("bye" in run.stderr) == (status == 1) and "not reached" not in run.stderr


def test_the_log_is_flushed_before_leaving(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    run = _python("""
        import logging, sys
        handler = logging.FileHandler(sys.argv[1], delay=True)
        handler.stream = None
        logging.getLogger().addHandler(handler)
        logging.getLogger().warning("the last line")
        from engine.cli._process import leave_now
        leave_now(0)
    """, str(log))
    assert run.returncode == 0, run.stderr
    assert log.read_text().strip() == "the last line"


def test_a_running_thread_or_child_process_keeps_the_normal_exit(tmp_path: Path) -> None:
    for kind in ("thread", "process"):
        marker = tmp_path / f"{kind}.done"
        run = _python(f"""
            import os, sys, time
            from pathlib import Path

            TARGET = Path(sys.argv[1])

            def late(child=False):
                if child:  # not holding the test's pipes: only the parent's exit ends the run
                    os.close(1)
                    os.close(2)
                time.sleep(0.5)
                TARGET.write_text("finished")

            if __name__ == "__main__":
                if "{kind}" == "thread":
                    import threading
                    threading.Thread(target=late).start()
                else:
                    import multiprocessing
                    multiprocessing.get_context("fork").Process(target=late, args=(True,)).start()
                sys.argv[:] = ["phenoflow", "--version"]
                from engine.cli import run
                run()
        """, str(marker))
        assert run.returncode == 0, run.stderr
        assert run.stdout.startswith("phenoflow, version")
        assert marker.read_text() == "finished"  # waited for, as the interpreter's exit does


def test_a_whole_command_run_writes_everything_and_exits_with_its_status(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for i in range(2):
        write_fcs(tmp_path / f"s{i}.fcs", rng.normal(500, 200, size=(1000, 2)).astype(np.float32),
                  ["A", "B"])
    (tmp_path / "bad.fcs").write_bytes(b"FCS3.1 not really")
    strategy = tmp_path / "strategy.yaml"
    strategy.write_text(write_strategy_yaml(Strategy(gates=(RectangleGate("R", (Dimension("A"),),
                                                                          ((500.0, None),)),))))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "engine.cli", "gate", "--strategy", str(strategy),
                          "--fcs", str(tmp_path), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 1, run.stderr  # one file failed
    assert "gated 2 of 3 files" in run.stdout
    assert pd.read_parquet(tmp_path / "out" / "populations.parquet")["count"].gt(0).all()
    assert len(pd.read_parquet(tmp_path / "out" / "errors.parquet")) == 1


def test_main_leaves_the_exit_to_its_caller() -> None:
    run = _python("""
        import sys
        from engine.cli import main
        sys.argv[:] = ["phenoflow", "--version"]
        try:
            main()
        except SystemExit as done:
            print("caller continues", done.code)
    """)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "caller continues 0"
