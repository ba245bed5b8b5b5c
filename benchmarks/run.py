"""Run every benchmark and collect their Markdown tables in ``benchmarks/results/README.md``.

Run: ``python -m benchmarks.run [--quick] [--only read,gating,batch,expression]`` (``make bench``).
Long or disk-heavy runs stay separate: ``bench_expression --zarr``, ``bench_memory`` (50M events)
and ``fuzz_fcs``.
``--quick`` uses small sizes to check that everything runs (minutes, not tens of minutes);
the numbers quoted in the README come from the default sizes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks._harness import RESULTS

BENCHMARKS = {
    "read": ("benchmarks.bench_read", ["--events", "500000", "--int-events", "200000"]),
    "gating": ("benchmarks.bench_gating", ["--events", "200000", "--repeats", "1", "--no-set3"]),
    "batch": (
        "benchmarks.bench_batch",
        ["--files", "20", "--events", "20000", "--mem-files", "10,30", "--mem-events", "2000"],
    ),
    "expression": (
        "benchmarks.bench_expression",
        ["--genes", "5000", "--samples", "50", "--de-genes", "2000", "--repeats", "1"],
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only.split(","):
        module, quick = BENCHMARKS[name]
        cmd = [sys.executable, "-m", module, *(quick if args.quick else [])]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
    tables = sorted(p for p in RESULTS.glob("*.md") if p.name != "README.md")
    summary = RESULTS / "README.md"
    summary.write_text("\n".join(Path(t).read_text() for t in tables))
    print(f"tables collected in {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
