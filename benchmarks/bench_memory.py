"""Peak memory of gating a 50M-event file, as a multiple of the columns the plan uses.

Files: 50,000,000 events x 24 (4.8 GB) and x 48 (9.6 GB) float32 channels, FCS 3.1, written by
:func:`gating.write_fcs` chunk by chunk (the events are generated one 1M-event chunk at a time
as the writer asks for them, so the generator never holds the whole matrix). Strategies use
``k`` of the channels (k = 4 and 8; logicle transforms, a polygon, ranges, a rectangle and a
Boolean, no compensation), so the used columns are ``events x k x 4`` bytes.

Measurement: each case runs in a fresh process (``--one``) that imports phenoflow and warms
the Numba kernels on a small file, then records its resident memory, and samples
``/proc/self/status`` every 2 ms while it reads (memory-maps) and gates the big file:

- ``anon``: anonymous memory (``RssAnon``: numpy arrays, Numba scratch, Python objects), the
  memory gating allocates; reported as the peak above the warm baseline;
- ``file``: file-backed pages of the mapping that were touched (``RssFile``). A list-mode FCS
  file stores events row by row, so reading even one column touches every page of DATA: this
  is the whole file for any ``k``, but it is clean page cache that the kernel can drop at any
  time, not memory the process owns;
- ``VmHWM``: the kernel's peak total RSS of the process (anon + file + shmem).

Run: ``python -m benchmarks.bench_memory [--events N] [--channels 24,48] [--used 4,8]
[--dir DIR]`` (needs about 15 GB free in DIR; the files are deleted afterwards).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._harness import measure, write_table

CHUNK = 1_000_000


class _GeneratedEvents(np.ndarray):
    """An (events x channels) float32 array whose row slices are generated when asked for.

    :func:`gating.write_fcs` reads its input one slice of rows at a time; this view answers
    each slice from a fixed random tile, rotated by the slice's start, so writing a 9.6 GB file
    never holds more than one chunk. Any other use of the array is not supported.
    """

    _tile: np.ndarray | None = None

    def __getitem__(self, key: Any) -> np.ndarray:
        if not (isinstance(key, slice) and key.step in (None, 1)) or self._tile is None:
            raise TypeError("generated events support row slices only")
        lo, hi, _ = key.indices(self.shape[0])
        rows = (np.arange(lo, hi, dtype=np.int64) * 7 + lo // CHUNK) % len(self._tile)
        return np.take(self._tile, rows, axis=0)


def generated_events(n_events: int, n_channels: int, *, seed: int = 0) -> np.ndarray:
    """A lazily generated (n_events x n_channels) float32 event matrix for the writer."""
    rng = np.random.default_rng(seed)
    # drawn channel by channel: the first channels are the same whatever the channel count
    draws = rng.lognormal(6, 2, size=(n_channels, min(CHUNK, max(n_events, 1))))
    tile = np.ascontiguousarray(draws.T, dtype=np.float32)
    base = np.lib.stride_tricks.as_strided(
        np.zeros(n_channels, dtype=np.float32), shape=(n_events, n_channels), strides=(0, 4)
    )
    view = base.view(_GeneratedEvents)
    view._tile = tile
    return view


def channel_names(n_channels: int) -> list[str]:
    return [f"FL{i}-A" for i in range(1, n_channels + 1)]


def write_events_file(path: Path, n_events: int, n_channels: int, *, seed: int = 0) -> Path:
    """Write an ``n_events x n_channels`` float32 FCS file with phenoflow's writer."""
    from gating import write_fcs

    return write_fcs(path, generated_events(n_events, n_channels, seed=seed),
                     channel_names(n_channels))


def strategy_text(k: int) -> str:
    """A YAML strategy that uses channels FL1-A .. FL<k>-A (k >= 4) and nothing else."""
    if k < 4:
        raise ValueError("k must be at least 4")
    dims = "\n".join(f"  FL{i}-A: {{transform: fl}}" for i in range(1, k + 1))
    gates = [
        "  - name: P1",
        "    polygon: {dims: [FL1-A, FL2-A], vertices: "
        "[[0.3, 0.3], [0.9, 0.35], [0.85, 0.9], [0.35, 0.8]]}",
        "  - {name: P2, parent: P1, range: {dim: FL3-A, min: 0.5}}",
        "  - {name: R4, parent: P1, range: {dim: FL4-A, max: 0.55}}",
        "  - {name: B, parent: P1, boolean: \"P2 and not R4\"}",
    ]
    for i in range(5, k + 1, 2):
        j = min(i + 1, k)
        gates.append(f"  - {{name: Q{i}, parent: P2, rectangle: "
                     f"{{FL{i}-A: [0.45, null], FL{j}-A: [null, 0.7]}}}}")
    return ("phenoflow-strategy: 1\ntransforms:\n"
            "  fl: {type: logicle, T: 262144, W: 0.5, M: 4.5, A: 0}\n"
            f"dimensions:\n{dims}\ngates:\n" + "\n".join(gates) + "\n")


# ---- the measured child ----------------------------------------------------------------------
def _status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(rest.split()[0]) / 1024  # MiB
    return out


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _status()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = _status()
            for key, value in now.items():
                self.peak[key] = max(self.peak[key], value)
            time.sleep(0.002)


def run_one(path: Path, k: int) -> dict[str, Any]:
    from gating import apply_plan, compile_plan, read_fcs, read_strategy_yaml

    strategy = read_strategy_yaml(strategy_text(k), source=f"k={k}")
    n_channels = len(read_fcs(path).names)
    with tempfile.TemporaryDirectory() as tmp:  # warm the kernels on a small file
        warm = write_events_file(Path(tmp) / "warm.fcs", 200_000, n_channels, seed=1)
        sample = read_fcs(warm)
        apply_plan(compile_plan(strategy, sample), sample)
        del sample
    base = _status()
    sampler = _Sampler()
    sampler.start()
    start = time.perf_counter()
    sample = read_fcs(path)
    result = apply_plan(compile_plan(strategy, sample), sample)
    seconds = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    peak = sampler.peak
    end = _status()
    return {
        "seconds": seconds,
        "n_events": sample.n_events,
        "n_channels": n_channels,
        "k": k,
        "file_bytes": path.stat().st_size,
        "base": base,
        "peak": {**peak, "VmHWM": end["VmHWM"]},
        "counts": dict(zip(result.counts["population"], result.counts["count"].tolist(), strict=True)),
    }


# ---- the driver ------------------------------------------------------------------------------
def _row(res: dict[str, Any]) -> dict[str, str]:
    used = res["n_events"] * res["k"] * 4
    size = res["file_bytes"]
    mib = 1024 * 1024
    anon = res["peak"]["RssAnon"] - res["base"]["RssAnon"]
    file_pages = res["peak"]["RssFile"] - res["base"]["RssFile"]
    hwm_extra = res["peak"]["VmHWM"] - res["base"]["VmRSS"]
    return {
        "file": f"{res['n_events']:,} x {res['n_channels']} ({size / 1e9:.1f} GB)",
        "k used": str(res["k"]),
        "used columns MiB": f"{used / mib:.0f}",
        "gating s": f"{res['seconds']:.2f}",
        "anon peak +MiB": f"{anon:.0f}",
        "anon / used cols": f"{anon * mib / used:.2f}x",
        "anon / file": f"{anon * mib / size:.3f}x",
        "mapped pages +MiB": f"{file_pages:.0f}",
        "mapped / file": f"{file_pages * mib / size:.2f}x",
        "VmHWM +MiB": f"{hwm_extra:.0f}",
        "VmHWM / used cols": f"{hwm_extra * mib / used:.2f}x",
    }


COLUMNS = ["file", "k used", "used columns MiB", "gating s", "anon peak +MiB", "anon / used cols",
           "anon / file", "mapped pages +MiB", "mapped / file", "VmHWM +MiB", "VmHWM / used cols"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=2, metavar=("FCS", "K"))
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--channels", default="24,48")
    parser.add_argument("--used", default="4,8")
    parser.add_argument("--dir", default=None, help="Where to write the files (default: $TMPDIR).")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(Path(args.one[0]), int(args.one[1]))))
        return 0
    channels = [int(c) for c in args.channels.split(",")]
    used = [int(k) for k in args.used.split(",")]
    rows, raw = [], []
    with tempfile.TemporaryDirectory(prefix="phenoflow-memory-", dir=args.dir) as tmp:
        need = args.events * max(channels) * 4 + 2**30
        free = shutil.disk_usage(tmp).free
        if free < need:
            print(f"need {need / 1e9:.1f} GB free in {tmp}, have {free / 1e9:.1f} GB", file=sys.stderr)
            return 1
        for n_channels in channels:
            path = Path(tmp) / f"events_{n_channels}.fcs"
            t0 = time.perf_counter()
            write_events_file(path, args.events, n_channels)
            print(f"wrote {path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
            for k in used:
                res = measure("benchmarks.bench_memory", [str(path), str(k)], repeats=1,
                              timeout=3600)
                if "error" in res:
                    print(f"{n_channels} channels, k={k}: {res['error']}", file=sys.stderr)
                    continue
                raw.append(res)
                rows.append(_row(res))
                print(rows[-1], file=sys.stderr, flush=True)
            path.unlink()
    by_k: dict[int, list[dict[str, Any]]] = {}
    for res in raw:
        by_k.setdefault(res["k"], []).append(res)
    for k, results in by_k.items():  # the same gates on 24 and 48 channels: the same counts
        assert all(r["counts"] == results[0]["counts"] for r in results), f"k={k}: counts differ"
    md = write_table("memory", rows, COLUMNS,
                     title=f"Peak memory gating {args.events:,} events (fresh process per case)")
    (md.parent / "memory_raw.json").write_text(json.dumps(raw, indent=2))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
