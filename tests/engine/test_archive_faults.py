"""An archive of 1,000 FCS files, 5% damaged, gated by the real CLI and killed at random moments.

The damaged entries (10 of each kind): truncated (in HEADER, TEXT and DATA), zero-length, a CSV
named ``.fcs``, unreadable, and a directory named ``x.fcs``. "Unreadable" is ``chmod 000`` when
the tests run as an ordinary user; as root (CI containers) ``chmod`` does not stop reads, so the
unreadable entries are then FIFOs named ``.fcs`` (opening one would block forever: the reader
must refuse it without opening it) and dangling symbolic links.

Asserted: every good file's result is present exactly once, every bad one is in the error table
with a typed reason for its kind, and nothing else. Then the batch is SIGKILLed at three seeded
random points (each a resume of the last), resumed to the end, and the final tables equal a
clean run's row for row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gating import write_fcs

REPO = Path(__file__).resolve().parents[2]
PHENOFLOW = [sys.executable, "-m", "engine.cli"]
N_FILES, N_BAD_EACH = 1000, 10
KINDS = ("truncated", "empty", "csv", "unreadable", "directory")
CHANNELS = ["FSC-A", "SSC-A", "FL1-A", "FL2-A", "FL3-A", "FL4-A"]
STRATEGY = """\
phenoflow-strategy: 1
transforms:
  lin: {type: linear, T: 1000, A: 0}
dimensions: {FSC-A: {transform: lin}, SSC-A: {transform: lin}, FL1-A: {transform: lin},
             FL2-A: {transform: lin}, FL3-A: {transform: lin}, FL4-A: {transform: lin}}
gates:
  - name: Cells
    polygon: {dims: [FSC-A, SSC-A], vertices: [[0.1, 0.05], [0.9, 0.1], [0.8, 0.9], [0.15, 0.7]]}
  - {name: A+, parent: Cells, range: {dim: FL1-A, min: 0.5}}
  - {name: B+, parent: Cells, range: {dim: FL2-A, min: 0.4}}
  - {name: AB, parent: Cells, boolean: "A+ and not B+"}
  - {name: Q, parent: A+, rectangle: {FL3-A: [0.2, 0.8], FL4-A: [null, 0.6]}}
"""
N_POPULATIONS = 5
ROOT_USER = os.geteuid() == 0


def _cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*PHENOFLOW, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, **kw)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive1000")
    fcs = root / "fcs"
    fcs.mkdir()
    rng = np.random.default_rng(20261124)
    bad_at = set(rng.choice(N_FILES, size=N_BAD_EACH * len(KINDS), replace=False).tolist())
    kinds = dict(zip(sorted(bad_at), np.repeat(KINDS, N_BAD_EACH)[rng.permutation(len(bad_at))],
                     strict=True))
    events = rng.uniform(0, 1000, size=(300, 6)).astype(np.float32)
    blob = write_fcs(root / "template.fcs", events, CHANNELS).read_bytes()
    good, bad = [], {}
    for i in range(N_FILES):
        path = fcs / f"s{i:04d}.fcs"
        kind = kinds.get(i)
        if kind is None:
            # a distinct file each time: the template's header and TEXT, new DATA
            data = rng.uniform(0, 1000, size=300 * 6).astype("<f4").tobytes()
            path.write_bytes(blob[: len(blob) - len(data)] + data)
            good.append(path)
        elif kind == "truncated":
            cut = [30, 200, len(blob) // 2, len(blob) - 1][len(bad) % 4]  # HEADER/TEXT/DATA
            path.write_bytes(blob[:cut])
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "csv":
            path.write_text("FSC-A,SSC-A\n" + "".join(f"{k}.5,{2 * k}.25\n" for k in range(50)))
        elif kind == "directory":
            path.mkdir()
            (path / "inner.txt").write_text("not an FCS file\n")
        elif ROOT_USER:  # chmod does not stop root: a FIFO, or a link to nothing
            if len([k for k in bad.values() if k == "unreadable"]) % 2:
                os.symlink(fcs / f"missing{i}.fcs", path)
            else:
                os.mkfifo(path)
        else:
            path.write_bytes(blob)
            path.chmod(0)
        if kind is not None:
            bad[str(path)] = kind
    assert len(good) == N_FILES - len(bad) == 950
    strategy = root / "strategy.yaml"
    strategy.write_text(STRATEGY)
    yield {"fcs": fcs, "good": good, "bad": bad, "strategy": strategy}
    for p in bad:
        if not ROOT_USER and bad[p] == "unreadable":
            Path(p).chmod(0o644)


@pytest.fixture(scope="module")
def clean_run(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "out"
    done = _cli(["gate", "--strategy", str(archive["strategy"]), "--fcs", str(archive["fcs"]),
                 "--out", str(out), "--in-process"], timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]  # the damaged files make it 1
    return out


def _expected_types(kind: str) -> set[str]:
    if kind == "unreadable":
        return {"FCSFormatError", "FileNotFoundError"} if ROOT_USER else {"PermissionError"}
    if kind == "truncated":
        return {"FCSTruncatedError", "FCSFormatError"}
    if kind == "empty":
        return {"FCSTruncatedError"}  # "file ends after 0 bytes, a HEADER needs 58"
    return {"FCSFormatError"}  # a CSV: no FCS signature; a directory: not a regular file


def test_every_good_file_once_every_bad_file_typed_nothing_else(archive, clean_run):
    import builtins

    import gating as fcs_errors

    pops = pd.read_parquet(clean_run / "populations.parquet")
    errors = pd.read_parquet(clean_run / "errors.parquet")
    files = pd.read_parquet(clean_run / "files.parquet")
    good_names = sorted(p.stem for p in archive["good"])
    assert sorted(pops["sample"].unique()) == good_names
    assert (pops.groupby("sample").size() == N_POPULATIONS).all()
    assert not pops.duplicated(["sample", "population"]).any()
    assert len(pops) == len(good_names) * N_POPULATIONS
    assert sorted(errors["path"]) == sorted(archive["bad"])
    assert not errors["path"].duplicated().any()
    for row in errors.itertuples():
        kind = archive["bad"][row.path]
        assert row.error_type in _expected_types(kind), (kind, row.error_type, row.message)
        assert row.message, row.path
        cls = getattr(fcs_errors, row.error_type, None) or getattr(builtins, row.error_type)
        assert issubclass(cls, fcs_errors.FCSError | OSError)
    if ROOT_USER:  # both unreadable stand-ins occur, each with its own reason
        unread = errors[[archive["bad"][p] == "unreadable" for p in errors["path"]]]
        assert set(unread["error_type"]) == {"FCSFormatError", "FileNotFoundError"}
        fifo = unread[unread["error_type"] == "FCSFormatError"]
        assert fifo["message"].str.contains("not a regular file").all()
    assert len(files) == N_FILES
    assert (files["status"] == "ok").sum() == len(good_names)
    ok = files[files["status"] == "ok"]
    assert (ok["n_events"] == 300).all() and ok["xxh3_128"].str.len().gt(0).all()


def _parts_done(parts: Path) -> int:
    return len([p for p in parts.iterdir() if not p.name.startswith(".")]) if parts.exists() else 0


def _start(args: list[str], *, capture: bool = False) -> subprocess.Popen:
    return subprocess.Popen([*PHENOFLOW, *args], cwd=REPO, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)


def _wait_for_parts(proc: subprocess.Popen, parts: Path, n: int) -> None:
    deadline = time.monotonic() + 120  # a hang (e.g. a FIFO opened for reading) fails, not blocks
    while proc.poll() is None and _parts_done(parts) < n:
        assert time.monotonic() < deadline, f"no progress past {_parts_done(parts)} parts"
        time.sleep(0.002)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # it had already finished
        pass


def test_sigkill_at_random_moments_then_resume_equals_a_clean_run(archive, clean_run, tmp_path):
    rng = np.random.default_rng(7)
    # kill points leave room before the end, but on a loaded machine a run may still write every
    # part between the poll and the kill: then the kill lands in the final-table phase (also a
    # moment to survive), or the run finishes first (exit 1: the archive has bad files)
    kill_points = sorted(rng.choice(np.arange(20, N_FILES - 200), size=3, replace=False).tolist())
    out = tmp_path / "killed"
    args = ["gate", "--strategy", str(archive["strategy"]), "--fcs", str(archive["fcs"]),
            "--out", str(out), "--in-process"]
    parts = out / "parts"
    resumed_counts = []
    for point in kill_points:
        proc = _start(args)
        _wait_for_parts(proc, parts, point)
        _kill(proc)
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 1), proc.returncode
        done = _parts_done(parts)
        assert point <= done <= N_FILES
        resumed_counts.append(done)
    assert resumed_counts == sorted(resumed_counts)
    # one more kill once every part exists: during the final tables (if still running then)
    proc = _start(args, capture=True)
    _wait_for_parts(proc, parts, N_FILES)
    _kill(proc)
    stdout, _ = proc.communicate()
    if proc.returncode != -signal.SIGKILL:  # it finished first: it resumed the last kill's parts
        assert f"({resumed_counts[-1]} from an earlier run)" in stdout
    final = _cli(args, timeout=300)
    assert final.returncode == 1
    assert f"({N_FILES} from an earlier run)" in final.stdout
    for name in ("populations.parquet", "errors.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(clean_run / name))
    drop = ["seconds"]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "files.parquet").drop(columns=drop),
                                  pd.read_parquet(clean_run / "files.parquet").drop(columns=drop))
    csv_k, csv_c = (pd.read_csv(d / "populations.csv") for d in (out, clean_run))
    pd.testing.assert_frame_equal(csv_k, csv_c)


def test_a_finished_run_leaves_no_temporary_files(clean_run):
    # every output goes through engine.runtime.atomic_path: ``.<name>.<pid>.partial[suffix]``
    # files exist only while being written, and a finished run leaves none behind
    leftovers = [p for p in clean_run.rglob("*") if ".partial" in p.name]
    assert leftovers == []
    assert {p.name for p in clean_run.iterdir()} >= {
        "populations.parquet", "populations.csv", "errors.parquet", "files.parquet", "run.json", "parts"}
