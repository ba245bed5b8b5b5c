"""What the batch worker records per file, made with less per-file work: the fingerprint read
through the mapping gating used (the same XXH3-128 as hashing the path), and the counts part
built from the counts table without a Series per constant column (the same Arrow table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine import ExecutorSpec, file_fingerprint, resolve_inputs, run_batch
from engine._batch._run import _counts_table
from gating import COUNT_COLUMNS, Dimension, RectangleGate, Strategy, read_fcs, write_fcs


def _file(path: Path, n: int, seed: int = 0) -> Path:
    x = np.random.default_rng(seed).normal(500, 200, size=(n, 2)).astype(np.float32)
    return write_fcs(path, x, ["A", "B"], metadata={"NOTE": "trailing text " * 50})


@pytest.mark.parametrize("n", [0, 1, 5000])
def test_fingerprint_through_the_sample_is_the_fingerprint_of_the_path(tmp_path: Path, n: int) -> None:
    path = _file(tmp_path / "a.fcs", n)
    sample = read_fcs(path)
    assert sample.events.shape == (n, 2)  # the DATA mapping made (and read) first, as gating does
    assert file_fingerprint(str(path), sample=sample) == file_fingerprint(str(path))


def test_fingerprint_of_a_file_larger_than_a_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gating._fcs._data as data_module

    path = _file(tmp_path / "a.fcs", 5000)
    monkeypatch.setattr(data_module, "CHUNK_BYTES", 8192)  # hashed piece by piece, pages dropped
    sample = read_fcs(path)
    assert file_fingerprint(str(path), sample=sample) == file_fingerprint(str(path))


def test_fingerprint_falls_back_to_the_path_when_the_mapping_cannot_be_made(tmp_path: Path) -> None:
    class Unmappable:
        def file_chunks(self) -> Any:
            raise ValueError("cannot mmap")

    path = _file(tmp_path / "a.fcs", 10)
    assert file_fingerprint(str(path), sample=Unmappable()) == file_fingerprint(str(path))


def test_the_batch_records_the_fingerprint_of_each_file(tmp_path: Path) -> None:
    folder = tmp_path / "fcs"
    folder.mkdir()
    for i in range(3):
        _file(folder / f"s{i}.fcs", 2000, seed=i)
    strategy = Strategy(gates=(RectangleGate("R", (Dimension("A"),), ((500.0, None),)),))
    run = run_batch(strategy, resolve_inputs([folder]), out_dir=tmp_path / "out",
                    executor=ExecutorSpec(kind="inprocess"))
    files = pd.read_parquet(tmp_path / "out" / "files.parquet")
    assert files["xxh3_128"].tolist() == [file_fingerprint(p) for p in files["path"]]
    assert run.ok


def _counts(n: int) -> pd.DataFrame:
    if not n:
        return pd.DataFrame([], columns=COUNT_COLUMNS)
    return pd.DataFrame({
        "sample": ["s"] * n, "population": [f"/p{i}" for i in range(n)],
        "parent": [None] + [f"/p{i}" for i in range(n - 1)], "count": list(range(n)),
        "parent_count": list(range(1, n + 1)), "percent_of_parent": [np.nan] + [50.0] * (n - 1),
        "percent_of_total": [1.5] * n, "id": [f"p{i}" for i in range(n)],
    })


def _as_pandas_stores_it(counts: pd.DataFrame, extra: dict[str, Any]) -> pa.Table:
    """The reference (the earlier construction): every counts column and a Series of each
    extra value, converted by Arrow from pandas."""
    columns: dict[str, Any] = {c: counts[c] for c in counts.columns}
    for column, value in extra.items():
        columns[column] = pd.Series(value, index=counts.index)
    return pa.Table.from_arrays([pa.array(c, from_pandas=True) for c in columns.values()],
                                names=list(columns))


@pytest.mark.parametrize("n", [0, 1, 4])
@pytest.mark.parametrize("value", [
    "P01", "", 3, -7, 2**63 - 1, -(2**63), 2**63, 2**64 + 1, 1.5, np.nan, float("inf"), True, False,
    None, np.int32(3), np.float32(2.0), np.str_("q"), pd.Timestamp("2024-01-02"),
])
def test_counts_part_is_the_table_pandas_and_arrow_give(n: int, value: Any) -> None:
    counts = _counts(n)
    extra = {"patient": value, "file": "/data/s.fcs", "dataset": 0}
    try:
        want = _as_pandas_stores_it(counts, extra)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            _counts_table([(counts, extra)])
        return
    got = _counts_table([(counts, extra)])
    assert got.schema.equals(want.schema, check_metadata=True) and got.equals(want)


def test_counts_part_written_is_byte_identical(tmp_path: Path) -> None:
    counts = _counts(4)
    extra = {"patient": "P01", "visit": 2, "file": "/data/s.fcs", "dataset": 0}
    pq.write_table(_counts_table([(counts, extra)]), tmp_path / "got.parquet")
    pq.write_table(_as_pandas_stores_it(counts, extra), tmp_path / "want.parquet")
    assert (tmp_path / "got.parquet").read_bytes() == (tmp_path / "want.parquet").read_bytes()
