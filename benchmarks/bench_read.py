"""FCS reading: phenoflow vs flowio vs FlowKit vs ``np.fromfile`` of the same bytes.

Cases: a 10M-event x 24-channel float32 FCS 3.1 file (with and without a Time channel that
needs ``$TIMESTEP`` scaling) and an int16 FCS 2.0 file (big-endian, log-amplified channels).
Each tool produces the preprocessed event matrix and makes one pass over it (a sum), in a
fresh process, page cache warm; best of three; peak RSS of the whole process. Imports and
Numba cache loads happen in a warm-up read of a small file and are reported separately.

Run: ``python -m benchmarks.bench_read [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import measure, peak_rss_mb, write_table

TOOLS = ("numpy.fromfile", "phenoflow", "flowio", "flowkit")


def make_float_file(path: Path, n_events: int, *, with_time: bool) -> None:
    from gating import write_fcs

    rng = np.random.default_rng(0)
    names = [f"FL{i}-A" for i in range(1, 24)] + (["Time"] if with_time else ["FL24-A"])
    chunk = 1_000_000
    events = np.empty((n_events, 24), dtype=np.float32)
    for lo in range(0, n_events, chunk):
        hi = min(lo + chunk, n_events)
        events[lo:hi] = rng.lognormal(6, 2, size=(hi - lo, 24)).astype(np.float32)
    if with_time:
        events[:, -1] = np.arange(n_events, dtype=np.float32)
    meta = {"$TIMESTEP": "0.01"} if with_time else {}
    write_fcs(path, events, names, metadata=meta)


def make_int16_fcs2(path: Path, n_events: int) -> None:
    """An FCS 2.0 file of 16-bit big-endian integers, 8 channels, four log-amplified."""
    rng = np.random.default_rng(1)
    values = rng.integers(0, 1024, size=(n_events, 8), dtype=np.uint16)
    keywords = {"$BYTEORD": "4,3,2,1", "$DATATYPE": "I", "$MODE": "L", "$PAR": "8",
                "$TOT": str(n_events), "$NEXTDATA": "0"}
    for i in range(1, 9):
        keywords |= {f"$P{i}N": f"FL{i}-H", f"$P{i}B": "16", f"$P{i}R": "1024",
                     f"$P{i}E": "4,1" if i > 4 else "0,0"}
    text = ("/" + "/".join(f"{k}/{v}" for k, v in keywords.items()) + "/").encode()
    begin = 256 + len(text)
    end = begin + values.nbytes - 1
    header = b"FCS2.0    " + b"".join(f"{v:>8d}".encode() for v in (256, begin - 1, begin, end, 0, 0))
    with open(path, "wb") as fh:
        fh.write(header + b" " * (256 - len(header)) + text)
        values.astype(">u2").tofile(fh)


def _data_segment(path: Path) -> tuple[int, int, str]:
    from gating import read_fcs

    data = read_fcs(path)
    dtype = data.raw.dtype.str
    return data._layout.start, data.n_events * data.n_channels, dtype


def _reader(tool: str):
    """The tool's read function, imported (and JIT-loaded) outside the timed section."""
    if tool == "numpy.fromfile":

        def read(path: Path) -> np.ndarray:
            offset, count, dtype = _data_segment(path)
            return np.fromfile(path, dtype=dtype, count=count, offset=offset)

        return read
    if tool == "phenoflow":
        from gating import read_fcs

        return lambda path: read_fcs(path).events
    if tool == "flowio":
        import flowio

        return lambda path: flowio.FlowData(str(path)).as_array(preprocess=True)
    if tool == "flowkit":
        import flowkit

        return lambda path: flowkit.Sample(str(path)).get_events(source="raw")
    raise ValueError(tool)


def run_one(tool: str, path: Path) -> dict:
    start = time.perf_counter()
    read = _reader(tool)
    # warm-up on a small file of the same layout: imports and JIT cache loads happen here
    small = path.with_name(f"warm-{path.name}")
    if not small.exists():
        if "i16" in path.name:
            make_int16_fcs2(small, 1000)
        else:
            make_float_file(small, 1000, with_time="t" in path.stem)
    float(np.add.reduce(read(small), axis=None, dtype=np.float64))
    setup = time.perf_counter() - start
    if tool == "numpy.fromfile":
        offset, count, dtype = _data_segment(path)  # the TEXT parse is not numpy's cost

        def read(p: Path) -> np.ndarray:
            return np.fromfile(p, dtype=dtype, count=count, offset=offset)

    start = time.perf_counter()
    arr = read(path)
    total = float(np.add.reduce(arr, axis=None, dtype=np.float64))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "setup_seconds": setup, "peak_rss_mb": peak_rss_mb(), "checksum": total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "FILE"))
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--int-events", type=int, default=2_000_000)
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], Path(args.one[1]))))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="phenoflow-bench-") as tmp:
        cases = {
            f"{args.events:,} x 24 float32 (FCS 3.1)": (Path(tmp) / "f32.fcs", "float"),
            f"{args.events:,} x 24 float32 + Time/$TIMESTEP": (Path(tmp) / "f32t.fcs", "time"),
            f"{args.int_events:,} x 8 int16 big-endian (FCS 2.0)": (Path(tmp) / "i16.fcs", "int"),
        }
        for label, (path, kind) in cases.items():
            if kind == "int":
                make_int16_fcs2(path, args.int_events)
            else:
                make_float_file(path, args.events, with_time=kind == "time")
            base = None
            for tool in args.tools.split(","):
                res = measure("benchmarks.bench_read", [tool, str(path)])
                if "error" in res:
                    rows.append({"case": label, "tool": tool, "seconds": f"error: {res['error']}"})
                    continue
                base = res["seconds"] if tool == "numpy.fromfile" else base
                rows.append(
                    {
                        "case": label,
                        "tool": tool,
                        "seconds": f"{res['seconds']:.3f}",
                        "x fromfile": f"{res['seconds'] / base:.2f}" if base else "",
                        "peak RSS MiB": f"{res['peak_rss_mb']:.0f}",
                        "import+JIT s": f"{res['setup_seconds']:.2f}",
                        "checksum": f"{res['checksum']:.6e}",
                    }
                )
                print(rows[-1], file=sys.stderr, flush=True)
            path.unlink()
    md = write_table(
        "read", rows, ["case", "tool", "seconds", "x fromfile", "peak RSS MiB", "import+JIT s", "checksum"],
        title="FCS read: preprocessed event matrix + one pass over it (best of 3, warm cache)",
    )
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
