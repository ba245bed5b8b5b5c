"""Batch gating of an FCS archive: phenoflow ``run_batch`` vs FlowKit ``Session``.

Two measurements, every configuration in a fresh process (the ``--one`` child mode):

* Throughput: an archive of ``--files`` 24-channel files of ``--events`` events each
  (:func:`benchmarks.bench_gating.make_file`, one seed per file) gated with the 11-gate
  Gating-ML strategy of :func:`benchmarks.bench_gating.strategy_xml`: by phenoflow's
  ``run_batch`` in-process and on a local Dask cluster of 1 and 2 workers, and by FlowKit's
  ``Session(...).analyze_samples(use_mp=True)``, once with the pool size FlowKit picks for
  itself and once with the pool forced to each worker count above 1. The wall time covers the
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
[--mem-files 100,1000] [--mem-events 5000]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import RESULTS, measure, peak_rss_mb, write_table

log = logging.getLogger("benchmarks.bench_batch")

THROUGHPUT_COLUMNS = [
    "configuration", "processes", "files", "events", "wall s", "files/s", "M events/s",
    "vs fastest FlowKit", "driver peak MiB", "tree peak MiB", "counts equal",
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
    """Imports and JIT cache loads, outside the timed section."""
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


def _phenoflow(mode: str, workers: int, folder: Path, xml: Path, out: Path) -> Any:
    from engine import ExecutorSpec, resolve_inputs, run_batch

    spec = (
        ExecutorSpec(kind="inprocess") if mode == "inprocess"
        else ExecutorSpec(kind="local", workers=workers)
    )
    return run_batch(str(xml), resolve_inputs([folder]), out_dir=out, executor=spec)


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
            if tool == "phenoflow":
                run = _phenoflow(mode, workers, folder, xml, Path(out))
            else:
                session, report = _flowkit(mode, workers, folder, xml)
            seconds = time.perf_counter() - start
        if tool == "phenoflow":
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
def _make_files(folder: Path, n_files: int, n_events: int, *, seed0: int) -> None:
    from benchmarks.bench_gating import make_file

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"s{i:05d}.fcs" for i in range(n_files)]
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1, mp_context=context) as pool:
        list(pool.map(make_file, paths, [n_events] * n_files, range(seed0, seed0 + n_files),
                      chunksize=8))


def _label(config: str, processes: int, executor: str) -> str:
    tool, mode, *_ = config.split(":")
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
    keys = sorted(set(counts) | set(reference))
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
    fk = [r["seconds"] for c, r in results.items() if c.startswith("flowkit") and "seconds" in r]
    rows = []
    for config, res in results.items():
        if "error" in res:
            rows.append({"configuration": config, "wall s": f"error: {res['error']}"})
            continue
        label = _label(config, res["processes"], res["executor"])
        s = res["seconds"]
        rows.append({
            "configuration": label, "processes": res["processes"], "files": res["files"],
            "events": f"{res['events']:,}", "wall s": f"{s:.2f}", "files/s": f"{res['files'] / s:.1f}",
            "M events/s": f"{res['events'] / s / 1e6:.2f}",
            "vs fastest FlowKit": f"{min(fk) / s:.1f}x" if fk else "",
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


def _configs(tools: list[str], workers: list[int], *, memory: bool) -> list[str]:
    configs: list[str] = []
    if "phenoflow" in tools:
        configs.append("phenoflow:inprocess")
        configs += [f"phenoflow:local:{w}" for w in ([max(workers)] if memory else workers)]
    if "flowkit" in tools:
        configs.append("flowkit:auto")
        pools = [w for w in ([max(workers)] if memory else workers) if w > 1]
        configs += [f"flowkit:pool:{w}" for w in pools]
        if not memory and (os.cpu_count() or 1) > 2:  # with 2 CPUs "auto" already runs serially
            configs.append("flowkit:serial")
    return configs


def main(argv: list[str] | None = None) -> int:
    """Generate the archives in a temporary folder, measure every configuration, write tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=5, metavar=("CONFIG", "FOLDER", "XML", "WARM", "INTERVAL"))
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--mem-files", default="100,1000")
    parser.add_argument("--mem-events", type=int, default=5_000)
    parser.add_argument("--tools", default="phenoflow,flowkit")
    parser.add_argument("--sections", default="throughput,memory")
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
            _make_files(root / "archive", args.files, args.events, seed0=0)
            log.info("wrote %d files of %d events in %.1f s", args.files, args.events, time.perf_counter() - start)
            results = _run_configs(_configs(tools, workers, memory=False), root / "archive", xml, warm,
                                   repeats=args.repeats, interval=args.interval)
            md = write_table(
                "batch_throughput", _throughput_rows(results), THROUGHPUT_COLUMNS,
                title=f"Batch throughput: {args.files} files x {args.events:,} events x 24 channels, "
                      f"11 gates (best of {args.repeats})",
            )
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
        f"Machine: {os.cpu_count()} CPUs. Command: `{command.strip()}`. Wall time: the whole batch "
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
