"""Chunked batch tasks: one part per chunk, equal results, resume without loss or duplicates."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from engine import BatchOptions, ExecutorSpec, prepare_batch, resolve_inputs, run_batch
from engine._batch import gate_chunk
from engine._batch._run import _chunked


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Demo files with bad ones in between, so that chunks hold failures."""
    from engine.demo import make_demo_study

    root = tmp_path_factory.mktemp("chunks")
    study = make_demo_study(root / "study", n_events=2000, n_genes=100, n_patients=6,
                             n_biopsy_patients=4, missing_baseline_flow=0)
    fcs = root / "study" / "fcs"
    good = sorted(fcs.glob("*.fcs"))
    (fcs / "P02_zz_truncated.fcs").write_bytes(good[0].read_bytes()[:3000])
    (fcs / "P04_zz_text.fcs").write_text("not an FCS file\n")
    return {"fcs": fcs, "good": good, "strategy": study.strategy}


def _chunk_parts(out: Path) -> list[Path]:
    return sorted(p for p in (out / "parts").glob("chunk-*.parquet") if p.name.count(".") == 1)


def _frames(out: Path) -> dict[str, pd.DataFrame]:
    files = pd.read_parquet(out / "files.parquet").drop(columns=["seconds"])
    return {"populations": pd.read_parquet(out / "populations.parquet"),
            "errors": pd.read_parquet(out / "errors.parquet"), "files": files,
            "mfi": pd.read_parquet(out / "mfi.parquet"), "stats": pd.read_parquet(out / "stats.parquet")}


def _assert_same(a: Path, b: Path) -> None:
    left, right = _frames(a), _frames(b)
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)


def test_chunks_group_consecutive_files_within_bounds(archive: dict[str, Any], tmp_path: Path) -> None:
    inputs = resolve_inputs([archive["fcs"]])
    tasks, _ = prepare_batch(archive["strategy"], inputs, out_dir=tmp_path, options=BatchOptions())
    assert [c for c in _chunked(tasks, 0)] == [(t,) for t in tasks]  # in-process: per file
    chunks = _chunked(tasks, 2)
    assert [t for c in chunks for t in c] == tasks  # every file once, in input order
    assert len(chunks) >= min(len(tasks), 8) - 1 and max(map(len, chunks)) <= -(-len(tasks) // 8)
    big = [dataclasses.replace(t, stat=(200 << 20, 0)) for t in tasks]
    assert max(map(len, _chunked(big, 1))) == 1  # bounded by bytes too


def test_chunked_run_equals_per_file_run(archive: dict[str, Any], tmp_path: Path) -> None:
    inputs = resolve_inputs([archive["fcs"]])
    channel = "CD3"
    options = BatchOptions(mfi=(channel,), stats=True)
    per_file = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "a",
                         executor=ExecutorSpec(kind="inprocess"), options=options)
    chunked = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "b",
                        executor=ExecutorSpec(kind="local", workers=2), options=options)
    assert chunked.executor == "local Dask threaded scheduler, 2 threads"
    assert len(per_file.errors) == 2 and not _chunk_parts(tmp_path / "a")
    assert 1 < len(_chunk_parts(tmp_path / "b")) < len(inputs)
    _assert_same(tmp_path / "a", tmp_path / "b")
    errors = sorted(p.name for p in (tmp_path / "b" / "parts").glob("*.error.json"))
    assert len(errors) == 2  # failures are recorded per file, inside their chunks


def test_resume_mixes_chunk_and_file_parts_without_loss_or_duplicates(
    archive: dict[str, Any], tmp_path: Path,
) -> None:
    inputs = resolve_inputs([archive["fcs"]])
    clean = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "clean",
                      executor=ExecutorSpec(kind="inprocess"))
    out = tmp_path / "out"
    (out / "parts").mkdir(parents=True)
    tasks, texts = prepare_batch(archive["strategy"], inputs, out_dir=out, options=BatchOptions())
    shipped = [dataclasses.replace(t, strategy=texts[t.strategy_hash]) for t in tasks]
    # an earlier run finished a chunk of five files (one bad) and one file on its own
    outcomes = gate_chunk(shipped[1:6]) + gate_chunk(shipped[8:9])
    assert [o.key for o in outcomes] == [t.key for t in tasks[1:6] + tasks[8:9]]
    (chunk,) = _chunk_parts(out)
    listed = json.loads(pq.read_schema(chunk).metadata[b"phenoflow"])["files"]
    assert [f["key"] for f in listed] == [o.key for o in outcomes[:5] if o.ok]
    # and a damaged chunk part of other files, which must be redone
    (out / "parts" / "chunk-damaged.parquet").write_bytes(b"PAR1 not really")
    again = run_batch(archive["strategy"], inputs, out_dir=out, executor=ExecutorSpec(kind="local", workers=2))
    assert again.resumed == 6
    pops = again.populations
    assert not pops.duplicated(["sample", "population"]).any()
    pd.testing.assert_frame_equal(pops, clean.populations)
    pd.testing.assert_frame_equal(again.errors, clean.errors)


def test_a_changed_file_is_gated_again_and_its_old_rows_dropped(
    archive: dict[str, Any], tmp_path: Path,
) -> None:
    fcs = tmp_path / "fcs"
    fcs.mkdir()
    for p in archive["good"][:6]:
        (fcs / p.name).write_bytes(p.read_bytes())
    inputs = resolve_inputs([fcs])
    out = tmp_path / "out"
    first = run_batch(archive["strategy"], inputs, out_dir=out, executor=ExecutorSpec(kind="local", workers=1))
    assert _chunk_parts(out)
    before = first.populations  # read now: the property reads the file, rewritten below
    changed = Path(inputs[2].path)
    changed.write_bytes(archive["good"][7].read_bytes())  # other events, another size
    os.utime(changed, ns=(1, 1))
    again = run_batch(archive["strategy"], inputs, out_dir=out, executor=ExecutorSpec(kind="local", workers=1))
    assert again.resumed == 5
    pops = again.populations
    assert not pops.duplicated(["sample", "population"]).any()
    name = inputs[2].name
    old = before.set_index(["sample", "population"])["count"].loc[name]
    new = pops.set_index(["sample", "population"])["count"].loc[name]
    assert not old.equals(new)
    files = again.files.set_index("path")
    assert files.loc[str(changed), "size"] == changed.stat().st_size


def test_worker_processes_give_the_same_results(archive: dict[str, Any], tmp_path: Path) -> None:
    inputs = resolve_inputs(archive["good"][:4])
    threads = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "t",
                        executor=ExecutorSpec(kind="local", workers=1))
    processes = run_batch(archive["strategy"], inputs, out_dir=tmp_path / "p",
                          executor=ExecutorSpec(kind="local", workers=1, processes=True))
    assert processes.executor == "local Dask cluster, 1 workers (processes)"
    pd.testing.assert_frame_equal(threads.populations, processes.populations)
