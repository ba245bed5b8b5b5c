"""Gating memory is bounded by the columns the plan uses, not by the file (CI-sized).

Two 2,000,000-event float32 files share their first channels; one has 6 channels, the other
30. A strategy uses 4 of them (``benchmarks.bench_memory.strategy_text(4)``: a polygon, ranges,
a Boolean). Peak memory of reading and gating is taken with :mod:`tracemalloc`, which sees
every numpy allocation (numpy registers its data buffers with it); the memory-mapped DATA is
not an allocation and is not counted (``benchmarks/bench_memory.py`` measures RSS, mapped
pages included, on 50M events). Stated bound: the peak is at most 4x the used columns' bytes
(events x 4 channels x 4 bytes = 30.5 MiB; measured about 3.1x), and the 24 unused channels
change it by less than 2% of that.

Mapped pages: list mode stores events row by row, so a column read straight from the mapping
touches every page of the file. The reader and the evaluator pass over the mapping in chunks of
``CHUNK_BYTES`` (64 MiB) of DATA and drop each chunk's pages when done, so the file pages
resident in the process (``RssFile``, measured in a fresh process by ``bench_memory --one``)
stay within two chunks plus the used columns, well below the 30-channel file's 229 MiB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from benchmarks.bench_memory import strategy_text, write_events_file
from gating import apply_plan, compile_plan, read_fcs, read_strategy_yaml
from gating._fcs._data import CHUNK_BYTES

N_EVENTS, K = 2_000_000, 4
USED_BYTES = N_EVENTS * K * 4
BOUND = 4.0  # peak numpy allocation / used columns' bytes


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("memory")
    return {c: write_events_file(root / f"events_{c}.fcs", N_EVENTS, c) for c in (6, 30)}


def _gate_traced(path: Path) -> tuple[int, dict[str, int]]:
    strategy = read_strategy_yaml(strategy_text(K), source="k=4")
    warm = read_fcs(path)  # kernels compiled and loaded before tracing
    apply_plan(compile_plan(strategy, warm), warm)
    del warm
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        sample = read_fcs(path)
        result = apply_plan(compile_plan(strategy, sample), sample)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    counts = dict(zip(result.counts["population"], result.counts["count"].tolist(), strict=True))
    return peak, counts


def test_peak_allocation_is_a_small_multiple_of_the_used_columns(files):
    peaks, counts = {}, {}
    for channels, path in files.items():
        peaks[channels], counts[channels] = _gate_traced(path)
    assert counts[6] == counts[30]  # same events in the used channels: same result
    assert 0 < min(counts[6].values()) < N_EVENTS  # the gates select something real
    for channels, peak in peaks.items():
        assert peak <= BOUND * USED_BYTES, (
            f"{channels} channels: peak {peak / 2**20:.1f} MiB = {peak / USED_BYTES:.2f}x the "
            f"used columns ({USED_BYTES / 2**20:.1f} MiB)")
    # the whole 30-channel file is 7.5x the used columns: a reader or plan that copied it
    # (or every column) would break the bound above; unused channels must not show at all
    assert files[30].stat().st_size > BOUND * USED_BYTES
    assert abs(peaks[30] - peaks[6]) < 0.02 * USED_BYTES


def test_mapped_file_pages_stay_within_a_chunk_window(files):
    """Touched pages of the memory-mapped file (RssFile) are bounded by the chunk, not the file."""
    path = files[30]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", "--one", str(path), str(K)],
        capture_output=True, text=True, timeout=600, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    mib = 2**20
    mapped = (res["peak"]["RssFile"] - res["base"]["RssFile"]) * mib
    bound = 2 * CHUNK_BYTES + USED_BYTES
    size = path.stat().st_size
    assert size > 1.4 * bound  # reading the whole mapping would break the bound
    assert 0 <= mapped <= bound, (
        f"mapped file pages peaked at +{mapped / mib:.0f} MiB; bound {bound / mib:.0f} MiB, "
        f"file {size / mib:.0f} MiB")
    _, counts = _gate_traced(path)
    assert res["counts"] == counts  # the measured run gated the same events
