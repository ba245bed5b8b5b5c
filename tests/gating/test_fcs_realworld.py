"""Instrument quirks of real FCS files (``../shared/realworld/flowjo``), pinned one by one."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gating import FCSKeywordError, read_fcs
from tests.conftest import SHARED, require_shared

LABKEY = SHARED / "realworld" / "flowjo" / "labkey_advanced" / "fcs"
FCEXPR = SHARED / "realworld" / "flowjo" / "fcexpr_10.7.1" / "fcs"


def _labkey_files():
    return sorted(require_shared(LABKEY).glob("*.fcs"))


def _read_quietly(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_fcs(path, **options)


def _lsb_stream_values(blob: bytes, start: int, n_events: int, bits: list[int]) -> np.ndarray:
    """An independent decoder: the DATA as one integer, least significant bit first."""
    event_bits = sum(bits)
    n_bytes = (n_events * event_bits + 7) // 8
    stream = int.from_bytes(blob[start:start + n_bytes], "little")
    out = np.empty((n_events, len(bits)), dtype=np.int64)
    pos = 0
    for e in range(n_events):
        for c, width in enumerate(bits):
            out[e, c] = (stream >> pos) & ((1 << width) - 1)
            pos += width
    return out


def test_junk_after_data_offsets_falls_back_to_header_and_says_so():
    path = _labkey_files()[0]
    blob = path.read_bytes()
    assert b"768I" in blob[:2000]  # the quirk is really in the file
    with pytest.warns(Warning, match=r"\$BEGINDATA=.*768I.*HEADER"):
        data = read_fcs(path)
    assert data.n_events == 10_000
    assert any("$BEGINDATA" in note and "HEADER" in note for note in data.warnings)


def test_junk_offsets_without_header_offsets_are_an_error(tmp_path):
    path = _labkey_files()[0]
    blob = bytearray(path.read_bytes())
    blob[26:42] = b"       0       0"  # HEADER DATA offsets zeroed
    broken = tmp_path / "no_header_offsets.fcs"
    broken.write_bytes(bytes(blob))
    with pytest.raises(FCSKeywordError, match=r"\$BEGINDATA"):
        _read_quietly(broken)


@pytest.mark.parametrize("index", [0, 5, 15])
def test_nine_bit_packed_data_is_an_lsb_first_stream(index):
    path = _labkey_files()[index]
    data = _read_quietly(path)
    bits = [int(b) for b in data.channels["bits"]]
    assert bits == [9] * 5
    header = path.read_bytes()
    start = int(header[26:34])
    expected = _lsb_stream_values(header, start, 2_000, bits)
    raw = np.asarray(data.raw[:2_000], dtype=np.int64)
    np.testing.assert_array_equal(raw, expected)
    # the physical check: forward and side scatter of real cells are correlated in this order
    assert np.corrcoef(raw[:, 0], raw[:, 1])[0, 1] > 0.4


def test_every_labkey_file_decodes_with_correlated_scatter():
    for path in _labkey_files():
        raw = np.asarray(_read_quietly(path).raw, dtype=float)
        assert raw.shape == (10_000, 5), path.name
        assert np.corrcoef(raw[:, 0], raw[:, 1])[0, 1] > 0.3, path.name


def test_fcexpr_files_keep_slashes_in_channel_names():
    files = sorted(require_shared(FCEXPR).glob("*.fcs"))
    assert len(files) == 48
    for path in files:
        data = _read_quietly(path)
        assert data.n_events == 500, path.name
        assert "v-450/50-B-A" in list(data.channels["name"]), path.name


def test_the_batch_records_what_the_reader_repaired(tmp_path):
    import pandas as pd

    from engine import BatchOptions, ExecutorSpec, resolve_inputs, run_batch
    from gating import Dimension, RectangleGate, Strategy

    strategy = Strategy(gates=(RectangleGate("Low", (Dimension("ForSc"),), ((None, 300.0),)),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_batch(strategy, resolve_inputs([str(p) for p in _labkey_files()[:2]]),
                  out_dir=tmp_path / "out", executor=ExecutorSpec(kind="inprocess"),
                  options=BatchOptions())
    files = pd.read_parquet(tmp_path / "out" / "files.parquet")
    assert (files["status"] == "ok").all()
    assert files["reader_notes"].str.contains(r"\$BEGINDATA=.*HEADER").all()
