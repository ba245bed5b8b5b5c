"""Start-up of every ``phenoflow`` subcommand: ``--help`` and a tiny real run, fresh processes.

Run: ``python -m benchmarks.bench_startup [--repeats 5]``. For each subcommand the wall time of
a whole fresh process (interpreter start, imports, the work, exit) is measured, best of
``--repeats``: ``--help`` (what parsing the command line costs) and a run on inputs so small
that the work itself is negligible (what a user pays per invocation, e.g. once per file in a
shell loop or per job on a cluster). The modules each run imports are listed by their
cumulative import time (``python -X importtime``), largest first. The table goes to
``benchmarks/results/startup.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import user_env, write_table

CLI = [sys.executable, "-m", "engine.cli"]


def _tiny_inputs(root: Path) -> dict[str, Path]:
    """A small demo study (2,000 events per file, 300 genes) and one output folder per run."""
    from engine.demo import make_demo_study

    demo = make_demo_study(root / "study", n_events=2000, n_genes=300, seed=1)
    fcs = sorted((root / "study" / "fcs").glob("*.fcs"))
    return {"fcs": fcs[0], "fcs2": fcs[1], "strategy": demo.strategy, "counts": demo.counts,
            "samples": demo.samples, "root": root}


def _commands(x: dict[str, Path]) -> dict[str, list[str]]:
    out = x["root"] / "runs"
    return {
        "info": ["info", str(x["fcs"])],
        # the default executor: Dask's threaded scheduler on this process's threads
        "gate": ["gate", "--strategy", str(x["strategy"]), "--fcs", str(x["fcs"]),
                 "--out", str(out / "gate")],
        "gate --in-process": ["gate", "--strategy", str(x["strategy"]), "--fcs", str(x["fcs"]),
                              "--out", str(out / "gate_ip"), "--in-process"],
        "compare": ["compare", "--strategy", str(x["strategy"]), "--strategy",
                    str(x["strategy"]), "--fcs", str(x["fcs"]), "--out", str(out / "compare")],
        "convert": ["convert", str(x["strategy"]), "--to", "gatingml",
                    "--out", str(out / "strategy.xml")],
        "normalize": ["normalize", str(x["counts"]), "--samples", str(x["samples"]),
                      "--method", "ratio", "--out", str(out / "norm.csv")],
        "de": ["de", str(x["counts"]), "--samples", str(x["samples"]),
               "--design", "~ patient + timepoint", "--contrast", "timepoint,post,pre",
               "--out", str(out / "de.csv")],
    }


def _wall(args: list[str], repeats: int) -> tuple[float, str]:
    best, err = float("inf"), ""
    env = user_env({"PYTHONHASHSEED": "0"})  # bytecode cache on, as installed
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()[-1:][0][:120]
            return float("nan"), err
        best = min(best, seconds)
    return best, err


def _top_imports(args: list[str], n: int = 4) -> str:
    """The heaviest top-level imports of one run (cumulative microseconds, -X importtime)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine.cli", *args],
                          capture_output=True, text=True, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 2:  # packages imported directly (not their sub-imports)
            rows.append((int(m.group(1)), m.group(3)))
    rows.sort(reverse=True)
    return ", ".join(f"{name} {us / 1e6:.2f}" for us, name in rows[:n] if us > 20_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per command")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pf_startup_") as tmp:
        x = _tiny_inputs(Path(tmp))
        _wall(["--help"], 1)  # warm the file cache and the Numba cache once
        base, _ = _wall(["--version"], args.repeats)
        rows.append({"command": "--version", "help_s": f"{base:.3f}", "tiny_run_s": "",
                     "heaviest imports of the run (s, cumulative)": ""})
        for name, cmd in _commands(x).items():
            _wall(cmd, 1)  # compile once: Numba's cache is warm for the timed runs
            helped, _ = _wall([cmd[0], "--help"], args.repeats)
            ran, err = _wall(cmd, args.repeats)
            rows.append({"command": name, "help_s": f"{helped:.3f}",
                         "tiny_run_s": f"{ran:.3f}" if not err else f"error: {err}",
                         "heaviest imports of the run (s, cumulative)": _top_imports(cmd)})
            print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    md = write_table(
        "startup", rows, ["command", "help_s", "tiny_run_s",
                          "heaviest imports of the run (s, cumulative)"],
        title=f"Start-up per subcommand (fresh process, best of {args.repeats}; "
              f"load average {load:.1f} on {os.cpu_count()} CPUs)",
    )
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
