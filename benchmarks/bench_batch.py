"""Batch gating of an FCS archive: the ``phenoflow gate`` command vs a plain loop vs FlowKit.

Measurements, every configuration in a fresh process (the ``--one`` child mode):

* Command vs loop vs FlowKit per file (``throughput``): an archive of ``--files`` files of
  ``--events`` events written in ``--layout`` (``flowio``: DATA where ``flowio.create_fcs``
  puts it, as instrument files; ``aligned``: phenoflow's writer). The whole ``phenoflow gate``
  command (a fresh interpreter: imports, executor start, listing, fingerprints, gating, part
  files, final tables) with 1 and 2 workers, as threads (the default) and as processes;
  ``run_batch`` in-process; a plain in-process loop over the same files (``read_fcs`` +
  ``compile_plan`` + ``apply_plan``, one thread, imports and kernels loaded before the clock:
  the floor the command is compared with); FlowKit's own cost per file
  (``Sample`` + ``GatingStrategy.gate_sample`` + report, serially on ``--flowkit-files`` files);
  and FlowKit's ``Session.analyze_samples`` on the whole archive (``--tools ...,flowkit``).
* Fingerprints (``hash``): XXH3-128 (over the mapping and by ``read()``), XXH3-64, CRC32,
  BLAKE2b, SHA-256 and ``stat`` only (size + mtime) over the archive's files.
* Many small files (``scale``): ``--scale-files`` files of ``--mem-events`` events; the cost
  per file of listing, preparing tasks (``stat``), fingerprinting, and the whole command,
  chunked (threads) and one part per file (in-process).

* Throughput: an archive of ``--files`` 24-channel files of ``--events`` events each
  (:func:`benchmarks.bench_gating.make_file`, one seed per file) gated with the 11-gate
  Gating-ML strategy of :func:`benchmarks.bench_gating.strategy_xml`: by phenoflow's
  ``run_batch`` in-process and on its default local executor (Dask's threaded scheduler) with
  1 and 2 threads, and by FlowKit's ``Session(...).analyze_samples(use_mp=True)``, once with
  the pool size FlowKit picks for itself and once with the pool forced to each worker count
  above 1. The wall time covers the
  whole batch: listing the files, starting the executor, reading, gating and writing the
  outputs (phenoflow) or building the report (FlowKit).
* Memory flatness: the same for 100 and 1,000 small files (``--mem-events`` events each): the
  peak resident set of the driver process (``VmHWM``) and of the whole process tree (driver,
  Dask nannies and workers, FlowKit's forkserver and pool processes: the sum of their
  ``VmRSS`` sampled every ``--interval`` seconds from ``/proc``; pages shared after a fork are
  counted once per process).

Imports and Numba cache loads happen before the timed section (a warm-up gating of a small
file outside the archive); Dask workers load the cache inside it, as in a real run. FlowKit's
forkserver preloads ``flowkit``, as it does for a script that imports FlowKit at top level.
Every count of every file and population is compared between the two tools.

Run: ``python -m benchmarks.bench_batch [--files 200] [--events 100000] [--workers 1,2]
[--layout flowio] [--sections throughput,hash,scale,memory] [--mem-files 100,1000]
[--mem-events 5000] [--scale-files 10000]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import RESULTS, measure, peak_rss_mb, user_env, write_table

log = logging.getLogger("benchmarks.bench_batch")

THROUGHPUT_COLUMNS = [
    "configuration", "workers", "files", "wall s", "ms/file", "x loop", "x FlowKit per file",
    "M events/s", "driver peak MiB", "tree peak MiB", "counts equal",
]
MEMORY_COLUMNS = [
    "configuration", "processes", "files", "wall s", "driver peak MiB", "tree peak MiB",
    "largest worker MiB", "driver growth MiB", "tree growth MiB", "counts equal",
]


# ---- process-tree memory -------------------------------------------------------------------
def _descendants(root: int) -> list[int]:
    """Every live descendant of ``root``, from the parent ids in ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        kids = children.get(stack.pop(), [])
        found.extend(kids)
        stack.extend(kids)
    return found


def _memory_kib(pid: int) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` of ``pid`` in KiB; zeros when it has gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class TreeMemory:
    """Peak summed resident set of this process and its descendants, sampled in a thread.

    Parameters
    ----------
    interval
        Seconds between samples.
    """

    def __init__(self, *, interval: float) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self.peak_processes = 0
        self.worker_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-memory", daemon=True)

    def __enter__(self) -> TreeMemory:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        me = os.getpid()
        others = _descendants(me)
        total = _memory_kib(me)[0]
        for pid in others:
            rss, hwm = _memory_kib(pid)
            total += rss
            self.worker_peak_mb = max(self.worker_peak_mb, hwm / 1024)
        self.peak_mb = max(self.peak_mb, total / 1024)
        self.peak_processes = max(self.peak_processes, 1 + len(others))


# ---- child: one configuration --------------------------------------------------------------
def _setup(tool: str, mode: str, warm: Path, xml: Path) -> None:
    """Imports and JIT cache loads, outside the timed section (none for the command: a fresh
    interpreter pays them, as a user does)."""
    if tool == "phenoflow" and mode.startswith("command"):
        return
    if tool == "phenoflow":
        from engine import run_batch  # noqa: F401
        from gating import apply_plan, compile_plan, load_strategy, read_fcs

        sample = read_fcs(warm)
        apply_plan(compile_plan(load_strategy(xml), sample), sample)
        if mode == "local":
            import distributed  # noqa: F401
    else:
        import flowkit

        multiprocessing.set_forkserver_preload(["flowkit"])
        flowkit.parse_gating_xml(str(xml))


def _command(mode: str, workers: int, folder: Path, xml: Path, out: Path) -> dict[str, Any]:
    """``phenoflow gate`` in a fresh interpreter, as a user runs it."""
    import subprocess

    args = [sys.executable, "-m", "engine.cli", "gate", "--strategy", str(xml), "--fcs", str(folder),
            "--out", str(out), "--workers", str(workers)]
    if mode == "command-processes":
        args.append("--worker-processes")
    proc = subprocess.run(args, capture_output=True, text=True, check=False, env=user_env())
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1:])
    return {"executor": proc.stdout.strip().splitlines()[-1].split(" on ", 1)[-1].split(" -> ")[0]}


def _loop(folder: Path, xml: Path) -> dict[str, Any]:
    """The floor: read, compile and gate each file in this process, one thread, counts only."""
    from gating import apply_plan, compile_plan, load_strategy, read_fcs

    strategy = load_strategy(xml)
    counts: dict[str, int] = {}
    events = n = 0
    for path in sorted(folder.glob("*.fcs")):
        sample = read_fcs(path)
        result = apply_plan(compile_plan(strategy, sample), sample, threads=1)
        counts.update({f"{path.stem}/{g}": int(c) for g, c in zip(result.counts["id"], result.counts["count"],
                                                                  strict=True)})
        events += sample.n_events
        n += 1
    return {"files": n, "events": events, "errors": 0, "executor": "1 thread", "counts": counts}


def _flowkit_per_file(folder: Path, xml: Path, limit: int) -> dict[str, Any]:
    """FlowKit's cost per file: read the sample, gate it, build its report, file by file."""
    import flowkit

    strategy = flowkit.parse_gating_xml(str(xml))
    counts: dict[str, int] = {}
    events = n = 0
    for path in sorted(folder.glob("*.fcs"))[:limit]:
        sample = flowkit.Sample(str(path))
        report = strategy.gate_sample(sample).report
        counts.update({f"{path.stem}/{g}": int(c) for g, c in zip(report["gate_name"], report["count"],
                                                                  strict=True)})
        events += sample.event_count
        n += 1
    return {"files": n, "events": events, "errors": 0, "executor": "1 process", "counts": counts}


def _phenoflow(mode: str, workers: int, folder: Path, xml: Path, out: Path) -> Any:
    from engine import ExecutorSpec, resolve_inputs, run_batch

    spec = (
        ExecutorSpec(kind="inprocess") if mode == "inprocess"
        else ExecutorSpec(kind="local", workers=workers)
    )
    return run_batch(str(xml), resolve_inputs([folder]), out_dir=out, executor=spec)


class _Finished:
    """What ``_phenoflow_summary`` reads, from a finished command's output folder."""

    def __init__(self, out: Path) -> None:
        import pandas as pd

        self.populations = pd.read_parquet(out / "populations.parquet")
        self.files = pd.read_parquet(out / "files.parquet")
        self.errors = pd.read_parquet(out / "errors.parquet")
        self.executor = ""


def _phenoflow_summary(run: Any) -> dict[str, Any]:
    pops = run.populations
    return {
        "files": len(run.files),
        "events": int(run.files["n_events"].sum()),
        "errors": len(run.errors),
        "executor": run.executor,
        "median_file_s": float(run.files["seconds"].median()),
        "counts": {f"{s}/{g}": int(c) for s, g, c in zip(pops["sample"], pops["id"], pops["count"], strict=True)},
    }


def _flowkit(mode: str, workers: int, folder: Path, xml: Path) -> tuple[Any, Any]:
    import flowkit
    from flowkit._utils import gating_utils

    if mode == "pool":  # FlowKit sizes its pool itself; force the size being compared
        gating_utils._estimate_cpu_count_for_workload = lambda *_: workers
    session = flowkit.Session(gating_strategy=str(xml), fcs_samples=str(folder))
    session.analyze_samples(use_mp=mode != "serial")
    return session, session.get_analysis_report()


def _flowkit_summary(mode: str, workers: int, session: Any, report: Any) -> dict[str, Any]:
    from flowkit._utils import gating_utils

    samples = list(session.sample_lut.values())
    n = len(samples)
    if mode == "serial" or n < 2:
        processes = 1
    elif mode == "pool":
        processes = min(workers, n)
    else:  # what gate_samples decides: cpu_count - 1, capped by its memory estimate
        chosen = gating_utils._estimate_cpu_count_for_workload(
            n, sum(s.event_count * len(s.pnn_labels) for s in samples)
        )
        processes = min(chosen, n) if chosen > 1 else 1
    counts = {
        f"{sid.removesuffix('.fcs')}/{gate}": int(c)
        for sid, gate, c in zip(report["sample_id"], report["gate_name"], report["count"], strict=True)
    }
    return {
        "files": n, "events": int(sum(s.event_count for s in samples)), "errors": 0,
        "executor": f"{processes} process(es)", "processes": processes, "counts": counts,
    }


def run_one(config: str, folder: Path, xml: Path, warm: Path, interval: float) -> dict[str, Any]:
    """Gate ``folder`` with one configuration (``tool:mode[:workers]``); time and memory."""
    tool, mode, *rest = config.split(":")
    workers = int(rest[0]) if rest else 1
    start = time.perf_counter()
    _setup(tool, mode, warm, xml)
    setup = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="bench-batch-out-", dir=folder.parent) as out:
        with TreeMemory(interval=interval) as tree:
            start = time.perf_counter()
            if mode == "loop":
                summary = _loop(folder, xml)
            elif mode == "perfile":
                summary = _flowkit_per_file(folder, xml, workers)
            elif mode.startswith("command"):
                summary = _command(mode, workers, folder, xml, Path(out))
            elif tool == "phenoflow":
                run = _phenoflow(mode, workers, folder, xml, Path(out))
            else:
                session, report = _flowkit(mode, workers, folder, xml)
            seconds = time.perf_counter() - start
        if mode.startswith("command"):
            from engine.runtime import default_threads

            executor = summary["executor"]
            summary = _phenoflow_summary(_Finished(Path(out)))
            summary.update(executor=executor, processes=min(workers, default_threads()))
        elif mode in ("loop", "perfile"):
            summary["processes"] = 1
        elif tool == "phenoflow":
            summary = _phenoflow_summary(run)
            summary["processes"] = 1 if mode == "inprocess" else workers
        else:
            summary = _flowkit_summary(mode, workers, session, report)
    return {
        "seconds": seconds, "setup_seconds": setup, "peak_rss_mb": peak_rss_mb(),
        "tree_peak_mb": tree.peak_mb, "tree_processes": tree.peak_processes,
        "worker_peak_mb": tree.worker_peak_mb, **summary,
    }


# ---- driver ---------------------------------------------------------------------------------
def _make_files(folder: Path, n_files: int, n_events: int, *, seed0: int, layout: str = "aligned") -> None:
    from benchmarks.bench_gating import make_layout

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"s{i:05d}.fcs" for i in range(n_files)]
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1, mp_context=context) as pool:
        list(pool.map(make_layout, paths, [n_events] * n_files, [layout] * n_files,
                      range(seed0, seed0 + n_files), chunksize=8))


def _label(config: str, processes: int, executor: str) -> str:
    tool, mode, *_ = config.split(":")
    if mode == "loop":
        return "loop in one process: read_fcs + compile_plan + apply_plan (1 thread)"
    if mode == "perfile":
        return f"FlowKit per file: Sample + gate_sample + report ({processes} process)"
    if mode.startswith("command"):
        return f"`phenoflow gate` command, {executor}"
    if tool == "phenoflow":
        return f"phenoflow run_batch, {executor}"
    return {
        "auto": f"FlowKit Session, use_mp=True (FlowKit picks {processes})",
        "pool": f"FlowKit Session, use_mp=True, pool of {processes}",
        "serial": "FlowKit Session, use_mp=False",
    }[mode]


def _agreement(counts: dict[str, int], reference: dict[str, int] | None, label: str) -> str:
    if not reference:
        return ""
    keys = sorted(set(counts) & set(reference))  # FlowKit's per-file run covers a subset
    agree = sum(counts.get(k) == reference.get(k) for k in keys)
    differ = [(k, counts.get(k), reference.get(k)) for k in keys if counts.get(k) != reference.get(k)]
    if differ:
        log.warning("%s: %d counts differ from the other tool, e.g. %s", label, len(differ), differ[:5])
    return f"{agree}/{len(keys)}"


def _run_configs(
    configs: list[str], folder: Path, xml: Path, warm: Path, *, repeats: int, interval: float,
) -> dict[str, dict[str, Any]]:
    results = {}
    for config in configs:
        res = measure(
            "benchmarks.bench_batch", [config, str(folder), str(xml), str(warm), str(interval)],
            repeats=repeats,
        )
        results[config] = res
        log.info("%s on %s: %s", config, folder.name,
                 {k: v for k, v in res.items() if k != "counts"})
    return results


def _references(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, int] | None]:
    """For each tool, the other tool's counts (its first successful configuration)."""
    first = {
        tool: next((r["counts"] for c, r in results.items() if c.startswith(tool) and "counts" in r), None)
        for tool in ("phenoflow", "flowkit")
    }
    return {"phenoflow": first["flowkit"], "flowkit": first["phenoflow"]}


def _throughput_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    refs = _references(results)
    per_file = {mode: r["seconds"] / r["files"] for c, r in results.items() if "seconds" in r
                for mode in [c.split(":")[1]] if mode in ("loop", "perfile")}
    rows = []
    for config, res in results.items():
        if "error" in res:
            rows.append({"configuration": config, "wall s": f"error: {res['error']}"})
            continue
        label = _label(config, res["processes"], res["executor"])
        s = res["seconds"]
        ms = s / res["files"]
        rows.append({
            "configuration": label, "workers": res["processes"], "files": res["files"],
            "wall s": f"{s:.2f}", "ms/file": f"{ms * 1e3:.1f}",
            "x loop": f"{ms / per_file['loop']:.2f}" if "loop" in per_file else "",
            "x FlowKit per file": f"{per_file['perfile'] / ms:.1f}x" if "perfile" in per_file else "",
            "M events/s": f"{res['events'] / s / 1e6:.2f}",
            "driver peak MiB": f"{res['peak_rss_mb']:.0f}", "tree peak MiB": f"{res['tree_peak_mb']:.0f}",
            "counts equal": _agreement(res["counts"], refs[config.split(":")[0]], label),
        })
    return rows


def _memory_rows(by_size: dict[int, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    sizes = sorted(by_size)
    configs = list(dict.fromkeys(c for results in by_size.values() for c in results))
    for config in configs:
        base = by_size[sizes[0]].get(config, {})
        for size in sizes:
            results = by_size[size]
            res = results.get(config, {"error": "not run"})
            if "error" in res:
                rows.append({"configuration": config, "files": size, "wall s": f"error: {res['error']}"})
                continue
            label = _label(config, res["processes"], res["executor"])
            grow = size != sizes[0] and "peak_rss_mb" in base
            rows.append({
                "configuration": label, "processes": res["processes"], "files": res["files"],
                "wall s": f"{res['seconds']:.2f}", "driver peak MiB": f"{res['peak_rss_mb']:.0f}",
                "tree peak MiB": f"{res['tree_peak_mb']:.0f}",
                "largest worker MiB": f"{res['worker_peak_mb']:.0f}" if res["processes"] > 1 else "",
                "driver growth MiB": f"{res['peak_rss_mb'] - base['peak_rss_mb']:+.0f}" if grow else "",
                "tree growth MiB": f"{res['tree_peak_mb'] - base['tree_peak_mb']:+.0f}" if grow else "",
                "counts equal": _agreement(res["counts"], _references(results)[config.split(":")[0]], label),
            })
    return rows


def _configs(tools: list[str], workers: list[int], *, memory: bool, flowkit_files: int = 20) -> list[str]:
    configs: list[str] = []
    if "phenoflow" in tools and not memory:
        configs.append("phenoflow:loop")
        configs += [f"phenoflow:command:{w}" for w in workers]
        configs += [f"phenoflow:command-processes:{w}" for w in workers]
        configs.append("phenoflow:inprocess")
    elif "phenoflow" in tools:
        configs.append("phenoflow:inprocess")
        configs += [f"phenoflow:local:{max(workers)}"]
    if "flowkit" in tools and not memory:
        configs.append(f"flowkit:perfile:{flowkit_files}")
    if "flowkit-session" in tools or ("flowkit" in tools and memory):
        configs.append("flowkit:auto")
        pools = [w for w in ([max(workers)] if memory else workers) if w > 1]
        configs += [f"flowkit:pool:{w}" for w in pools]
    return configs


# ---- fingerprints and many small files -------------------------------------------------------
HASH_COLUMNS = ["fingerprint", "how", "ms/file", "GB/s", "what it proves"]
SCALE_COLUMNS = ["step", "files", "seconds", "ms/file", "note"]


def _hash_rows(folder: Path, repeats: int) -> list[dict[str, Any]]:
    """Each fingerprint over every file of ``folder`` (page cache warm), best of ``repeats``."""
    import hashlib
    import mmap
    import zlib

    import xxhash

    from engine import file_fingerprint

    paths = sorted(folder.glob("*.fcs"))
    total = sum(p.stat().st_size for p in paths)

    def by_read(make: Any) -> Any:
        def run(path: Path) -> None:
            h = make()
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
        return run

    def by_map(make: Any) -> Any:
        def run(path: Path) -> None:
            h = make()
            with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                h.update(view)
        return run

    class Crc:
        def __init__(self) -> None:
            self.value = 0

        def update(self, data: Any) -> None:
            self.value = zlib.crc32(data, self.value)

    cases = [
        ("XXH3-128 (phenoflow)", "mmap", lambda p: file_fingerprint(str(p)), "the exact bytes gated"),
        ("XXH3-128", "read() 4 MiB", by_read(xxhash.xxh3_128), "the exact bytes gated"),
        ("XXH3-64", "mmap", by_map(xxhash.xxh3_64), "the bytes (64-bit: collisions at ~4e9 files)"),
        ("CRC32", "mmap", by_map(Crc), "error detection only"),
        ("BLAKE2b", "mmap", by_map(hashlib.blake2b), "the bytes, cryptographic"),
        ("SHA-256", "mmap", by_map(hashlib.sha256), "the bytes, cryptographic"),
        ("size + mtime", "stat()", lambda p: p.stat(), "nothing about the content"),
    ]
    rows = []
    for name, how, fn, proves in cases:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for path in paths:
                fn(path)
            best = min(best, time.perf_counter() - start)
        rows.append({"fingerprint": name, "how": how, "ms/file": f"{best / len(paths) * 1e3:.2f}",
                     "GB/s": f"{total / best / 1e9:.1f}", "what it proves": proves})
    return rows


def _scale_rows(folder: Path, xml: Path, repeats: int) -> list[dict[str, Any]]:
    """Per-file costs of the driver and of the outputs with many small files."""
    import subprocess

    from engine import BatchOptions, file_fingerprint, finished_files, prepare_batch, resolve_inputs
    from gating import load_strategy

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    strategy = load_strategy(xml)
    n = len(list(folder.glob("*.fcs")))
    out = folder.parent / "scale-out"
    rows = []

    def add(step: str, seconds: float, note: str = "") -> None:
        rows.append({"step": step, "files": n, "seconds": f"{seconds:.2f}",
                     "ms/file": f"{seconds / n * 1e3:.3f}", "note": note})

    add("list the folder (resolve_inputs)", best(lambda: resolve_inputs([folder])), "recursive scan, sorted")
    inputs = resolve_inputs([folder])
    add("prepare tasks (stat + key per file)",
        best(lambda: prepare_batch(strategy, inputs, out_dir=out, options=BatchOptions())), "")
    add("fingerprint (XXH3-128)", best(lambda: [file_fingerprint(i.path) for i in inputs]),
        f"{sum(os.path.getsize(i.path) for i in inputs[:100]) / 100 / 1e3:.0f} kB per file")
    for label, extra in (("threads, chunked parts", ["--workers", "2"]),
                         ("in-process, one part per file", ["--in-process"])):
        def command(extra: list[str] = extra, *, fresh: bool = True) -> None:
            if fresh:
                shutil.rmtree(out, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "engine.cli", "gate", "--strategy", str(xml), "--fcs",
                            str(folder), "--out", str(out), *extra], capture_output=True, check=True)
        add(f"whole `phenoflow gate` command, {label}", best(command),
            f"{len(list((out / 'parts').iterdir()))} part files")
        tasks, _ = prepare_batch(strategy, inputs, out_dir=out, options=BatchOptions())
        add(f"resume check (index of the parts), {label}", best(lambda tasks=tasks: finished_files(tasks, out / "parts")),
            "what a rerun does before gating")
        add(f"rerun with everything done, {label}", best(lambda command=command: command(fresh=False)),
            "start, listing, index, final tables")
    shutil.rmtree(out, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Generate the archives in a temporary folder, measure every configuration, write tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=5, metavar=("CONFIG", "FOLDER", "XML", "WARM", "INTERVAL"))
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--mem-files", default="100,1000")
    parser.add_argument("--mem-events", type=int, default=5_000)
    parser.add_argument("--layout", default="flowio", help="aligned (our writer) or flowio (instrument-like)")
    parser.add_argument("--flowkit-files", type=int, default=20, help="files FlowKit gates for its per-file cost")
    parser.add_argument("--scale-files", type=int, default=10_000)
    parser.add_argument("--tools", default="phenoflow,flowkit")
    parser.add_argument("--sections", default="throughput,hash,scale")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.1, help="process-tree sampling period (s)")
    args = parser.parse_args(argv)
    if args.one:
        config, folder, xml, warm, interval = args.one
        result = run_one(config, Path(folder), Path(xml), Path(warm), float(interval))
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from benchmarks.bench_gating import make_file, strategy_xml

    tools = args.tools.split(",")
    workers = [int(w) for w in args.workers.split(",")]
    sections = args.sections.split(",")
    parts = []
    with tempfile.TemporaryDirectory(prefix="phenoflow-batch-") as tmp:
        root = Path(tmp)
        xml = root / "strategy.xml"
        xml.write_text(strategy_xml())
        warm = root / "warm.fcs"
        make_file(warm, 20_000, seed=99_999)
        if "throughput" in sections:
            start = time.perf_counter()
            _make_files(root / "archive", args.files, args.events, seed0=0, layout=args.layout)
            log.info("wrote %d files of %d events in %.1f s", args.files, args.events, time.perf_counter() - start)
            results = _run_configs(_configs(tools, workers, memory=False, flowkit_files=args.flowkit_files),
                                   root / "archive", xml, warm, repeats=args.repeats, interval=args.interval)
            md = write_table(
                "batch_throughput", _throughput_rows(results), THROUGHPUT_COLUMNS,
                title=f"Batch: {args.files} files x {args.events:,} events x 24 channels ({args.layout} layout), "
                      f"11 gates (best of {args.repeats}; x loop: time per file over the loop's)",
            )
            parts.append(md.read_text())
            md.unlink()
        if "hash" in sections:
            if not (root / "archive").exists():
                _make_files(root / "archive", args.files, args.events, seed0=0, layout=args.layout)
            md = write_table("batch_hash", _hash_rows(root / "archive", max(3, args.repeats)), HASH_COLUMNS,
                             title=f"File fingerprints over the {args.files} archive files (warm page cache, "
                                   f"best of {max(3, args.repeats)})")
            parts.append(md.read_text())
            md.unlink()
        if "scale" in sections:
            start = time.perf_counter()
            distinct = min(args.scale_files, 100)  # then copied: listing and writing cost the same
            _make_files(root / "many", distinct, args.mem_events, seed0=200_000, layout=args.layout)
            for i in range(distinct, args.scale_files):
                shutil.copyfile(root / "many" / f"s{i % distinct:05d}.fcs", root / "many" / f"s{i:05d}.fcs")
            log.info("wrote %d files in %.1f s", args.scale_files, time.perf_counter() - start)
            md = write_table("batch_scale", _scale_rows(root / "many", xml, args.repeats), SCALE_COLUMNS,
                             title=f"Many small files: {args.scale_files:,} files x {args.mem_events:,} events "
                                   f"(best of {args.repeats})")
            parts.append(md.read_text())
            md.unlink()
        if "memory" in sections:
            sizes = sorted(int(n) for n in args.mem_files.split(","))
            pool = root / "small"
            _make_files(pool, sizes[-1], args.mem_events, seed0=100_000)
            by_size = {}
            for size in sizes:
                folder = root / f"mem{size}"
                folder.mkdir()
                for i in range(size):
                    os.link(pool / f"s{i:05d}.fcs", folder / f"s{i:05d}.fcs")
                by_size[size] = _run_configs(_configs(tools, workers, memory=True), folder, xml, warm,
                                             repeats=args.repeats, interval=args.interval)
            md = write_table(
                "batch_memory", _memory_rows(by_size), MEMORY_COLUMNS,
                title=f"Batch memory: {' vs '.join(f'{n:,}' for n in sizes)} files x "
                      f"{args.mem_events:,} events (growth: vs {sizes[0]:,} files)",
            )
            parts.append(md.read_text())
            md.unlink()
    command = "python -m benchmarks.bench_batch " + " ".join(sys.argv[1:] if argv is None else argv)
    notes = (
        f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end. "
        f"Command: `{command.strip()}`. Wall time: the whole batch "
        "(executor start, read, gate, outputs/report). Driver peak: VmHWM of the process that runs "
        f"the batch; tree peak: summed VmRSS of it and its descendants sampled every {args.interval} s. "
        "Counts equal: file x population counts equal to the other tool's.\n"
    )
    out = RESULTS / "batch.md"
    out.write_text("\n".join(parts) + "\n" + notes)
    sys.stdout.write(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
