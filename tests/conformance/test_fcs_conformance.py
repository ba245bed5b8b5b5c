"""The reader against the conformance FCS files, flowio and the stored truth arrays."""

from __future__ import annotations

import warnings

import flowio
import numpy as np
import pandas as pd
import pytest

from gating import FCSDataLengthError, FCSOffsetError, FCSWarning, read_fcs
from tests.conftest import CONFORMANCE, require_shared

READABLE = [
    "fcs/test_data_2d_01.fcs",
    "fcs/test_comp_example.fcs",
    "gatingml2/fcs/data1.fcs",
    "gatingml2/fcs/data2.fcs",
    "gatingml2/fcs/9399_1_3_NKR.fcs",
    "flowjo/simple_diamond_example/test_data_diamond_01.fcs",
    "flowjo/simple_line_example/data_set_simple_line_100.fcs",
]
NONCOMPLIANT = [
    "fcs/noncompliant/data_start_offset_discrepancy_example.fcs",
    "fcs/noncompliant/data_stop_offset_discrepancy_example.fcs",
]


def test_every_conformance_fcs_file_is_covered():
    root = require_shared(CONFORMANCE)
    found = {str(p.relative_to(root)) for p in root.rglob("*.fcs")}
    assert found == set(READABLE) | set(NONCOMPLIANT)


def _flowio(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flowio warns about the off-by-one file
        return flowio.FlowData(str(path), **kwargs)


@pytest.mark.parametrize("rel", READABLE)
def test_matches_flowio(rel):
    path = require_shared(CONFORMANCE / rel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FCSWarning)
        ours = read_fcs(path, dtype=np.float64)
    theirs = _flowio(path, ignore_offset_error=rel.endswith("test_comp_example.fcs"))
    assert ours.names == theirs.pnn_labels
    assert ours.n_events == theirs.event_count
    stored = theirs.as_array(preprocess=False)
    masks = [
        (1 << (int(r) - 1).bit_length()) - 1 if ours.metadata["$DATATYPE"] == "I" else None
        for r in theirs.pnr_values
    ]
    raw = np.asarray(ours.raw)
    for j, mask in enumerate(masks):
        column = raw[:, j] & mask if mask is not None else raw[:, j]
        np.testing.assert_array_equal(column.astype(np.float64), stored[:, j])
    # Preprocessed: identical except the log-amplified channels, where flowio's vectorised
    # numpy power may differ from the C library's pow in the last bit (CPU dependent);
    # data1's stored truth (below) is matched bit for bit by our reader.
    processed = theirs.as_array(preprocess=True)
    log_channels = ours.channels["decades"].to_numpy() > 0
    np.testing.assert_array_equal(ours.events[:, ~log_channels], processed[:, ~log_channels])
    np.testing.assert_allclose(ours.events[:, log_channels], processed[:, log_channels], rtol=5e-16, atol=0)


def test_data1_reproduces_the_stored_truth_bit_for_bit():
    data = read_fcs(require_shared(CONFORMANCE / "gatingml2/fcs/data1.fcs"))
    original = np.load(require_shared(CONFORMANCE / "fcs/data1_original_events.npy"))
    preprocessed = np.load(CONFORMANCE / "fcs/data1_preprocessed.npy")
    assert data.version == "FCS2.0" and data.metadata["$DATATYPE"] == "I"
    np.testing.assert_array_equal(np.asarray(data.raw, dtype=np.float64), original)
    assert data.events.dtype == np.float64
    assert np.array_equal(data.events, preprocessed)  # bit for bit, not approximately
    assert data.metadata["CREATOR"].startswith("CELLQuest")  # non-ASCII value decoded


def test_comp_example_off_by_one_is_read_with_a_warning():
    path = require_shared(CONFORMANCE / "fcs/test_comp_example.fcs")
    with pytest.warns(FCSWarning, match="one byte past"):
        data = read_fcs(path)
    assert data.n_events == 10703 and len(data.warnings) == 1
    # the file's own SPILL covers the same 14 detectors as the example custom matrix
    custom = pd.read_csv(CONFORMANCE / "fcs/comp_complete_example.csv")
    assert list(data.spill.columns) == list(custom.columns) == list(data.spill.index)
    np.testing.assert_array_equal(np.diag(data.spill.to_numpy()), np.ones(14))
    assert set(data.spill.columns) <= set(data.names)


@pytest.mark.parametrize("rel", NONCOMPLIANT)
def test_noncompliant_offsets_raise_unless_trusted(rel):
    path = require_shared(CONFORMANCE / rel)
    with pytest.raises(FCSOffsetError) as err:
        read_fcs(path)
    assert err.value.segment == "DATA" and err.value.path == str(path)
    assert "offsets='text'" in str(err.value)
    with pytest.warns(FCSWarning, match="TIMESTEP"):
        trusted = read_fcs(path, offsets="text")
    theirs = _flowio(path, ignore_offset_discrepancy=True).as_array(preprocess=False)
    masked = np.asarray(trusted.raw) & np.array(
        [(1 << (int(float(r)) - 1).bit_length()) - 1 for r in trusted.channels["range"]],
        dtype=np.uint64,
    )
    np.testing.assert_array_equal(masked.astype(np.float64), theirs)
    with pytest.raises(FCSDataLengthError):
        read_fcs(path, offsets="header")


def test_big_endian_float_files_decode_to_native():
    data = read_fcs(require_shared(CONFORMANCE / "gatingml2/fcs/data2.fcs"))
    assert data.metadata["$BYTEORD"] == "4,3,2,1"
    assert data.raw.dtype == np.dtype(">f4") and data.events.dtype == np.float32
    assert data.events.dtype.isnative
    np.testing.assert_array_equal(data.events[:, 1], data.raw[:, 1].astype(np.float32))
