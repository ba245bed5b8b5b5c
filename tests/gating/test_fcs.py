"""FCS reader and writer on files we build ourselves (every layout the standard allows)."""

from __future__ import annotations

import copy
import os

import numpy as np
import pandas as pd
import pytest

from gating import (
    FCSDataLengthError,
    FCSDatatypeError,
    FCSError,
    FCSFormatError,
    FCSKeywordError,
    FCSOffsetError,
    FCSTruncatedError,
    FCSWarning,
    read_fcs,
    write_fcs,
)
from gating._fcs._text import parse_keywords
from tests.fcs_factory import build_dataset, build_file

RNG = np.random.default_rng(7)


def _write(tmp_path, blob: bytes, name: str = "x.fcs"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


# ---- writer round trips ----------------------------------------------------------------
def test_write_read_roundtrip_is_exact(tmp_path):
    events = RNG.normal(1000, 5000, size=(5000, 5)).astype(np.float32)
    events[0] = [0.0, -0.0, np.float32(3.4e38), np.float32(-1e-30), 1.5]
    channels = [
        {"name": "FSC-A", "range": 262144},
        {"name": "SSC-A"},
        {"name": "FITC-A", "marker": "CD3"},
        {"name": "PE-A", "marker": "CD8/β"},  # delimiter and non-ASCII in a value
        {"name": "Time"},
    ]
    spill = pd.DataFrame(
        [[1.0, 0.1234567890123], [0.05, 1.0]], index=["FITC-A", "PE-A"], columns=["FITC-A", "PE-A"]
    )
    path = write_fcs(
        tmp_path / "rt.fcs",
        events,
        channels,
        metadata={"$CYT": "phenoflow/test", "NOTE": "naïve // café", "$TOT": "999"},
        spill=spill,
    )
    data = read_fcs(path)
    assert data.version == "FCS3.1"
    assert data.events.dtype == np.float32
    np.testing.assert_array_equal(data.events, events)
    np.testing.assert_array_equal(data.raw, events)
    assert data.names == ["FSC-A", "SSC-A", "FITC-A", "PE-A", "Time"]
    assert data.channels["marker"].tolist() == ["", "", "CD3", "CD8/β", ""]
    assert data.channels["kind"].tolist() == ["scatter", "scatter", "fluorescence", "fluorescence", "time"]
    assert data.metadata["NOTE"] == "naïve // café"
    assert data.metadata["$CYT"] == "phenoflow/test"
    assert data.metadata["$TOT"] == "5000"  # structural keywords come from the data
    pd.testing.assert_frame_equal(data.spill, spill)
    assert data.channel_index("CD8/β") == 3 and data.channel_index("fitc-a") == 2


def test_native_float_events_are_a_zero_copy_view(tmp_path):
    events = RNG.random((1000, 3), dtype=np.float32)
    data = read_fcs(write_fcs(tmp_path / "z.fcs", events, ["A", "B", "C"]))
    ev = data.events
    assert not ev.flags.owndata and not ev.flags.writeable
    assert ev.flags.aligned and ev.flags.c_contiguous
    np.testing.assert_array_equal(ev, events)


def test_columns_decode_only_requested_channels(tmp_path):
    events = RNG.random((300, 4)).astype(np.float32) * 1000
    data = read_fcs(write_fcs(tmp_path / "c.fcs", events, ["A", "B", "C", "D"]))
    sub = data.columns(["D", "B"])
    assert sub.dtype == np.float64 and sub.shape == (300, 2)
    np.testing.assert_array_equal(sub, events[:, [3, 1]].astype(np.float64))


def test_timestep_and_gain_preprocessing(tmp_path):
    values = np.array([[100.0, 50.0, 10.0], [200.0, 80.0, 20.0]], dtype=np.float32)
    blob = build_dataset(
        values,
        datatype="F",
        names=["FSC-A", "FL1-A", "Time"],
        extra={"$TIMESTEP": "0.25", "$P1G": "4", "$P3G": "0.01"},
    )
    data = read_fcs(_write(tmp_path, blob), dtype=np.float64)
    expected = values.astype(np.float64)
    expected[:, 0] /= 4.0  # gain divides
    expected[:, 2] *= 0.25  # timestep multiplies; a gain on Time is ignored
    np.testing.assert_array_equal(data.events, expected)
    np.testing.assert_array_equal(data.raw, values)


def test_writer_streams_files_beyond_header_offset_limit(tmp_path):
    n = 4_200_000  # 4.2M x 6 x 4 bytes = 100.8 MB > 99,999,999
    events = np.broadcast_to(np.arange(6, dtype=np.float32), (n, 6))
    path = write_fcs(tmp_path / "big.fcs", events, [f"C{i}" for i in range(6)])
    header = path.read_bytes()[:58]
    assert header[26:42] == b"       0       0"  # DATA offsets only in TEXT
    data = read_fcs(path)
    assert data.n_events == n
    np.testing.assert_array_equal(data.events[-1], np.arange(6, dtype=np.float32))
    assert int(data.metadata["$ENDDATA"]) > 99_999_999


def test_zero_events_roundtrip(tmp_path):
    data = read_fcs(write_fcs(tmp_path / "e.fcs", np.zeros((0, 3)), ["A", "B", "C"]))
    assert data.n_events == 0 and data.events.shape == (0, 3)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"channels": ["A", "A"]}, "unique"),
        ({"channels": ["A"]}, "1 channels given"),
        ({"channels": ["A,1", "B"]}, "comma"),
    ],
)
def test_writer_rejects_bad_channels(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        write_fcs(tmp_path / "w.fcs", np.zeros((2, 2)), bad["channels"])


# ---- every stored layout -----------------------------------------------------------------
LAYOUTS = [
    ("FCS3.1", "I", [8, 8], "1,2,3,4"),
    ("FCS3.1", "I", [16, 16], "1,2"),
    ("FCS3.0", "I", [16, 16], "2,1"),
    ("FCS3.0", "I", [32, 32], "4,3,2,1"),
    ("FCS3.1", "I", [64, 64], "1,2,3,4,5,6,7,8"),
    ("FCS3.1", "I", [8, 16, 32], "1,2,3,4"),  # mixed widths
    ("FCS3.0", "I", [8, 16, 32], "4,3,2,1"),
    ("FCS3.0", "I", [24, 24], "1,2,3,4"),  # 3-byte values
    ("FCS2.0", "I", [32, 32], "3,4,1,2"),  # middle-endian (PDP-11 style)
    ("FCS2.0", "I", [10, 12, 10], "1,2,3,4"),  # bit-packed
    ("FCS3.1", "F", None, "1,2,3,4"),
    ("FCS3.0", "F", None, "4,3,2,1"),
    ("FCS3.0", "F", None, "3,4,1,2"),
    ("FCS3.1", "D", None, "1,2,3,4,5,6,7,8"),
    ("FCS3.0", "D", None, "8,7,6,5,4,3,2,1"),
]


@pytest.mark.parametrize("chunk_bytes", [None, 1], ids=["one-chunk", "8-event-chunks"])
@pytest.mark.parametrize("version, datatype, bits, order", LAYOUTS)
def test_every_layout_decodes(tmp_path, monkeypatch, version, datatype, bits, order, chunk_bytes):
    if chunk_bytes is not None:  # every pass over DATA in chunks of 8 events (pages dropped)
        monkeypatch.setattr("gating._fcs._data.CHUNK_BYTES", chunk_bytes)
    n, p = 257, len(bits) if bits else 3
    if datatype == "I":
        highs = [2**b - 1 for b in bits]
        values = np.stack(
            [RNG.integers(0, h, size=n, endpoint=True, dtype=np.uint64) for h in highs], axis=1
        )
        values = values.astype(np.uint64)
        ranges = [2**b for b in bits]
    else:
        values = RNG.normal(0, 1e4, size=(n, p))
        if datatype == "F":
            values = values.astype(np.float32).astype(np.float64)
        ranges = None
    blob = build_dataset(values, version=version, datatype=datatype, bits=bits, byteorder=order, ranges=ranges)
    data = read_fcs(_write(tmp_path, blob), dtype=np.float64)
    assert data.version == version and data.n_events == n
    np.testing.assert_array_equal(data.events, values.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(data.raw, dtype=np.float64), values.astype(np.float64))
    # a subset of columns decodes to the same numbers
    np.testing.assert_array_equal(data.columns([p - 1, 0]), values[:, [p - 1, 0]].astype(np.float64))
    if chunk_bytes is not None:
        ranges = list(data.chunk_ranges())
        assert ranges[0] == (0, 8) and ranges[-1] == (256, 257) and len(ranges) == 33
    # float32 output (a cast while copying) is the same numbers
    np.testing.assert_array_equal(
        data.columns([0], dtype=np.float32), values[:, [0]].astype(np.float32)
    )


def test_integer_values_are_masked_to_the_range(tmp_path):
    values = np.array([[0xFC00 | 5, 1023], [0x8000 | 1023, 0xFFFF]], dtype=np.uint64)
    blob = build_dataset(values, datatype="I", bits=[16, 16], ranges=[1024, 1000])
    data = read_fcs(_write(tmp_path, blob))
    np.testing.assert_array_equal(data.events, [[5, 1023], [1023, 1023]])
    np.testing.assert_array_equal(data.raw, values)  # raw stays unmasked


def test_log_amplification(tmp_path):
    values = np.array([[0, 512, 1023]], dtype=np.uint64).T
    blob = build_dataset(values, datatype="I", bits=[16], ranges=[1024], extra={"$P1E": "4,0"})
    data = read_fcs(_write(tmp_path, blob))
    expected = [10 ** (4.0 * v / 1024.0) for v in (0.0, 512.0, 1023.0)]  # log0 of 0 reads as 1
    np.testing.assert_allclose(data.events[:, 0], expected, rtol=1e-15)


# ---- TEXT quirks ---------------------------------------------------------------------------
@pytest.mark.parametrize("delim", [b"/", b"|", b"\x0c", b"\\"])
def test_delimiters_and_escaping(tmp_path, delim):
    sep = delim.decode("latin-1")
    values = np.ones((3, 2), dtype=np.uint64)
    note = f"a{sep}b{sep}{sep}c end"
    blob = build_dataset(values, delim=delim, extra={"NOTE": note, "$COM": "ünïcödé ✓"})
    data = read_fcs(_write(tmp_path, blob))
    assert data.metadata["NOTE"] == note
    assert data.metadata["$COM"] == "ünïcödé ✓"


def test_empty_values_written_by_old_instruments():
    # CellQuest leaves values empty ("key//next"), which reads like an escaped delimiter;
    # the parser falls back to plain splitting when escapes leave a keyword without a value.
    parsed = parse_keywords(b"/A/1/B//C/3/D//", path="t.fcs", segment="TEXT", offset=58)
    assert parsed == {"A": "1", "B": "", "C": "3", "D": ""}
    escaped = parse_keywords(b"/A/1//2/C/3/", path="t.fcs", segment="TEXT", offset=58)
    assert escaped == {"A": "1/2", "C": "3"}
    with pytest.raises(FCSFormatError, match="odd number"):
        parse_keywords(b"/A/1/B/", path="t.fcs", segment="TEXT", offset=58)


def test_latin1_values(tmp_path):
    values = np.ones((2, 1), dtype=np.uint64)
    blob = build_dataset(values, extra={"OP": "x"}).replace(b"/OP/x/", b"/OP/\xe9/")
    data = read_fcs(_write(tmp_path, blob))
    assert data.metadata["OP"] == "é"


def test_supplemental_text(tmp_path):
    values = np.arange(6, dtype=np.uint64).reshape(3, 2)
    blob = build_dataset(values, supplemental={"EXTRA": "from stext", "$DATE": "01-JAN-2020"})
    data = read_fcs(_write(tmp_path, blob))
    assert data.metadata["EXTRA"] == "from stext"
    assert data.metadata["$DATE"] == "01-JAN-2020"
    np.testing.assert_array_equal(data.events, values)


def test_offsets_only_in_text(tmp_path):
    values = np.arange(8, dtype=np.uint64).reshape(4, 2)
    blob = build_dataset(values, header_data_offsets=False)
    np.testing.assert_array_equal(read_fcs(_write(tmp_path, blob)).events, values)


def test_offsets_only_in_header(tmp_path):
    values = np.arange(8, dtype=np.uint64).reshape(4, 2)
    blob = build_dataset(values, version="FCS2.0", text_data_offsets=False)
    np.testing.assert_array_equal(read_fcs(_write(tmp_path, blob)).events, values)


def test_multiple_datasets(tmp_path):
    sets = [
        {"values": np.full((3, 2), i + 1, dtype=np.uint64), "names": [f"A{i}", f"B{i}"]}
        for i in range(3)
    ]
    path = _write(tmp_path, build_file(sets))
    for i in range(3):
        data = read_fcs(path, dataset=i)
        assert data.n_datasets == 3 and data.dataset == i
        assert data.names == [f"A{i}", f"B{i}"]
        np.testing.assert_array_equal(data.events, np.full((3, 2), i + 1))
    with pytest.raises(IndexError, match="dataset 3"):
        read_fcs(path, dataset=3)


# ---- typed errors ---------------------------------------------------------------------------
def _good(**kw) -> bytes:
    return build_dataset(np.arange(20, dtype=np.uint64).reshape(10, 2), **kw)


def test_truncated_data(tmp_path):
    path = _write(tmp_path, _good()[:-5])
    with pytest.raises(FCSTruncatedError) as err:
        read_fcs(path)
    assert err.value.segment == "DATA" and err.value.path == str(path)
    assert str(path) in str(err.value) and err.value.offset is not None


@pytest.mark.parametrize("size", [0, 20, 57])
def test_truncated_header(tmp_path, size):
    path = _write(tmp_path, _good()[:size])
    with pytest.raises(FCSTruncatedError, match="HEADER"):
        read_fcs(path)


def test_truncated_text(tmp_path):
    with pytest.raises(FCSTruncatedError, match="TEXT"):
        read_fcs(_write(tmp_path, _good()[:100]))


def test_not_fcs(tmp_path):
    with pytest.raises(FCSFormatError, match="not an FCS file"):
        read_fcs(_write(tmp_path, b"PK\x03\x04" + b"\0" * 100))


def test_directory_named_fcs(tmp_path):
    (tmp_path / "d.fcs").mkdir()
    with pytest.raises(FCSFormatError, match="not a regular file"):
        read_fcs(tmp_path / "d.fcs")


def test_data_length_mismatch(tmp_path):
    blob = _good(extra={"$TOT": "11"})
    with pytest.raises(FCSDataLengthError, match=r"\$TOT=11"):
        read_fcs(_write(tmp_path, blob))


def test_off_by_one_data_end_is_read_with_a_warning(tmp_path):
    blob = _good(data_end_fudge=1) + b"\0"
    with pytest.warns(FCSWarning, match="one byte past"):
        data = read_fcs(_write(tmp_path, blob))
    assert data.warnings and data.n_events == 10
    with pytest.raises(FCSDataLengthError):
        read_fcs(_write(tmp_path, _good(data_end_fudge=2) + b"\0\0", "b.fcs"))


def test_header_text_disagreement(tmp_path):
    blob = bytearray(_good())
    end = int(blob[34:42])
    blob[34:42] = f"{end + 8:>8d}".encode()
    path = _write(tmp_path, bytes(blob) + b"\0" * 8)
    with pytest.raises(FCSOffsetError, match="offsets='header'") as err:
        read_fcs(path)
    assert err.value.segment == "DATA"
    np.testing.assert_array_equal(
        read_fcs(path, offsets="text").events, np.arange(20).reshape(10, 2)
    )
    with pytest.raises(FCSDataLengthError):
        read_fcs(path, offsets="header")


@pytest.mark.parametrize(
    "extra, error, match",
    [
        ({"$DATATYPE": "A"}, FCSDatatypeError, "DATATYPE"),
        ({"$MODE": "C"}, FCSDatatypeError, "MODE"),
        ({"$BYTEORD": "1,1"}, FCSDatatypeError, "BYTEORD"),
        ({"$PAR": ""}, FCSKeywordError, r"\$PAR"),
        ({"$P1B": "*"}, FCSDatatypeError, r"\$P1B"),
        ({"$P2B": "0"}, FCSDatatypeError, r"\$P2B"),
        ({"$P1N": ""}, FCSKeywordError, r"\$P1N"),
        ({"$P1R": "big"}, FCSKeywordError, r"\$P1R"),
        ({"$TOT": "many"}, FCSKeywordError, r"\$TOT"),
        ({"$SPILLOVER": "3,A,B"}, FCSKeywordError, "SPILLOVER"),
    ],
)
def test_bad_keywords(tmp_path, extra, error, match):
    path = _write(tmp_path, _good(extra=extra))
    with pytest.raises(error, match=match):
        data = read_fcs(path)
        _ = data.spill  # the spillover is parsed on first use
    assert issubclass(error, FCSError)


def test_nextdata_loop_is_refused(tmp_path):
    blob = _good(nextdata=0)
    bad = blob.replace(b"/$NEXTDATA/0/", b"/$NEXTDATA/1/")
    with pytest.raises(FCSFormatError):
        read_fcs(_write(tmp_path, bad))


def test_errors_survive_copying():
    err = FCSTruncatedError("cut", path="/x.fcs", segment="DATA", offset=9)
    again = copy.deepcopy(err)
    assert type(again) is FCSTruncatedError and str(again) == str(err) and again.offset == 9


def test_unknown_channel_is_named(tmp_path):
    data = read_fcs(write_fcs(tmp_path / "k.fcs", np.zeros((1, 2)), ["A", "B"]))
    with pytest.raises(KeyError, match="no unique channel 'Q'"):
        data.channel_index("Q")


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "a.fcs"
    write_fcs(path, np.zeros((4, 1)), ["A"])
    with pytest.raises(ValueError):
        write_fcs(path, np.zeros((4, 2)), ["A"])  # fails before touching the old file
    assert read_fcs(path).n_channels == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.fcs"]
    assert os.path.getsize(path) > 0


# ---- the whole file through the DATA mapping (the batch's fingerprint reads it) ----------
def test_file_chunks_are_the_whole_file_in_order(tmp_path, monkeypatch):
    import gating._fcs._data as data_module

    events = RNG.normal(100, 50, size=(3000, 3)).astype(np.float32)
    path = write_fcs(tmp_path / "c.fcs", events, ["A", "B", "C"], metadata={"NOTE": "x" * 999})
    whole = path.read_bytes()
    data = read_fcs(path)
    np.testing.assert_array_equal(data.events, events)  # DATA mapped first ...
    assert b"".join(bytes(piece) for piece in data.file_chunks()) == whole  # ... the same mapping
    monkeypatch.setattr(data_module, "CHUNK_BYTES", 4096)  # several pieces, pages dropped
    data = read_fcs(path)
    pieces = [bytes(piece) for piece in data.file_chunks()]
    assert len(pieces) == -(-len(whole) // 4096) and b"".join(pieces) == whole
    np.testing.assert_array_equal(data.events, events)  # the mapping still reads after that


def test_file_chunks_of_a_later_dataset_are_still_the_whole_file(tmp_path):
    second_values = np.arange(40, dtype=np.uint64).reshape(20, 2)
    blob = build_file([{"values": np.arange(20, dtype=np.uint64).reshape(10, 2)},
                       {"values": second_values}])
    path = _write(tmp_path, blob)
    second = read_fcs(path, dataset=1)
    np.testing.assert_array_equal(second.events, second_values)
    assert b"".join(bytes(piece) for piece in second.file_chunks()) == blob


def test_a_reader_note_is_shown_once_as_a_warning_not_again_as_a_log_record(tmp_path, caplog):
    import logging

    blob = _good(data_end_fudge=1) + b"\0"
    with caplog.at_level(logging.DEBUG, logger="gating._fcs._read"), \
            pytest.warns(FCSWarning, match="one byte past") as record:
        data = read_fcs(_write(tmp_path, blob))
    assert len([w for w in record if issubclass(w.category, FCSWarning)]) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r for r in caplog.records if "one byte past" in r.getMessage()]  # kept at debug
    assert any("one byte past" in note for note in data.warnings)  # and recorded
