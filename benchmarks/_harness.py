"""Run one measurement per fresh subprocess: wall time of the best of N runs and peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure(
    module: str,
    args: Sequence[str],
    *,
    repeats: int = 3,
    timeout: float = 1800,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> dict:
    """Run ``python -m module --one ARGS`` ``repeats`` times; keep the fastest run.

    The child prints one JSON object with ``seconds`` (the timed section only) and the
    harness adds ``peak_rss_mb`` (the child's maximum resident set size, whole process).
    ``cwd`` runs the module (and the code it imports) from another checkout, e.g. an earlier
    version timed side by side.
    """
    best: dict | None = None
    env = user_env({"PYTHONHASHSEED": "0", **(env or {})})
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--one", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
            cwd=cwd,
        )
        if proc.returncode != 0:
            return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    assert best is not None
    return best


def user_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment as an installed copy runs in, plus ``extra``: Python's bytecode cache
    on (``PYTHONDONTWRITEBYTECODE`` dropped). A sandbox that sets it makes every fresh
    interpreter compile phenoflow's own modules from source again (about 0.07 s per command),
    which an installed copy, with its ``__pycache__``, never does; the tools compared with are
    installed packages whose bytecode pip compiled, so they never pay it either."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **(extra or {})}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (``VmHWM``).

    ``ru_maxrss`` would carry the parent's peak across fork and exec; ``VmHWM`` belongs to
    this process image only.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_table(name: str, rows: list[dict], columns: Sequence[str], *, title: str) -> Path:
    """Write rows as a Markdown table (and JSON) under ``benchmarks/results``."""
    RESULTS.mkdir(exist_ok=True)
    lines = [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    md = RESULTS / f"{name}.md"
    md.write_text("\n".join(lines) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2, default=str))
    return md
