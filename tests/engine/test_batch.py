"""The batch engine on real files, real Dask clusters on loopback, and real process kills."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import (
    BatchOptions,
    BatchTask,
    ErrorRecord,
    ExecutorSpec,
    InputError,
    SlurmOptions,
    TaskOutcome,
    expand_inputs,
    prepare_batch,
    resolve_inputs,
    run_batch,
    slurm_job_script,
)
from gating import apply_plan, compile_plan, preset, read_fcs
from tests.fcs_factory import build_file

PHENOFLOW = [sys.executable, "-m", "engine.cli"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Demo PBMC files plus corrupt ones: truncated, zero-length, not FCS, a directory."""
    from engine.demo import make_demo_study

    root = tmp_path_factory.mktemp("archive")
    study = make_demo_study(root / "study", n_events=4000, n_genes=100, n_patients=15)
    fcs = root / "study" / "fcs"
    good = sorted(fcs.glob("*.fcs"))
    (fcs / "zz_truncated.fcs").write_bytes(good[0].read_bytes()[:5000])
    (fcs / "zz_empty.fcs").write_bytes(b"")
    (fcs / "zz_text.fcs").write_text("this is not an FCS file\n")
    (fcs / "zz_dir.fcs").mkdir()
    return {"root": root, "fcs": fcs, "good": good, "strategy": study.strategy}


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["sample", "population"]).reset_index(drop=True)


def test_in_process_results_equal_apply_plan_and_errors_are_isolated(archive, tmp_path):
    inputs = resolve_inputs([archive["fcs"]])
    assert len(inputs) == len(archive["good"]) + 4
    run = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "out",
                    executor=ExecutorSpec(kind="inprocess"))
    assert not run.ok
    assert sorted(Path(p).name for p in run.errors["path"]) == [
        "zz_dir.fcs", "zz_empty.fcs", "zz_text.fcs", "zz_truncated.fcs"]
    assert set(run.errors["error_type"]) <= {"FCSFormatError", "FCSTruncatedError"}
    strategy = preset("study_panel")
    for path in archive["good"][:3]:
        sample = read_fcs(path)
        expected = apply_plan(compile_plan(strategy, sample), sample).counts
        got = run.populations[run.populations["sample"] == path.stem]
        assert got["count"].tolist() == expected["count"].tolist()
        assert got["population"].tolist() == expected["population"].tolist()
    assert run.populations["sample"].nunique() == len(archive["good"])  # each once
    files = pd.read_parquet(tmp_path / "out" / "files.parquet")
    assert (files["status"] == "ok").sum() == len(archive["good"])
    ok = files[files["status"] == "ok"].iloc[0]
    assert ok["size"] == os.path.getsize(ok["path"]) and len(ok["xxh3_128"]) == 32
    meta = json.loads((tmp_path / "out" / "run.json").read_text())
    assert meta["files"] == len(inputs) and meta["failed"] == 4 and meta["strategy_hashes"]


def test_local_cluster_equals_in_process(archive, tmp_path):
    inputs = resolve_inputs(archive["good"][:8])
    local = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "a",
                      executor=ExecutorSpec(kind="local", workers=2))
    inproc = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "b",
                       executor=ExecutorSpec(kind="inprocess"))
    assert local.executor == "local Dask threaded scheduler, 2 threads"
    pd.testing.assert_frame_equal(local.populations, inproc.populations)


def test_existing_scheduler_and_workers_as_separate_processes(archive, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        for _ in range(300):
            if scheduler_file.exists() and scheduler_file.stat().st_size:
                break
            time.sleep(0.1)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
             "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        from distributed import Client

        with Client(scheduler_file=str(scheduler_file), timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        inputs = resolve_inputs(archive["good"][:5])
        remote = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "r",
                           executor=ExecutorSpec(kind="scheduler", scheduler_file=str(scheduler_file)))
        local = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "l",
                          executor=ExecutorSpec(kind="inprocess"))
        assert remote.executor.startswith("Dask scheduler tcp://127.0.0.1")
        pd.testing.assert_frame_equal(remote.populations, local.populations)
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


def test_slurm_job_script_is_rendered():
    script = slurm_job_script(SlurmOptions(cores=8, memory="32GB", walltime="02:30:00", account="lab1",
                                           queue="short", extra=("--qos=low",), processes=2))
    for line in ("#SBATCH -A lab1", "#SBATCH -p short", "#SBATCH --cpus-per-task=8",
                 "#SBATCH -t 02:30:00", "#SBATCH --qos=low"):
        assert line in script
    assert "distributed.cli.dask_worker" in script and "--nworkers 2" in script


def _run_cli(args, **kw):
    return subprocess.run([*PHENOFLOW, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, **kw)


@pytest.fixture(scope="module")
def clean_run(archive, tmp_path_factory):
    """The uninterrupted run that interrupted-and-resumed runs must reproduce."""
    clean = tmp_path_factory.mktemp("clean") / "out"
    first = _run_cli(["gate", "--strategy", str(archive["strategy"]), "--fcs", str(archive["fcs"]),
                      "--out", str(clean), "--in-process"])
    assert first.returncode == 1, first.stderr  # the corrupt files make the exit code 1
    return clean


def _files_done(parts: Path) -> int:
    """Files a killed run finished: per-file parts and error records, plus the files each
    chunk part lists (a chunk's part is written whole, or not at all)."""
    import pyarrow.parquet as pq

    done = 0
    for p in parts.iterdir() if parts.exists() else ():
        if p.name.startswith(".") or (p.name.count(".") != 1 and not p.name.endswith(".error.json")):
            continue  # temporary files, MFI and statistics side parts
        if p.name.startswith("chunk-"):
            done += len(json.loads(pq.read_schema(p).metadata[b"phenoflow"])["files"])
        else:
            done += 1
    return done


@pytest.mark.parametrize("kill_after, executor", [(3, ["--in-process"]), (20, ["--in-process"]), (8, ["--workers", "2"])])
def test_sigkill_and_resume_equals_an_uninterrupted_run(archive, clean_run, tmp_path, kill_after, executor):
    fcs = archive["fcs"]
    clean = clean_run
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*PHENOFLOW, "gate", "--strategy", str(archive["strategy"]), "--fcs", str(fcs), "--out", str(out),
         *executor], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = out / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if _files_done(parts) >= kill_after:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _files_done(parts)
    assert done_before < 31, "the run finished before it could be killed"
    again = _run_cli(["gate", "--strategy", str(archive["strategy"]), "--fcs", str(fcs), "--out", str(out),
                      *executor])
    assert again.returncode == 1
    assert f"({done_before} from an earlier run)" in again.stdout
    for name in ("populations.parquet", "errors.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(clean / name))
    pops = pd.read_parquet(out / "populations.parquet")
    assert not pops.duplicated(["sample", "population"]).any()
    assert (pd.read_csv(out / "populations.csv")["count"] == pops["count"]).all()


def test_ctrl_c_stops_the_run_and_resume_equals_an_uninterrupted_run(archive, clean_run, tmp_path):
    """Ctrl-C (SIGINT) during gating on the default executor: one line, exit 1, no final table;
    the chunks not finished leave no part (or a partial file the next run removes), and the
    next run resumes to the uninterrupted run's tables."""
    fcs = archive["fcs"]
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [*PHENOFLOW, "gate", "--strategy", str(archive["strategy"]), "--fcs", str(fcs), "--out", str(out),
         "--workers", "2"], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Python's own handler
    parts = out / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and _files_done(parts) < 8:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    done_before = _files_done(parts)
    assert done_before < 31, "the run finished before it could be interrupted"
    assert proc.returncode == 1 and err.strip().splitlines()[-1] == "Aborted!", err
    assert not (out / "populations.parquet").exists() and not (out / "run.json").exists()
    again = _run_cli(["gate", "--strategy", str(archive["strategy"]), "--fcs", str(fcs), "--out", str(out),
                      "--workers", "2"])
    assert again.returncode == 1
    assert f"({done_before} from an earlier run)" in again.stdout
    for name in ("populations.parquet", "errors.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(clean_run / name))


def test_inputs_globs_lists_manifest_and_multi_dataset(archive, tmp_path):
    good = archive["good"]
    listing = tmp_path / "files.txt"
    listing.write_text("# two files\n" + "\n".join(str(p) for p in good[:2]) + "\n")
    assert [i.path for i in resolve_inputs([f"@{listing}"])] == [str(p) for p in good[:2]]
    assert [i.path for i in resolve_inputs([listing])] == [str(p) for p in good[:2]]
    globbed = resolve_inputs([str(archive["fcs"] / "P0*_pre.fcs")])
    assert all(Path(i.path).name.startswith("P0") for i in globbed) and globbed
    with pytest.raises(InputError, match="no files match"):
        resolve_inputs([str(tmp_path / "*.nothing")])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,patient,timepoint\n" + "\n".join(
        f"{p},{p.stem.split('_')[0]},{p.stem.split('_')[1]}" for p in good[:3]) + "\n")
    multi = tmp_path / "multi.fcs"
    multi.write_bytes(build_file([
        {"values": np.full((50, 2), 10 * (i + 1), dtype=np.uint64), "names": ["A", "B"]} for i in range(2)]))
    from gating import Dimension, RectangleGate, Strategy, write_gatingml

    xml = tmp_path / "s.xml"
    write_gatingml(Strategy(gates=(RectangleGate("Low", (Dimension("A"),), ((None, 15.0),)),)), xml)
    run = run_batch(xml, resolve_inputs([multi]), out_dir=tmp_path / "m", executor=ExecutorSpec(kind="inprocess"))
    assert run.populations["sample"].tolist() == ["multi", "multi#1"]
    assert run.populations["count"].tolist() == [50, 0]
    inputs = resolve_inputs(manifest=manifest)
    meta = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "meta",
                     executor=ExecutorSpec(kind="inprocess"), options=BatchOptions(h5ad=True))
    first = meta.populations[meta.populations["sample"] == good[0].stem]
    assert set(first["patient"]) == {good[0].stem.split("_")[0]}
    assert set(first["timepoint"]) == {good[0].stem.split("_")[1]}
    import anndata

    adata = anndata.read_h5ad(tmp_path / "meta" / "populations.h5ad")
    assert adata.shape == (3, first["population"].nunique())
    assert adata.obs["timepoint"].tolist() == [p.stem.split("_")[1] for p in good[:3]]
    col = list(adata.var_names).index(first["population"].iloc[3])
    assert adata.X[0, col] == first["count"].iloc[3]


def test_cli_dry_run_and_bad_arguments(archive, tmp_path):
    dry = _run_cli(["gate", "--strategy", "study_panel", "--fcs", str(archive["good"][0]), "--out",
                    str(tmp_path / "o"), "--dry-run"])
    assert dry.returncode == 0
    assert "/Lymphocytes/Singlets/Live/CD3+/CD8+/Tc17" in dry.stdout and "1 files" in dry.stdout
    assert not (tmp_path / "o").exists()
    both = _run_cli(["gate", "--strategy", "study_panel", "--fcs", "x.fcs", "--out", str(tmp_path / "o"),
                     "--in-process", "--slurm"])
    assert both.returncode == 2 and "choose one executor" in both.stderr
    none = _run_cli(["gate", "--strategy", "study_panel", "--out", str(tmp_path / "o")])
    assert none.returncode == 2 and "--fcs" in none.stderr


def test_progress_lines_off_a_terminal(archive, tmp_path):
    result = _run_cli(["gate", "--strategy", "study_panel", "--fcs", str(archive["good"][0]), "--fcs",
                       str(archive["good"][1]), "--out", str(tmp_path / "o"), "--in-process",
                       "--log-format", "json"])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines[-1]["done"] == 2 and lines[-1]["total"] == 2 and lines[-1]["failed"] == 0
    assert lines[-1]["events_per_s"] > 0


def test_numba_cache_dir_falls_back_on_read_only_installs(tmp_path):
    code = (
        "import os, importlib.util, engine.runtime._numba as n;"
        "spec = importlib.util.find_spec('gating');"
        "os.access = lambda p, m: False if p == os.path.dirname(spec.origin) else True;"
        "print(n.ensure_cache_dir(os.path.dirname(spec.origin))); print(os.environ['NUMBA_CACHE_DIR'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["TMPDIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    chosen, exported = out.stdout.split()
    assert chosen == exported and chosen.startswith(str(tmp_path)) and os.path.isdir(chosen)
    assert "not writable" in out.stderr


def test_flowjo_workspace_batch_uses_each_files_sample(tmp_path):
    from tests.conftest import CONFORMANCE, require_shared

    folder = require_shared(CONFORMANCE / "flowjo" / "simple_diamond_example")
    wsp = folder / "simple_diamond_example_quad_gate.wsp"
    fcs = folder / "test_data_diamond_01.fcs"
    stranger = write_fcs_copy = tmp_path / "not_in_workspace.fcs"
    write_fcs_copy.write_bytes(fcs.read_bytes())
    run = run_batch(wsp, resolve_inputs([fcs, stranger]), out_dir=tmp_path / "o",
                    executor=ExecutorSpec(kind="inprocess"))
    expected = pd.read_csv(CONFORMANCE / "flowjo" / "flowjo_population_counts.csv")
    expected = expected[(expected["wsp"] == "simple_diamond_example/simple_diamond_example_quad_gate.wsp")
                        & (expected["parent_path"] == "root")]
    got = run.populations.set_index("population")["count"]
    for row in expected.itertuples():
        assert got[f"/{row.population}"] == row.flowjo_count
    assert run.errors["path"].tolist() == [str(stranger)]
    assert "no sample" in run.errors["message"].iloc[0]


def test_folders_skip_hidden_apple_double_files(tmp_path):
    folder = tmp_path / "fcs"
    (folder / "nested").mkdir(parents=True)
    for name in ("b.fcs", "nested/a.FCS", "._b.fcs", "nested/._a.FCS", "readme.txt"):
        (folder / name).write_bytes(b"")
    expected = [folder / "b.fcs", folder / "nested" / "a.FCS"]
    assert list(expand_inputs([folder])) == expected
    assert [i.path for i in resolve_inputs([folder])] == [str(p) for p in expected]
    assert expand_inputs([folder, folder / "b.fcs"])[-1] == folder / "b.fcs"  # duplicates kept
    assert len(resolve_inputs([folder, folder / "b.fcs"])) == 2  # ... until resolved


def test_task_records_ship_to_dask_and_outcomes_reach_the_caller(archive, tmp_path):
    from distributed.protocol import deserialize, serialize

    inputs = resolve_inputs([archive["good"][0], archive["fcs"] / "zz_empty.fcs"])
    options = BatchOptions(mfi=(read_fcs(archive["good"][0]).names[0],))
    tasks, texts = prepare_batch(archive["strategy"], inputs, out_dir=tmp_path / "o", options=options)
    assert all(isinstance(t, BatchTask) and t.problem is None and not t.strategy for t in tasks)
    assert set(texts) == {t.strategy_hash for t in tasks}
    shipped = dataclasses.replace(tasks[0], strategy=texts[tasks[0].strategy_hash], threads=1)
    assert deserialize(*serialize(shipped)) == shipped  # what dask.distributed does to it
    with pytest.raises(dataclasses.FrozenInstanceError):
        shipped.threads = 2  # type: ignore[misc]
    outcomes: list[TaskOutcome] = []
    run = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "o",
                    executor=ExecutorSpec(kind="inprocess"), options=options, on_result=outcomes.append)
    good, bad = sorted(outcomes, key=lambda o: not o.ok)
    assert good.ok and good.error is None and good.n_events == 4000 and good.sample == inputs[0].name
    assert not bad.ok and bad.n_events == 0 and bad.error.error_type == "FCSTruncatedError"
    assert deserialize(*serialize(bad)) == bad
    on_disk = json.loads((tmp_path / "o" / "parts" / f"{bad.key}.error.json").read_text())
    assert list(on_disk) == ["path", "sample", "stat", "error_type", "message", "seconds"]
    assert ErrorRecord.from_dict(on_disk) == bad.error and bad.error.to_dict() == on_disk
    assert run.errors.to_dict("records") == [
        {"path": bad.path, "error_type": bad.error.error_type, "message": bad.error.message}]
    mfi = pd.read_parquet(tmp_path / "o" / "mfi.parquet")
    assert len(mfi) and set(mfi["sample"]) == {inputs[0].name}
    assert not [p for p in (tmp_path / "o").rglob("*") if ".partial" in p.name]


def test_events_and_stats_options_are_checked_and_sign_the_task(archive, tmp_path):
    with pytest.raises(ValueError, match="events"):
        BatchOptions(events="csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stats_channels needs stats"):
        BatchOptions(stats_channels=("CD3",))
    inputs = resolve_inputs([archive["good"][0]])
    plain, _ = prepare_batch(archive["strategy"], inputs, out_dir=tmp_path, options=BatchOptions())
    events, _ = prepare_batch(archive["strategy"], inputs, out_dir=tmp_path,
                              options=BatchOptions(events="h5ad", stats=True))
    assert events[0].events == "h5ad" and events[0].stats and not plain[0].events
    assert plain[0].key != events[0].key  # parts of a run without them are not reused


def test_events_and_stats_in_a_batch_with_failing_files(archive, tmp_path):
    import anndata

    inputs = resolve_inputs([archive["good"][0], archive["fcs"] / "zz_truncated.fcs"])
    run = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "o",
                    executor=ExecutorSpec(kind="inprocess"),
                    options=BatchOptions(events="h5ad", stats=True))
    assert len(run.errors) == 1
    stats = pd.read_parquet(tmp_path / "o" / "stats.parquet")
    assert list(stats["sample"]) == [inputs[0].name]
    events = list((tmp_path / "o" / "events").glob("*.h5ad"))
    assert [p.stem for p in events] == [inputs[0].name]
    adata = anndata.read_h5ad(events[0], backed="r")
    assert adata.n_obs == 4000
    adata.file.close()
    assert not [p for p in (tmp_path / "o").rglob("*") if ".partial" in p.name]
