"""Gating end to end: phenoflow vs FlowKit ``GatingStrategy.gate_sample``, same file and XML.

Read + compensate + transform + gate + counts, for an 11-gate Gating-ML strategy on a
24-channel file (20x20 spillover compensation, logicle on the fluorescence channels, a
scatter polygon, a singlet polygon, CD3/CD4/CD8 rectangles, CCR6/CXCR3/CCR4 gates, a Boolean
Tc17) at 1M and 10M events, and the official Gating-ML set 3 tiled to 1.25M events. Each run in
a fresh process; JIT compile time is measured separately (a warm-up on a small file of the
same layout) and excluded through the on-disk cache. Both tools' counts are compared.

File layouts (``--layouts``), the same events in each:

- ``aligned``: written by phenoflow's own writer, float32 with DATA 8-byte aligned (read
  zero-copy);
- ``flowio``: written by ``flowio.create_fcs`` (what flowio and FlowKit write, like most
  instrument files): float32 with DATA at an offset that is not a multiple of 4;
- ``int32``: an integer FCS 3.0 file (``$DATATYPE I``, 32-bit, ``$PnR 262144`` so values are
  masked to 18 bits), DATA at an unaligned offset, written by a few lines of this module (flowio
  writes only floats), values rounded and clipped to ``[0, 262143]``.

Besides seconds, speed-up and peak RSS each row gives "x one pass": the run's seconds over the
time of one memory pass over the plan's used columns (their bytes in the file, divided by the
memory bandwidth measured in the same run with a numpy pass over a 512 MiB array; single
thread, best of 5). FlowKit runs once per file at 10M events (about 45 s and 9 GB).

Run: ``python -m benchmarks.bench_gating [--events 1000000,10000000] [--tools ...]
[--layouts aligned,flowio,int32]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._harness import measure, peak_rss_mb, write_table

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "gatingml2"
FLUOR = [f"FL{i}-A" for i in range(1, 21)]
CHANNELS = ["FSC-A", "FSC-H", "SSC-A", *FLUOR, "Time"]
MARKERS = dict(zip(FLUOR[:7], ["CD3", "CD4", "CD8", "CCR6", "CXCR3", "CCR4", "LiveDead"], strict=True))


def spillover(n: int = 20, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = np.eye(n)
    for i in range(n):
        for j in range(max(0, i - 2), min(n, i + 3)):
            if i != j:
                s[i, j] = rng.uniform(0.01, 0.25)
    return s


def make_file(path: Path, n: int, seed: int = 0) -> None:
    """24-channel events with lymphocytes, doublets, debris and T-cell subsets."""
    from gating import Logicle, write_fcs

    rng = np.random.default_rng(seed)
    logicle = Logicle(t=262144, w=0.5, m=4.5, a=0)
    kind = rng.choice(4, size=n, p=[0.6, 0.1, 0.2, 0.1])  # lymph, doublet, debris, mono
    fsc = np.where(kind == 2, rng.normal(20_000, 6000, n), rng.normal(70_000, 9000, n))
    fsc[kind == 3] = rng.normal(120_000, 15000, (kind == 3).sum())
    ssc = np.where(kind == 3, rng.normal(90_000, 15000, n), rng.normal(20_000, 5000, n))
    fsch = fsc * np.where(kind == 1, 0.55, 0.85) + rng.normal(0, 2000, n)
    scale = np.full((n, 20), 0.2) + rng.normal(0, 0.04, (n, 20))
    t_cell = (kind == 0) & (rng.random(n) < 0.7)
    cd8 = t_cell & (rng.random(n) < 0.35)
    cd4 = t_cell & ~cd8
    scale[t_cell, 0] += 0.45  # CD3
    scale[cd4, 1] += 0.45
    scale[cd8, 2] += 0.45
    for col, frac in ((3, 0.2), (4, 0.3), (5, 0.25)):
        scale[t_cell & (rng.random(n) < frac), col] += 0.4
    scale[rng.random(n) < 0.08, 6] += 0.5  # dead cells
    true = logicle.inverse(scale.ravel()).reshape(n, 20)
    fluor = true @ spillover()
    events = np.column_stack([fsc, fsch, ssc, fluor, np.sort(rng.uniform(0, 1e5, n))])
    spill = pd.DataFrame(spillover(), index=FLUOR, columns=FLUOR)
    channels = [{"name": c, "marker": MARKERS.get(c, "")} for c in CHANNELS]
    write_fcs(path, events.astype(np.float32), channels, metadata={"$TIMESTEP": "0.01"}, spill=spill)


def spill_text() -> str:
    """The benchmark spillover as a ``$SPILLOVER`` value."""
    s = spillover()
    return ",".join([str(len(FLUOR)), *FLUOR, *(repr(float(v)) for v in s.ravel())])


def write_flowio(path: Path, events: np.ndarray) -> None:
    """``events`` (float32) written by ``flowio.create_fcs``: DATA starts where TEXT ends."""
    from array import array

    import flowio

    values = array("f")
    values.frombytes(np.ascontiguousarray(events, dtype="<f4").tobytes())
    with open(path, "wb") as fh:
        flowio.create_fcs(
            fh, values, CHANNELS, opt_channel_names=[MARKERS.get(c, "") for c in CHANNELS],
            metadata_dict={"SPILLOVER": spill_text()},
        )


def write_integer(path: Path, events: np.ndarray, *, byteord: str = "1,2,3,4") -> int:
    """``events`` rounded and clipped to 18 bits, as an integer FCS 3.0 file (32-bit values,
    ``$PnR`` 262144); DATA follows TEXT directly, at an unaligned offset. Returns that offset."""
    n, p = events.shape
    dtype = np.dtype("<u4" if byteord == "1,2,3,4" else ">u4")
    data = np.clip(np.rint(events), 0, 262143).astype(dtype)
    kw = {"$BYTEORD": byteord, "$DATATYPE": "I", "$MODE": "L", "$NEXTDATA": "0", "$PAR": str(p),
          "$TOT": str(n), "$SPILLOVER": spill_text(), "$BEGINANALYSIS": "0",
          "$ENDANALYSIS": "0", "$BEGINSTEXT": "0", "$ENDSTEXT": "0", "$CYT": "bench"}
    for i, c in enumerate(CHANNELS, 1):
        kw.update({f"$P{i}N": c, f"$P{i}B": "32", f"$P{i}E": "0,0", f"$P{i}R": "262144"})
        if MARKERS.get(c):
            kw[f"$P{i}S"] = MARKERS[c]
    begin = 0
    for _ in range(4):  # the offsets are part of TEXT: iterate to a fixed point
        end = begin + data.nbytes - 1
        body = {**kw, "$BEGINDATA": str(begin), "$ENDDATA": str(end)}
        text = ("/" + "/".join(f"{k}/{v}" for k, v in body.items()) + "/").encode()
        begin = 58 + len(text)
    fits = begin + data.nbytes - 1 <= 99_999_999
    header = b"FCS3.0    " + b"".join(
        f"{v:>8}".encode()
        for v in (58, begin - 1, begin if fits else 0, begin + data.nbytes - 1 if fits else 0, 0, 0)
    )
    with open(path, "wb") as fh:
        fh.write(header + text)
        assert fh.tell() == begin
        data.tofile(fh)
    return begin


def make_layout(path: Path, n: int, layout: str, seed: int = 0) -> None:
    """The benchmark events (:func:`make_file`) stored in ``layout``."""
    if layout == "aligned":
        make_file(path, n, seed=seed)
        return
    from gating import read_fcs

    tmp = path.with_name("src-" + path.name)
    make_file(tmp, n, seed=seed)
    events = np.asarray(read_fcs(tmp).raw)
    if layout == "flowio":
        write_flowio(path, events)
    elif layout == "int32":
        write_integer(path, events)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    del events
    tmp.unlink()


def memory_bandwidth(size: int = 512 << 20, repeats: int = 5) -> float:
    """Bytes per second of one numpy pass (a sum) over a ``size``-byte float32 array."""
    x = np.ones(size // 4, dtype=np.float32)
    x.sum()
    best = min(_timed(x.sum) for _ in range(repeats))
    return x.nbytes / best


def _timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def used_bytes(fcs: Path, xml: Path) -> int:
    """Bytes in the file of the columns the compiled plan reads."""
    from gating import compile_plan, load_strategy, read_fcs

    sample = read_fcs(fcs)
    plan = compile_plan(load_strategy(xml), sample)
    bits = sample.channels["bits"].to_numpy()
    return int(sum(int(bits[c]) // 8 for c in plan.columns) * sample.n_events)


def _rect(gid: str, parent: str | None, dims: list[tuple[str, str, str, float | None, float | None]]) -> str:
    par = f' gating:parent_id="{parent}"' if parent else ""
    out = [f'<gating:RectangleGate gating:id="{gid}"{par}>']
    for name, comp, xform, lo, hi in dims:
        bounds = (f' gating:min="{lo}"' if lo is not None else "") + (
            f' gating:max="{hi}"' if hi is not None else ""
        )
        out.append(
            f'<gating:dimension gating:compensation-ref="{comp}" gating:transformation-ref="{xform}"{bounds}>'
            f'<data-type:fcs-dimension data-type:name="{name}"/></gating:dimension>'
        )
    return "\n".join([*out, "</gating:RectangleGate>"])


def _poly(gid: str, parent: str | None, x: str, y: str, vertices: list[tuple[float, float]]) -> str:
    par = f' gating:parent_id="{parent}"' if parent else ""
    dims = "".join(
        f'<gating:dimension gating:compensation-ref="uncompensated" gating:transformation-ref="lin">'
        f'<data-type:fcs-dimension data-type:name="{c}"/></gating:dimension>'
        for c in (x, y)
    )
    verts = "".join(
        f'<gating:vertex><gating:coordinate data-type:value="{a}"/>'
        f'<gating:coordinate data-type:value="{b}"/></gating:vertex>'
        for a, b in vertices
    )
    return f'<gating:PolygonGate gating:id="{gid}"{par}>{dims}{verts}</gating:PolygonGate>'


def strategy_xml() -> str:
    """The 11-gate strategy as Gating-ML 2.0 (read by both tools)."""
    fl = dict(zip(["CD3", "CD4", "CD8", "CCR6", "CXCR3", "CCR4", "LiveDead"], FLUOR, strict=False))
    gates = [
        _poly("Lymph", None, "FSC-A", "SSC-A", [(0.15, 0.0), (0.42, 0.0), (0.42, 0.2), (0.15, 0.2)]),
        _poly("Singlets", "Lymph", "FSC-A", "FSC-H", [(0.1, 0.07), (0.5, 0.36), (0.5, 0.5), (0.1, 0.12)]),
        _rect("Live", "Singlets", [(fl["LiveDead"], "FCS", "lgcl", None, 0.45)]),
        _rect("CD3", "Live", [(fl["CD3"], "FCS", "lgcl", 0.42, None)]),
        _rect("CD3neg", "Live", [(fl["CD3"], "FCS", "lgcl", None, 0.42)]),
        _rect("CD4", "CD3", [(fl["CD4"], "FCS", "lgcl", 0.42, None), (fl["CD8"], "FCS", "lgcl", None, 0.42)]),
        _rect("CD8", "CD3", [(fl["CD8"], "FCS", "lgcl", 0.42, None), (fl["CD4"], "FCS", "lgcl", None, 0.42)]),
        _rect("CCR6", "CD8", [(fl["CCR6"], "FCS", "lgcl", 0.4, None)]),
        _rect("CXCR3", "CD8", [(fl["CXCR3"], "FCS", "lgcl", 0.4, None)]),
        _rect("CCR4", "CD8", [(fl["CCR4"], "FCS", "lgcl", 0.4, None)]),
        '<gating:BooleanGate gating:id="Tc17" gating:parent_id="CD8"><gating:and>'
        '<gating:gateReference gating:ref="CCR6"/><gating:gateReference gating:ref="CXCR3"/>'
        '<gating:gateReference gating:ref="CCR4" gating:use-as-complement="true"/>'
        "</gating:and></gating:BooleanGate>",
    ]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gating:Gating-ML xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating" '
        'xmlns:transforms="http://www.isac-net.org/std/Gating-ML/v2.0/transformations" '
        'xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes">\n'
        '<transforms:transformation transforms:id="lgcl"><transforms:logicle transforms:T="262144" '
        'transforms:W="0.5" transforms:M="4.5" transforms:A="0"/></transforms:transformation>\n'
        '<transforms:transformation transforms:id="lin"><transforms:flin transforms:T="262144" '
        'transforms:A="0"/></transforms:transformation>\n' + "\n".join(gates) + "\n</gating:Gating-ML>\n"
    )


def make_set3(path: Path, copies: int) -> None:
    """The official set-3 sample tiled ``copies`` times (same TEXT, same spillover)."""
    from gating import read_fcs, write_fcs

    src = read_fcs(SHARED / "fcs" / "9399_1_3_NKR.fcs", dtype=np.float64)
    events = np.tile(src.raw.astype(np.float32), (copies, 1))
    channels = src.channels[["name", "marker", "range"]].to_dict("records")
    meta = {k: v for k, v in src.metadata.items() if k in ("$TIMESTEP",)}
    write_fcs(path, events, channels, metadata=meta, spill=src.spill)


def flowkit_compatible(xml: Path, out: Path) -> Path:
    """``xml`` without the gates FlowKit cannot evaluate (non-square spectrum matrices), and
    without anything that depends on them; written as Gating-ML for both tools."""
    from gating import BooleanGate, QuadrantGate, Strategy, load_strategy, write_gatingml

    strategy = load_strategy(xml)
    bad_matrices = {k for k, m in strategy.matrices.items() if len(m.fluorochromes) != len(m.detectors)}
    dropped: set[str] = set()
    kept = []
    for gate in strategy.gates:  # document order; dependencies resolved below
        dims = (
            [d.dimension for d in gate.dividers] if isinstance(gate, QuadrantGate)
            else [] if isinstance(gate, BooleanGate) else list(gate.dimensions)
        )
        refs = [r for r, _ in gate.operands] if isinstance(gate, BooleanGate) else []
        if any(d.compensation in bad_matrices for d in dims):
            dropped.add(gate.id)
        kept.append((gate, refs))
    changed = True
    while changed:
        changed = False
        for gate, refs in kept:
            if gate.id in dropped:
                continue
            if gate.parent in dropped or any(r in dropped for r in refs):
                dropped.add(gate.id)
                changed = True
    quadrant_ids = {
        q.id: g.id for g in strategy.gates if isinstance(g, QuadrantGate) for q in g.quadrants
    }
    dropped |= {q for q, g in quadrant_ids.items() if g in dropped}
    reduced = Strategy(
        gates=tuple(g for g, _ in kept if g.id not in dropped),
        transforms=strategy.transforms,
        ratios=strategy.ratios,
        matrices={k: m for k, m in strategy.matrices.items() if k not in bad_matrices},
        name=strategy.name,
    )
    write_gatingml(reduced, out)
    return out


def _phenoflow(fcs: Path, xml: Path) -> pd.Series:
    from gating import apply_plan, compile_plan, load_strategy, read_fcs

    sample = read_fcs(fcs)
    strategy = load_strategy(xml)
    result = apply_plan(compile_plan(strategy, sample), sample)
    return result.counts.set_index("id")["count"]


def _flowkit(fcs: Path, xml: Path) -> pd.Series:
    import flowkit

    sample = flowkit.Sample(str(fcs))
    strategy = flowkit.parse_gating_xml(str(xml))
    report = strategy.gate_sample(sample).report
    report = report[report["gate_type"] != "Quadrant"] if "gate_type" in report else report
    return report.groupby("gate_name")["count"].first()


def run_one(tool: str, fcs: Path, xml: Path) -> dict:
    func = {"phenoflow": _phenoflow, "flowkit": _flowkit}[tool]  # cold-cache runs: env only
    warm = fcs.with_name("warm-" + fcs.name)
    start = time.perf_counter()
    if tool == "phenoflow" and warm.exists():
        func(warm, xml)  # imports and JIT cache loads
    setup = time.perf_counter() - start
    start = time.perf_counter()
    counts = func(fcs, xml)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "setup_seconds": setup,
        "peak_rss_mb": peak_rss_mb(),
        "counts": {str(k): int(v) for k, v in counts.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=3, metavar=("TOOL", "FCS", "XML"))
    parser.add_argument("--events", default="1000000,10000000")
    parser.add_argument("--tools", default="phenoflow,flowkit")
    parser.add_argument("--layouts", default="aligned,flowio,int32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flowkit-repeats", type=int, default=3, help="below 5M events")
    parser.add_argument("--no-set3", action="store_true")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold JIT cache runs")
    parser.add_argument(
        "--files", metavar="DIR",
        help="write the benchmark files to DIR and keep them; files already there are reused "
        "(the 10M files take minutes to write)",
    )
    parser.add_argument(
        "--baseline", metavar="DIR",
        help="a checkout of an earlier phenoflow (e.g. `git worktree add DIR HEAD~1`), timed "
        "as 'phenoflow (baseline)', runs alternating with the current code's",
    )
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], Path(args.one[1]), Path(args.one[2]))))
        return 0
    bandwidth = memory_bandwidth()
    print(f"memory bandwidth (numpy sum, 1 thread): {bandwidth / 1e9:.1f} GB/s", file=sys.stderr)
    rows = []
    layouts = args.layouts.split(",")
    tools = args.tools.split(",")
    with tempfile.TemporaryDirectory(prefix="phenoflow-gating-") as scratch:
        tmp = args.files or scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        xml = Path(tmp) / "strategy.xml"
        xml.write_text(strategy_xml())
        cases = [
            (f"{int(n):,} x 24, 11 gates", int(n), xml, layout)
            for n in args.events.split(",") for layout in layouts
        ]
        if not args.no_set3 and SHARED.exists():
            cases.append(("Gating-ML set 3 x10 (1.25M)", -10, SHARED / "xml" / "gates3.xml", "aligned"))
            subset = flowkit_compatible(SHARED / "xml" / "gates3.xml", Path(tmp) / "gates3_fk.xml")
            cases.append(("set 3 x10, gates FlowKit can run", -10, subset, "aligned"))
        flowkit_at: dict[str, dict] = {}  # case -> FlowKit's result and layout (10M: one run)
        phenoflow_at: dict[str, dict] = {}  # case -> phenoflow's counts on the aligned file
        for label, n, strategy, layout in cases:
            fcs = Path(tmp) / f"case{abs(n)}-{layout}.fcs"
            warm = fcs.with_name("warm-" + fcs.name)
            if n > 0:
                for path, size, seed in ((fcs, n, 0), (warm, 200_000, 1)):  # warm: JIT loads
                    if not (args.files and path.exists()):
                        make_layout(path, size, layout, seed=seed)
            else:
                make_set3(fcs, -n)
                make_set3(warm, 1)
            one_pass = used_bytes(fcs, strategy) / bandwidth
            results = {}
            # phenoflow (and the baseline) alternate run by run: both see the same machine load
            ours_runs = [("phenoflow", None)] if "phenoflow" in tools else []
            if args.baseline:
                ours_runs.append(("phenoflow (baseline)", args.baseline))
            for _ in range(args.repeats):
                for name, cwd in ours_runs:
                    res = measure("benchmarks.bench_gating", ["phenoflow", str(fcs), str(strategy)],
                                  repeats=1, cwd=cwd)
                    best = results.get(name)
                    if best is None or "error" in res or (
                        "error" not in best and res["seconds"] < best["seconds"]
                    ):
                        results[name] = res
            if "flowkit" in tools:
                big = n >= 5_000_000
                if not (big and label in flowkit_at):  # FlowKit at 10M: once (~45 s, 9 GB)
                    res = measure("benchmarks.bench_gating", ["flowkit", str(fcs), str(strategy)],
                                  repeats=1 if big else args.flowkit_repeats)
                    results["flowkit"] = res
                    if "error" not in res and layout != "int32":
                        flowkit_at.setdefault(label, {**res, "layout": layout})
            for tool, res in results.items():
                print(label, layout, tool, {k: v for k, v in res.items() if k != "counts"},
                      file=sys.stderr, flush=True)
            if "phenoflow" in results and not args.no_cold and layout == layouts[0]:
                with tempfile.TemporaryDirectory(prefix="numba-cold-") as cold:
                    # an empty Numba cache: the warm-up call compiles every kernel it uses
                    res = measure(
                        "benchmarks.bench_gating", ["phenoflow", str(fcs), str(strategy)],
                        repeats=1, env={"NUMBA_CACHE_DIR": cold},
                    )
                if "error" not in res:
                    results["phenoflow (cold JIT cache)"] = res
            ours = results.get("phenoflow", {}).get("counts", {})
            if layout == "aligned":
                phenoflow_at[label] = ours
            baseline = results.get("flowkit") or flowkit_at.get(label, {})
            base_note = "" if "flowkit" in results else (
                f" (FlowKit on the {baseline['layout']} file)" if baseline else ""
            )
            if layout == "int32":  # quantised events: only a FlowKit run on this file compares
                theirs = results.get("flowkit", {}).get("counts", {})
            else:  # the same events: FlowKit here, or on another layout, or phenoflow aligned
                theirs = baseline.get("counts") or phenoflow_at.get(label, {})
            shared = sorted(set(ours) & set(theirs))
            agree = sum(ours[g] == theirs[g] for g in shared)
            for tool, res in results.items():
                if "error" in res:
                    rows.append({"case": label, "layout": layout, "tool": tool,
                                 "seconds": f"error: {res['error']}"})
                    continue
                base = baseline.get("seconds")
                rows.append(
                    {
                        "case": label,
                        "layout": layout,
                        "tool": tool,
                        "seconds": f"{res['seconds']:.3f}",
                        "speed-up vs FlowKit": (
                            f"{base / res['seconds']:.1f}x" + (base_note if tool != "flowkit" else "")
                        ) if base else "",
                        "peak RSS MiB": f"{res['peak_rss_mb']:.0f}",
                        "x one pass": f"{res['seconds'] / one_pass:.1f}",
                        "JIT/import s": f"{res['setup_seconds']:.2f}",
                        "counts equal": f"{agree}/{len(shared)}" if shared else "",
                    }
                )
            disagree = {g: (ours[g], theirs[g]) for g in shared if ours[g] != theirs[g]}
            if disagree:
                print(f"{label} {layout}: counts differ: {disagree}", file=sys.stderr)
            if not args.files or n < 0:
                fcs.unlink()
                warm.unlink()
    md = write_table(
        "gating",
        rows,
        ["case", "layout", "tool", "seconds", "speed-up vs FlowKit", "peak RSS MiB", "x one pass",
         "JIT/import s", "counts equal"],
        title=(
            "Gating end to end: read + compensate + transform + gate + counts (best of "
            f"{args.repeats}; FlowKit once at 10M); one memory pass = used-column bytes / "
            f"{bandwidth / 1e9:.1f} GB/s"
        ),
    )
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
