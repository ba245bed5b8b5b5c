"""Long-running mutation fuzzing of the FCS reader (the engine of ``tests/gating/test_fcs_fuzz.py``).

Mutants of factory-made files of every layout and of the conformance FCS files (flipped bytes
in HEADER/TEXT/DATA, truncations, offsets past the end or into other segments, hostile
keyword values, bad delimiters, empty values, duplicate keywords) are read in child processes
with a per-case timeout and an address-space limit. Every outcome must be a correct read or
an ``FCSError`` subclass; anything else (another exception, a hang, a crash, an allocation far
beyond the file's size) is a failure, and its file is kept for replay.

Run: ``python -m benchmarks.fuzz_fcs --cases N --seconds S [--seed K] [--batch B]``; figures
are printed and written to ``benchmarks/results/fuzz_fcs.json`` and ``fuzz_fcs.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import RESULTS
from tests.fcs_factory import mutate, run_cases, seed_files

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "conformance"


def _seeds() -> list[tuple[str, bytes]]:
    seeds = seed_files(SHARED if SHARED.exists() else None)
    big = SHARED / "gatingml2" / "fcs" / "9399_1_3_NKR.fcs"
    if big.exists():
        seeds.append(("gatingml2/fcs/9399_1_3_NKR.fcs", big.read_bytes()))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="stop after this many files")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--batch", type=int, default=500, help="files per child process")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a case is a hang")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the figures")
    args = parser.parse_args(argv)

    seeds = _seeds()
    rng = np.random.default_rng(args.seed)
    outcomes: collections.Counter[str] = collections.Counter()
    by_seed: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures: list[dict] = []
    slowest = {"seconds": 0.0}
    peak_rss_kb = 0
    tried = 0
    failed_dir = args.out / "fuzz_fcs_failures"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="phenoflow-fuzz-") as tmp:
        while tried < args.cases and time.perf_counter() - t0 < args.seconds:
            n = min(args.batch, args.cases - tried)
            cases = []
            for i in range(n):
                name, blob = seeds[int(rng.integers(len(seeds)))]
                mutant, desc = mutate(blob, rng)
                path = Path(tmp) / f"case{tried + i}.fcs"
                path.write_bytes(mutant)
                cases.append((str(path), name, desc))
            results = run_cases([c[0] for c in cases], timeout=args.timeout)
            for (path, name, desc), res in zip(cases, results, strict=True):
                kind = "failure" if res["outcome"].startswith("other") else res["outcome"]
                outcomes[kind] += 1
                by_seed[name][kind] += 1
                peak_rss_kb = max(peak_rss_kb, int(res.get("rss_kb", 0)))
                if res["seconds"] > slowest["seconds"]:
                    slowest = {"seconds": res["seconds"], "seed": name, "mutation": desc,
                               "outcome": res["outcome"], "bytes": res["size"]}
                if kind == "failure":
                    failed_dir.mkdir(parents=True, exist_ok=True)
                    kept = failed_dir / Path(path).name
                    shutil.copyfile(path, kept)
                    failures.append({"file": str(kept), "seed": name, "mutation": desc,
                                     "outcome": res["outcome"]})
                Path(path).unlink()
            tried += n
            print(f"{tried} files, {time.perf_counter() - t0:.0f} s: {dict(outcomes)}", flush=True)
    figures = {
        "files_tried": tried,
        "seconds": round(time.perf_counter() - t0, 1),
        "seed": args.seed,
        "outcomes": dict(outcomes.most_common()),
        "failures": failures,
        "slowest_case": slowest,
        "peak_rss_mb_of_a_reader_process": round(peak_rss_kb / 1024, 1),
        "outcomes_by_seed_file": {k: dict(v) for k, v in sorted(by_seed.items())},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fuzz_fcs.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = [
        "# FCS reader mutation fuzzing",
        "",
        f"`python -m benchmarks.fuzz_fcs --cases {args.cases} --seconds {args.seconds:g} "
        f"--seed {args.seed}`: {tried} files in {figures['seconds']} s.",
        "",
        "| outcome | files |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in outcomes.most_common()),
        "",
        f"Slowest case: {slowest['seconds']:.3f} s ({slowest.get('seed')}: {slowest.get('mutation')}"
        f" -> {slowest.get('outcome')}). Peak RSS of a reader process: "
        f"{figures['peak_rss_mb_of_a_reader_process']} MiB. Failures: {len(failures)}.",
    ]
    (args.out / "fuzz_fcs.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "outcomes_by_seed_file"}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
