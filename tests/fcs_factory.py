"""Build FCS files byte by byte for tests: every version, datatype, width and byte order.

``gating.write_fcs`` writes only what phenoflow itself produces (FCS 3.1 float32); the reader
must handle everything else too, so tests assemble those files here from first principles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np


def pack_values(values: np.ndarray, bits: Sequence[int], byteorder: Sequence[int], datatype: str) -> bytes:
    """Encode an (events x channels) array as an FCS DATA segment.

    ``byteorder`` lists, per byte position, the 1-based significance rank (FCS ``$BYTEORD``).
    """
    n, p = values.shape
    if datatype in ("F", "D"):
        width = 4 if datatype == "F" else 8
        stored = np.ascontiguousarray(values, dtype=f"<f{width}")
        ints = stored.view(f"<u{width}").astype(np.uint64)
        bits = [8 * width] * p
    else:
        ints = values.astype(np.uint64)
    if any(b % 8 for b in bits):  # bit-packed: one stream, least significant bit first
        stream, filled = 0, 0
        for e in range(n):
            for c in range(p):
                stream |= (int(ints[e, c]) & ((1 << bits[c]) - 1)) << filled
                filled += bits[c]
        return stream.to_bytes((filled + 7) // 8, "little")
    buf = bytearray()
    little = list(byteorder) == sorted(byteorder)
    big = list(byteorder) == sorted(byteorder, reverse=True)
    for e in range(n):
        for c in range(p):
            width = bits[c] // 8
            le = int(ints[e, c]).to_bytes(width, "little")
            if little or width == 1:
                buf += le
            elif big:
                buf += le[::-1]
            else:
                buf += bytes(le[rank - 1] for rank in byteorder)
    return bytes(buf)


def text_segment(keywords: Mapping[str, str], delim: bytes = b"/") -> bytes:
    parts = []
    for key, value in keywords.items():
        parts.append(key.encode("utf-8").replace(delim, delim * 2))
        parts.append(str(value).encode("utf-8").replace(delim, delim * 2))
    return delim + delim.join(parts) + delim


def build_dataset(
    values: np.ndarray,
    *,
    version: str = "FCS3.1",
    datatype: str = "I",
    bits: Sequence[int] | None = None,
    byteorder: str = "1,2,3,4",
    names: Sequence[str] | None = None,
    ranges: Sequence[float] | None = None,
    extra: Mapping[str, str] | None = None,
    delim: bytes = b"/",
    header_data_offsets: bool = True,
    text_data_offsets: bool = True,
    supplemental: Mapping[str, str] | None = None,
    nextdata: int = 0,
    data_end_fudge: int = 0,
) -> bytes:
    """One complete dataset (HEADER, TEXT, optional STEXT, DATA) as bytes."""
    n, p = values.shape
    if bits is None:
        bits = [32 if datatype == "F" else 64 if datatype == "D" else 16] * p
    order = [int(v) for v in byteorder.split(",")]
    names = list(names or [f"Ch{i}" for i in range(1, p + 1)])
    data = pack_values(values, bits, order, datatype)
    kw: dict[str, str] = {
        "$BYTEORD": byteorder,
        "$DATATYPE": datatype,
        "$MODE": "L",
        "$PAR": str(p),
        "$TOT": str(n),
        "$NEXTDATA": str(nextdata),
    }
    for i in range(p):
        kw[f"$P{i + 1}N"] = names[i]
        kw[f"$P{i + 1}B"] = str(bits[i])
        kw[f"$P{i + 1}E"] = "0,0"
        kw[f"$P{i + 1}R"] = str(ranges[i] if ranges else 2 ** bits[i])
    kw.update(extra or {})
    stext = text_segment(supplemental, delim) if supplemental else b""
    begin = end = s_begin = s_end = 0
    text_start = 58
    for _ in range(8):  # offsets live inside TEXT: iterate until they stop moving
        body = dict(kw)
        if text_data_offsets:
            body["$BEGINDATA"] = str(begin)
            body["$ENDDATA"] = str(end)
        if supplemental:
            body["$BEGINSTEXT"] = str(s_begin)
            body["$ENDSTEXT"] = str(s_end)
        text = text_segment(body, delim)
        text_end = text_start + len(text) - 1
        new = (text_end + 1, text_end + len(stext)) if supplemental else (0, 0)
        data_begin = text_end + 1 + len(stext)
        positions = (data_begin, data_begin + len(data) - 1 + data_end_fudge, *new)
        if positions == (begin, end, s_begin, s_end):
            break
        begin, end, s_begin, s_end = positions
    header = version.encode() + b"    " + b"".join(
        f"{v:>8d}".encode()
        for v in (
            text_start,
            text_end,
            begin if header_data_offsets else 0,
            end if header_data_offsets else 0,
            0,
            0,
        )
    )
    blob = header + text + stext + data
    assert len(header) == 58
    return blob


def build_file(datasets: Sequence[dict]) -> bytes:
    """Chain datasets through ``$NEXTDATA`` (each dict holds ``build_dataset`` arguments)."""
    blobs = [build_dataset(**d) for d in datasets]
    # $NEXTDATA depends on the lengths of earlier blobs; rebuild with the right offsets.
    out = b""
    for i, d in enumerate(datasets):
        if i + 1 < len(datasets):
            nxt = len(blobs[i])
            for _ in range(4):
                blob = build_dataset(**{**d, "nextdata": nxt})
                if len(blob) == nxt:
                    break
                nxt = len(blob)
            blobs[i] = blob
        out += blobs[i]
    return out


# ---- mutation fuzzing ----------------------------------------------------------------------
# A mutation engine over real FCS files and a runner that reads each mutant in a child process
# (so a hang, a crash of the interpreter or a runaway allocation is a reported outcome, not a
# dead test run). Shared by tests/gating/test_fcs_fuzz.py and benchmarks/fuzz_fcs.py.

_HUGE = ("99999999999999999999", "9" * 5000, "1e999", "-1", "0", "2147483648", "nan", "x", "")
_KEYWORD_VALUES: dict[str, tuple[str, ...]] = {
    "$PAR": (*_HUGE, "100000", "99999", "1.5"),
    "$TOT": (*_HUGE, "4611686018427387904", "1000000000000"),
    "$DATATYPE": ("I", "F", "D", "A", "i", "", "FF"),
    "$BYTEORD": ("4,3,2,1", "1,2,3,4", "1,2", "2,1", "1,2,3", "3,4,1,2", "0,1", "1,1", "",
                 "1,2,3,4,5,6,7,8", "8,7,6,5,4,3,2,1", "2,1,4,3", "1", "a,b"),
    "$MODE": ("L", "C", "U", ""),
    "$NEXTDATA": ("58", "1", "-58", "1e999", "99999999999", "0", "x"),
    "$BEGINDATA": ("0", "-1", "-100", "1", "58", "99999999999", "1e999", "x"),
    "$ENDDATA": ("0", "-1", "1", "57", "99999999999", "x"),
    "$BEGINSTEXT": ("0", "1", "-1", "58", "99999999999"),
    "$ENDSTEXT": ("0", "1", "57", "99999999999"),
    "$TIMESTEP": ("0", "nan", "inf", "-1", "1e308", "x"),
    "$SPILLOVER": ("inf,a", "1e999,a,1", "2,a,b,1,0,0", "1,a,x", "-1", "", "nan,a,1",
                   "3,a,b,c," + ",".join(["1"] * 9), "100000000"),
}
_CHANNEL_VALUES: dict[str, tuple[str, ...]] = {
    "B": ("0", "1", "7", "12", "24", "48", "64", "65", "128", "-8", "x", "", "1e999", "16.0"),
    "E": ("1,0", "4,1", "4,0", "nan,1", "1e999,1", "-1,1", "1", "", "a,b", "4,1e999", "1e-300,1"),
    "R": ("0", "-1", "nan", "inf", "1e999", "1", "1e300", "x", "", "2"),
    "G": ("0", "nan", "-1", "1e-300", "inf", "x"),
    "N": ("", "Time", "FSC-A", "Ch1", "a/b"),
    "DATATYPE": ("I", "F", "D", "X"),
}


def segments(blob: bytes) -> dict[str, tuple[int, int]]:
    """Best-effort HEADER/TEXT/DATA byte ranges of the first dataset (end exclusive, clamped)."""
    size = len(blob)
    out = {"HEADER": (0, min(58, size))}
    fields = []
    for i in range(6):
        chunk = blob[10 + 8 * i : 18 + 8 * i].strip()
        fields.append(int(chunk) if chunk.isdigit() else 0)
    t0, t1, d0, d1 = fields[:4]
    if t1 > t0:
        out["TEXT"] = (min(t0, size), min(t1 + 1, size))
    if (d0, d1) == (0, 0) and "TEXT" in out:
        found = re.search(rb"\$BEGINDATA.(\d+).\$ENDDATA.(\d+)", blob[slice(*out["TEXT"])])
        if found is None:
            found = re.search(rb"\$BEGINDATA.(\d+)", blob[slice(*out["TEXT"])])
            d0 = int(found.group(1)) if found else 0
            d1 = size - 1
        else:
            d0, d1 = int(found.group(1)), int(found.group(2))
    if d1 > d0:
        out["DATA"] = (min(d0, size), min(d1 + 1, size))
    return out


def _keywords(text: bytes) -> tuple[bytes, list[list[bytes]]]:
    """The delimiter and (key, value) pairs of a TEXT segment, escapes kept as written."""
    delim = text[:1]
    pieces = re.split(rb"(?<!" + re.escape(delim) + rb")" + re.escape(delim) + rb"(?!" + re.escape(delim) + rb")", text[1:])
    if pieces and pieces[-1] == b"":
        pieces.pop()
    pairs = [[pieces[i], pieces[i + 1]] for i in range(0, len(pieces) - 1, 2)]
    return delim, pairs


def _rebuild(blob: bytes, pairs: list[list[bytes]], delim: bytes, *, fix_offsets: bool) -> bytes:
    """Re-emit the first dataset with new TEXT pairs; DATA (and offsets when asked) follow."""
    seg = segments(blob)
    data = blob[slice(*seg["DATA"])] if "DATA" in seg else b""
    tail_from = seg["DATA"][1] if "DATA" in seg else len(blob)
    begin = end = 0
    text = b""
    for _ in range(8):
        body = []
        for key, value in pairs:
            if fix_offsets and key.strip().upper() == b"$BEGINDATA":
                value = str(begin).encode()
            elif fix_offsets and key.strip().upper() == b"$ENDDATA":
                value = str(end).encode()
            body += [key, value]
        text = delim + delim.join(body) + delim
        new = (58 + len(text), 58 + len(text) + len(data) - 1) if data else (0, 0)
        if new == (begin, end):
            break
        begin, end = new
    h_data = (begin, end) if fix_offsets else (
        int(blob[26:34].strip() or 0) if blob[26:34].strip().isdigit() else 0,
        int(blob[34:42].strip() or 0) if blob[34:42].strip().isdigit() else 0,
    )
    header = blob[:10].ljust(10) + b"".join(
        f"{v:>8d}".encode()[-8:] for v in (58, 58 + len(text) - 1, *h_data, 0, 0)
    )
    return header + text + data + blob[tail_from:]


def _edit_text(blob: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    seg = segments(blob)
    if "TEXT" not in seg:
        return blob, "no TEXT"
    delim, pairs = _keywords(blob[slice(*seg["TEXT"])])
    if not pairs:
        return blob, "no keywords"
    keys = [k.strip().upper().decode("latin-1") for k, _ in pairs]
    par = [v.strip() for k, v in pairs if k.strip().upper() == b"$PAR"]
    n_par = int(par[0]) if par and par[0].isdigit() and len(par[0]) < 5 else 1
    n_par = min(max(n_par, 1), 1000)
    fix = bool(rng.random() < 0.8)
    what = int(rng.integers(7))
    if what <= 2:  # a structural keyword gets a hostile value
        if what == 0:
            key = str(rng.choice(list(_KEYWORD_VALUES)))
            value = str(rng.choice(_KEYWORD_VALUES[key]))
        else:
            field = str(rng.choice(list(_CHANNEL_VALUES)))
            key = f"$P{int(rng.integers(1, n_par + 1))}{field}"
            value = str(rng.choice(_CHANNEL_VALUES[field]))
        if key in keys:
            pairs[keys.index(key)][1] = value.encode()
        else:
            pairs.append([key.encode(), value.encode()])
        desc = f"{key}={value[:20]!r}"
    elif what == 3:  # an empty value (reads like an escaped delimiter)
        i = int(rng.integers(len(pairs)))
        pairs[i][1] = b""
        desc = f"empty {keys[i]}"
    elif what == 4:  # a duplicate keyword with another value
        i = int(rng.integers(len(pairs)))
        pairs.insert(int(rng.integers(len(pairs) + 1)), [pairs[i][0], pairs[i][1] + b"7"])
        desc = f"duplicate {keys[i]}"
    elif what == 5:  # a keyword removed
        i = int(rng.integers(len(pairs)))
        del pairs[i]
        desc = f"removed {keys[i]}"
    else:  # the delimiter: another character everywhere, or a bad first byte
        new = bytes([int(rng.choice([0, 32, 65, 49, 124, 92, 12, 255]))])
        if rng.random() < 0.5:
            return blob[: seg["TEXT"][0]] + new + blob[seg["TEXT"][0] + 1 :], f"delimiter byte {new!r}"
        delim = new
        desc = f"delimiter {new!r} throughout"
    return _rebuild(blob, pairs, delim, fix_offsets=fix), desc + ("" if fix else " (offsets stale)")


def _edit_offsets(blob: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    seg = segments(blob)
    size = len(blob)
    field = int(rng.integers(6))
    targets = [size, size - 1, size + 1000, 0, 1, 57, 99_999_999, seg.get("TEXT", (58, 58))[0]]
    if "DATA" in seg:
        targets += [seg["DATA"][0] - 1, seg["DATA"][1], (seg["DATA"][0] + seg["DATA"][1]) // 2]
    value = int(rng.choice(targets))
    raw = f"{value:>8d}".encode()[-8:]
    pos = 10 + 8 * field
    return blob[:pos] + raw + blob[pos + 8 :], f"HEADER field {field + 1} = {value}"


def mutate(blob: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random mutation of an FCS file (a few stacked now and then) and what it was."""
    steps = []
    for _ in range(1 if rng.random() < 0.75 else int(rng.integers(2, 4))):
        kind = int(rng.integers(6))
        seg = segments(blob)
        if kind == 0 and blob:  # flipped bits or bytes in one segment
            name = str(rng.choice(list(seg)))
            lo, hi = seg[name]
            if hi <= lo:
                continue
            out = bytearray(blob)
            for _ in range(int(rng.integers(1, 9))):
                i = int(rng.integers(lo, hi))
                out[i] = int(rng.integers(256)) if rng.random() < 0.5 else out[i] ^ (1 << int(rng.integers(8)))
            blob = bytes(out)
            steps.append(f"flipped bytes in {name}")
        elif kind == 1:  # truncated, often at a segment boundary
            cuts = [b for lo_hi in seg.values() for b in lo_hi] + [int(rng.integers(len(blob) + 1))]
            cut = max(0, int(rng.choice(cuts)) + int(rng.integers(-2, 3)))
            blob = blob[:cut]
            steps.append(f"truncated to {cut} bytes")
        elif kind == 2:
            blob, desc = _edit_offsets(blob, rng)
            steps.append(desc)
        elif kind == 3 and "DATA" in seg:  # a chunk of one segment copied over another
            src = seg[str(rng.choice(list(seg)))]
            dst = seg[str(rng.choice(list(seg)))]
            n = int(rng.integers(1, 64))
            chunk = blob[src[0] : src[0] + n]
            at = int(rng.integers(dst[0], max(dst[0] + 1, dst[1])))
            blob = blob[:at] + chunk + blob[at + len(chunk) :]
            steps.append("spliced bytes")
        else:
            blob, desc = _edit_text(blob, rng)
            steps.append(desc)
    return blob, "; ".join(steps) or "unchanged"


def seed_files(conformance=None) -> list[tuple[str, bytes]]:
    """Factory-made files of many layouts, plus the conformance FCS files when present."""
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 256, size=(40, 3)).astype(np.uint64)
    floats = rng.normal(100, 50, size=(40, 3))
    seeds = [
        ("i16-be-2.0-log", build_dataset(ints, version="FCS2.0", byteorder="4,3,2,1", ranges=[1024] * 3,
                                         extra={"$P2E": "4,1", "$P3G": "2", "$P1N": "Time", "$TIMESTEP": "0.1"})),
        ("i10-packed-3.0", build_dataset(ints, version="FCS3.0", bits=[10, 12, 7], ranges=[1024, 4096, 128],
                                         extra={"$P1E": "3,1"})),
        ("i24-mixed", build_dataset(ints, bits=[24, 8, 32], byteorder="1,2,3,4")),
        ("i32-3412", build_dataset(ints, bits=[32] * 3, byteorder="3,4,1,2")),
        ("f32-le", build_dataset(floats, datatype="F", extra={"$SPILLOVER": "2,Ch1,Ch2,1,0.1,0.2,1"})),
        ("f32-be-stext", build_dataset(floats, datatype="F", byteorder="4,3,2,1", supplemental={"X": "y"})),
        ("d64-be-2.0", build_dataset(floats, version="FCS2.0", datatype="D", byteorder="8,7,6,5,4,3,2,1")),
        ("i16-textonly", build_dataset(ints, header_data_offsets=False, delim=b"|")),
        ("empty-events", build_dataset(np.zeros((0, 2)), datatype="F")),
        ("two-datasets", build_file([{"values": ints}, {"values": floats, "datatype": "D"}])),
    ]
    if conformance is not None:
        for rel in ("fcs/test_data_2d_01.fcs", "fcs/test_comp_example.fcs",
                    "fcs/noncompliant/data_start_offset_discrepancy_example.fcs",
                    "gatingml2/fcs/data1.fcs", "gatingml2/fcs/data2.fcs"):
            path = conformance / rel
            if path.exists():
                seeds.append((rel, path.read_bytes()))
    return seeds


def read_case(path: str) -> dict:
    """Read one file the way a user would and touch every value; the outcome as a dict.

    Runs in the fuzz child process. ``outcome`` is ``"ok"``, the name of an ``FCSError``
    subclass, or ``"other:<type>: <message>"`` (a failure).
    """
    import os
    import time
    import tracemalloc
    import warnings

    from gating import FCSError, FCSWarning, read_fcs

    size = os.path.getsize(path)
    tracemalloc.start()
    t0 = time.perf_counter()
    shape = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a stray RuntimeWarning would break a strict caller
            warnings.simplefilter("ignore", FCSWarning)
            data = read_fcs(path)
            for ds in {0, data.n_datasets - 1}:
                d = data if ds == 0 else read_fcs(path, dataset=ds)
                shape = (d.n_events, d.n_channels)
                for arr in (d.events, d.raw, d.columns(list(range(d.n_channels))[::-1])):
                    if arr.shape != shape:
                        raise AssertionError(f"array shape {arr.shape} but declared {shape}")
                    with np.errstate(all="ignore"):  # the values are anything: touch them all
                        np.asarray(arr, dtype=np.float64).sum()
                _ = d.spill
        outcome = "ok"
    except FCSError as exc:
        outcome = type(exc).__name__
        if not str(exc).startswith(str(path)) or not exc.segment:
            outcome = f"other:{outcome} without its file and segment: {exc}"
    except Exception as exc:  # every other exception is what the fuzzer hunts for
        outcome = f"other:{type(exc).__name__}: {str(exc)[:200]}"
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if outcome == "ok" or not outcome.startswith("other"):
        # a decoded value takes at most 8 bytes per stored bit, twice (events and raw)
        limit = 160 * size + (32 << 20)
        if peak > limit:
            outcome = f"other:allocation of {peak} bytes for a {size}-byte file"
    return {"outcome": outcome, "seconds": seconds, "peak": peak, "size": size,
            "shape": list(shape) if shape else None}


def _child() -> None:  # pragma: no cover - runs in the fuzz child process
    import json
    import resource
    import sys

    paths = json.loads(sys.stdin.readline())
    warm = seed_files()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # compile/load every kernel before the limit
        for name, blob in warm:
            p = f"{tmp}/{name}.fcs"
            with open(p, "wb") as fh:
                fh.write(blob)
            read_case(p)
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if limit:
        with open("/proc/self/statm") as fh:
            vsize = int(fh.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (vsize + limit, resource.RLIM_INFINITY))
    print(json.dumps({"ready": True}), flush=True)
    for i, path in enumerate(paths):
        print(json.dumps({"start": i}), flush=True)
        rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"done": i, **read_case(path), "rss_kb": rss_kb}), flush=True)


def run_cases(
    paths: Sequence[str], *, timeout: float = 20.0, memory_limit: int = 2 << 30, cwd: str | None = None
) -> list[dict]:
    """Read every file in child processes; a hang or a crash is an outcome of its case.

    Parameters
    ----------
    paths
        FCS files to read.
    timeout
        Seconds one case may take before it counts as a hang (the child is killed).
    memory_limit
        Address space the child may grow by after its warm-up (``RLIMIT_AS``).
    cwd
        Working directory of the child (the repository root).

    Returns
    -------
    list[dict]
        One result per path, in order (see :func:`read_case`; ``"other:hang"`` and
        ``"other:crash ..."`` added here).
    """
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = cwd or str(Path(__file__).resolve().parents[1])
    results: list[dict | None] = [None] * len(paths)
    todo = list(range(len(paths)))
    while todo:
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with tempfile.TemporaryFile("w+") as err, subprocess.Popen(
            [sys.executable, "-c", "from tests.fcs_factory import _child; _child()", str(memory_limit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=root, env=env, text=True,
        ) as proc:
            current, finished = _drive(proc, [paths[i] for i in todo], todo, results, timeout)
            if not finished and current is None:
                err.seek(0)
                raise RuntimeError(f"fuzz child failed before its first case: {err.read()[-2000:]}")
        if finished:
            break
        if proc.returncode == -9:
            why = "other:hang"
        elif proc.returncode < 0:
            why = f"other:crash (signal {-proc.returncode})"
        else:
            why = f"other:crash (exit {proc.returncode})"
        results[current] = {"outcome": why, "seconds": timeout, "peak": 0, "size": 0, "shape": None}
        todo = [i for i in todo if results[i] is None]
    return [r for r in results if r is not None]


def _drive(proc, batch: list[str], todo: list[int], results: list, timeout: float) -> tuple[int | None, bool]:
    """Feed one child its batch and collect results until it finishes, dies or hangs."""
    import json
    import selectors
    import time

    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(batch) + "\n")
    proc.stdin.flush()
    current: int | None = None
    deadline = time.monotonic() + 120.0  # start-up and warm-up
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                proc.kill()
                break
            line = proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if "start" in msg:
                current = todo[msg["start"]]
                deadline = time.monotonic() + timeout
            elif "done" in msg:
                if msg["seconds"] > timeout:  # finished, but later than a case may take
                    msg["outcome"] = f"other:hang (finished after {msg['seconds']:.3g} s)"
                results[todo[msg["done"]]] = msg
                current = None
                if all(results[i] is not None for i in todo):
                    return None, True
    proc.wait()
    return current, False
