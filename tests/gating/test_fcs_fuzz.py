"""FCS reader fuzzing: random valid files read back exactly; mutants read or raise FCSError.

Property-based part: hypothesis builds valid files with ``tests/fcs_factory.py`` (every
datatype, width, byte order and version) and with ``gating.write_fcs``. Mutation part: a fixed,
derandomised corpus of mutants of factory-made and conformance files is read in a child process
(``tests.fcs_factory.run_cases``): every outcome must be a read whose arrays have the declared
shape, or an ``FCSError`` subclass; another exception, a hang, a crash or an allocation far
beyond the file size fails. ``python -m benchmarks.fuzz_fcs`` runs the same engine for long.
"""

from __future__ import annotations

import collections
import os
import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gating import (
    FCSDataLengthError,
    FCSFormatError,
    FCSKeywordError,
    FCSOffsetError,
    read_fcs,
    write_fcs,
)
from gating._fcs._text import parse_keywords
from tests.conftest import CONFORMANCE, require_shared
from tests.fcs_factory import (
    build_dataset,
    build_file,
    mutate,
    run_cases,
    seed_files,
    text_segment,
)

# PHENOFLOW_FUZZ_EXAMPLES=N: a longer, randomised local run (CI: 100 derandomised examples)
_LONG = os.environ.get("PHENOFLOW_FUZZ_EXAMPLES")
FUZZ = settings(
    deadline=None, max_examples=int(_LONG or 100), derandomize=_LONG is None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---- property-based: valid files read back exactly -----------------------------------------
@st.composite
def layouts(draw):
    """(version, datatype, bits, byteorder) of a valid file."""
    version = draw(st.sampled_from(["FCS2.0", "FCS3.0", "FCS3.1"]))
    datatype = draw(st.sampled_from(["I", "I", "F", "D"]))
    p = draw(st.integers(1, 6))
    if datatype == "F":
        return version, datatype, [32] * p, draw(st.sampled_from(["1,2,3,4", "4,3,2,1", "3,4,1,2", "2,1,4,3"]))
    if datatype == "D":
        orders = ["1,2,3,4,5,6,7,8", "8,7,6,5,4,3,2,1", "1,2,3,4", "4,3,2,1", "2,1,4,3,6,5,8,7"]
        return version, datatype, [64] * p, draw(st.sampled_from(orders))
    shape = draw(st.sampled_from(["uniform", "mixed", "packed"]))
    if shape == "uniform":
        width = draw(st.sampled_from([8, 16, 24, 32, 64]))
        bits = [width] * p
        orders = ["1,2,3,4", "4,3,2,1", "1,2", "2,1"]
        if width == 32:
            orders += ["3,4,1,2", "2,1,4,3"]
        if width == 24:
            orders += ["1,2,3", "3,2,1", "2,3,1"]
        if width == 64:
            orders += ["1,2,3,4,5,6,7,8", "8,7,6,5,4,3,2,1", "7,8,5,6,3,4,1,2"]
        return version, datatype, bits, draw(st.sampled_from(orders))
    if shape == "mixed":
        bits = draw(st.lists(st.sampled_from([8, 16, 24, 32, 40, 48, 56, 64]), min_size=p, max_size=p))
        return version, datatype, bits, draw(st.sampled_from(["1,2,3,4", "4,3,2,1"]))
    bits = draw(st.lists(st.integers(1, 64), min_size=p, max_size=p))
    if all(b % 8 == 0 for b in bits):
        bits[0] = 12
    return version, datatype, bits, "1,2,3,4"


def _values(datatype: str, bits: list[int], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if datatype == "I":
        cols = []
        for b in bits:
            top = (1 << b) - 1
            col = rng.integers(0, top, size=n, endpoint=True, dtype=np.uint64)
            col[: min(n, 2)] = [0, top][: min(n, 2)]  # both extremes of the width
            cols.append(col)
        return np.stack(cols, axis=1) if n else np.zeros((0, len(bits)), dtype=np.uint64)
    values = rng.normal(0, 1e4, size=(n, len(bits)))
    special = [np.nan, np.inf, -np.inf, -0.0, 1e-40 if datatype == "F" else 5e-324]
    for i, v in enumerate(special[: n * len(bits) // 3]):
        values.flat[i * 3] = v
    return values.astype(np.float32).astype(np.float64) if datatype == "F" else values


@FUZZ
@given(layout=layouts(), n=st.integers(0, 70), seed=st.integers(0, 2**32 - 1), second=st.booleans())
def test_factory_files_read_back_exactly(tmp_path_factory, layout, n, seed, second):
    version, datatype, bits, order = layout
    values = _values(datatype, bits, n, seed)
    ranges = [2**b for b in bits] if datatype == "I" else None
    first = {"values": values, "version": version, "datatype": datatype, "bits": bits,
             "byteorder": order, "ranges": ranges}
    other = {"values": np.full((3, 1), 7, dtype=np.uint64), "version": version}
    path = tmp_path_factory.mktemp("fcs") / "p.fcs"
    path.write_bytes(build_file([first, other]) if second else build_dataset(**first))
    data = read_fcs(path, dtype=np.float64)
    assert data.version == version and data.n_events == n and data.n_channels == len(bits)
    assert data.n_datasets == (2 if second else 1)
    raw = np.asarray(data.raw)
    if datatype == "I":
        np.testing.assert_array_equal(raw.astype(np.uint64), values)
        np.testing.assert_array_equal(data.events, values.astype(np.float64))
    else:
        np.testing.assert_array_equal(raw.astype(np.float64), values)
        np.testing.assert_array_equal(data.events, values)
    subset = list(range(len(bits)))[::-2]
    np.testing.assert_array_equal(data.columns(subset), data.events[:, subset])
    if second:
        np.testing.assert_array_equal(read_fcs(path, dataset=1).events, np.full((3, 1), 7.0))


_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters=","),
    min_size=1, max_size=12,
).filter(lambda s: s.strip() != "")
_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@FUZZ
@given(
    events=st.integers(1, 8).flatmap(
        lambda p: arrays(np.float32, st.tuples(st.integers(0, 50), st.just(p)),
                         elements=st.floats(width=32, allow_nan=True, allow_infinity=True))
    ),
    names=st.lists(_NAME, min_size=8, max_size=8, unique_by=lambda s: s.strip()),
    meta=st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,9}", fullmatch=True), _VALUE, max_size=4),
)
def test_writer_files_read_back_exactly(tmp_path_factory, events, names, meta):
    p = events.shape[1]
    names = names[:p]
    meta = {k: v for k, v in meta.items() if not re.match(r"^P\d|^SPILL", k)}
    path = write_fcs(tmp_path_factory.mktemp("w") / "w.fcs", events, names, metadata=meta)
    data = read_fcs(path)
    assert data.events.dtype == np.float32 and data.events.shape == events.shape
    np.testing.assert_array_equal(data.events, events)
    # bit-exact, NaN payloads included
    np.testing.assert_array_equal(np.asarray(data.raw).view(np.uint32), events.view(np.uint32))
    assert data.names == [n.strip() for n in names]
    for key, value in meta.items():
        assert data.metadata[key] == (value or " ")


@FUZZ
@given(
    delim=st.sampled_from([b"/", b"|", b"\\", b"\x0c", b"*"]),
    pairs=st.lists(
        st.tuples(st.from_regex(r"[$A-Z][A-Z0-9_$]{0,8}", fullmatch=True),
                  st.text(alphabet="ab /|\\*\x0cé", max_size=8)),
        min_size=1, max_size=8, unique_by=lambda kv: kv[0],
    ),
)
def test_text_keywords_round_trip_with_escaped_delimiters(delim, pairs):
    # values may be empty, start or end with the delimiter, or be made only of delimiters
    parsed = parse_keywords(text_segment(dict(pairs), delim), path="t.fcs", segment="TEXT", offset=58)
    assert parsed == {k.upper(): v for k, v in pairs}


# ---- mutation fuzzing ------------------------------------------------------------------------
def _mutants(tmp_path, seeds, n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    paths, descs = [], []
    for i in range(n):
        name, blob = seeds[int(rng.integers(len(seeds)))]
        mutant, desc = mutate(blob, rng)
        path = tmp_path / f"m{i}.fcs"
        path.write_bytes(mutant)
        paths.append(str(path))
        descs.append(f"{name}: {desc}")
    return paths, descs


def _check_outcomes(paths, descs, results) -> collections.Counter:
    bad = [f"{p} ({d}) -> {r['outcome']}" for p, d, r in zip(paths, descs, results, strict=True)
           if r["outcome"].startswith("other")]
    assert not bad, "reader failures:\n" + "\n".join(bad[:20])
    return collections.Counter(r["outcome"] for r in results)


def test_mutants_of_factory_files_read_or_raise_fcs_errors(tmp_path):
    paths, descs = _mutants(tmp_path, seed_files(), 500, seed=1)
    counts = _check_outcomes(paths, descs, run_cases(paths, timeout=30))
    # the corpus reaches both good reads and most kinds of typed error
    assert counts["ok"] >= 25 and len(counts) >= 6, counts


def test_mutants_of_conformance_files_read_or_raise_fcs_errors(tmp_path):
    root = require_shared(CONFORMANCE / "fcs")
    seeds = [s for s in seed_files(root.parent) if "/" in s[0]]
    assert len(seeds) >= 4
    paths, descs = _mutants(tmp_path, seeds, 300, seed=2)
    counts = _check_outcomes(paths, descs, run_cases(paths, timeout=30))
    assert counts["ok"] >= 15 and len(counts) >= 5, counts


def test_runner_reports_hangs_and_runaway_allocations(tmp_path):
    # the runner itself: a case that outlives its timeout is a hang (the child is killed and
    # the next case runs in a fresh one); an allocation beyond the child's address-space
    # limit is a failure, not a dead machine
    big = write_fcs(tmp_path / "big.fcs", np.ones((1_000_000, 4), dtype=np.float32), list("ABCD"))
    hung = run_cases([str(big)], timeout=1e-4)
    assert len(hung) == 1 and hung[0]["outcome"].startswith("other:hang")
    starved = run_cases([str(big)], timeout=30, memory_limit=8 << 20)[0]
    # the mapping or the decode is refused: MemoryError, or mmap's ENOMEM
    assert starved["outcome"].startswith("other:") and "emory" in starved["outcome"], starved


# ---- reader bugs the fuzzer found (kept as plain regression tests) --------------------------
def _file(tmp_path, blob: bytes, name: str = "b.fcs"):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


INTS = np.arange(12, dtype=np.uint64).reshape(4, 3)


def test_values_starting_with_the_delimiter(tmp_path):
    # "K////N": separator, one escaped delimiter (the value "/"), separator; the old reader
    # glued the key to an escape and failed on any value that began with the delimiter
    text = b"/$P1N////$P1B/32/K///x/L/a///E//"
    assert parse_keywords(text, path="t.fcs", segment="TEXT", offset=58) == {
        "$P1N": "/", "$P1B": "32", "K": "/x", "L": "a/", "E": "",
    }
    names = ["/", "/a", "b/", "//"]
    path = write_fcs(tmp_path / "d.fcs", np.ones((2, 4), dtype=np.float32), names,
                     metadata={"NOTE": "/leading and trailing/"})
    data = read_fcs(path)
    assert data.names == names and data.metadata["NOTE"] == "/leading and trailing/"


@pytest.mark.parametrize("digit", ["\u00b2", "\u00b3", "\u00b9"])
def test_header_offset_with_a_superscript_digit_is_a_format_error(tmp_path, digit):
    blob = bytearray(build_dataset(INTS))
    blob[17] = digit.encode("latin-1")[0]  # str.isdigit() is true for '²' but int() refuses it
    with pytest.raises(FCSFormatError, match="HEADER offset field 1") as err:
        read_fcs(_file(tmp_path, bytes(blob)))
    assert err.value.segment == "HEADER" and err.value.offset == 10


@pytest.mark.parametrize("key", ["$TOT", "$PAR", "$NEXTDATA"])
@pytest.mark.parametrize("value", ["1e999", "9" * 5000, "inf", "nan"])
def test_non_finite_integer_keywords_are_keyword_errors(tmp_path, key, value):
    blob = build_dataset(INTS, extra={key: value})
    with pytest.raises(FCSKeywordError, match=re.escape(key)) as err:
        read_fcs(_file(tmp_path, blob))
    assert err.value.segment == "TEXT"


@pytest.mark.parametrize("spill", ["inf,a", "1e999,a,1", "nan,a,1"])
def test_spillover_with_a_non_finite_count_is_a_keyword_error(tmp_path, spill):
    data = read_fcs(_file(tmp_path, build_dataset(INTS, extra={"$SPILLOVER": spill})))
    with pytest.raises(FCSKeywordError, match="channel count"):
        _ = data.spill


def test_zero_event_float_file_with_rescaled_channels(tmp_path):
    blob = build_dataset(np.zeros((0, 2)), datatype="F", extra={"$P2E": "4,1", "$P1G": "2"})
    data = read_fcs(_file(tmp_path, blob))
    assert data.events.shape == (0, 2) and data.events.dtype == np.float32
    assert data.columns([1, 0]).shape == (0, 2)


def test_signalling_nan_values_read_without_runtime_warnings(tmp_path):
    # pytest turns warnings into errors here, as a strict caller would
    values = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    stored = values.view(np.uint32).copy()
    stored[0, 0] = 0x7FA00000  # a signalling NaN: casting it raises FE_INVALID
    path = write_fcs(tmp_path / "s.fcs", stored.view(np.float32), ["A", "B"])
    data = read_fcs(path)
    assert np.isnan(data.columns([0, 1], dtype=np.float64)[0, 0])
    huge = build_dataset(np.array([[1e300, 1.0]]), datatype="D")  # beyond float32
    assert np.isinf(read_fcs(_file(tmp_path, huge), dtype=np.float32).events[0, 0])


def test_negative_data_offsets_are_offset_errors(tmp_path):
    blob = build_dataset(INTS, header_data_offsets=False)
    n_bytes = INTS.size * 2
    blob = re.sub(rb"\$BEGINDATA/\d+/", b"$BEGINDATA/-10/", blob)
    blob = re.sub(rb"\$ENDDATA/\d+/", b"$ENDDATA/%d/" % (n_bytes - 11), blob)
    with pytest.raises(FCSOffsetError, match="negative") as err:
        read_fcs(_file(tmp_path, blob))
    assert err.value.segment == "DATA"


@pytest.mark.parametrize("rng", ["0", "-1", "nan", "inf"])
def test_log_amplification_needs_a_positive_range(tmp_path, rng):
    blob = build_dataset(INTS, extra={"$P2E": "4,1", "$P2R": rng})
    with pytest.raises(FCSKeywordError, match=r"\$P2R"):
        read_fcs(_file(tmp_path, blob))


@pytest.mark.parametrize("amp", ["1e999,1", "4,inf", "nan,1"])
def test_non_finite_amplification_is_a_keyword_error(tmp_path, amp):
    with pytest.raises(FCSKeywordError, match=r"\$P1E"):
        read_fcs(_file(tmp_path, build_dataset(INTS, extra={"$P1E": amp})))


@pytest.mark.parametrize("tot", [10**15, 2**62, 10**30])
def test_huge_tot_is_refused_before_allocating(tmp_path, tot):
    path = _file(tmp_path, build_dataset(INTS, extra={"$TOT": str(tot)}))
    tracemalloc.start()
    try:
        with pytest.raises(FCSDataLengthError, match=f"TOT={tot}"):
            read_fcs(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak
