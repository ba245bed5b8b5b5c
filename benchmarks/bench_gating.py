"""Gating end to end: phenoflow vs FlowKit ``GatingStrategy.gate_sample``, same file and XML.

Read + compensate + transform + gate + counts, for an 11-gate Gating-ML strategy on a
24-channel file (20x20 spillover compensation, logicle on the fluorescence channels, a
scatter polygon, a singlet polygon, CD3/CD4/CD8 rectangles, CCR6/CXCR3/CCR4 gates, a Boolean
Tc17) at 1M and 10M events, and the official Gating-ML set 3 tiled to 1.25M events. Each run in
a fresh process; JIT compile time is measured separately (a warm-up on a small file of the
same layout) and excluded through the on-disk cache. Both tools' counts are compared.

Run: ``python -m benchmarks.bench_gating [--events 1000000,10000000] [--tools ...]``.
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-set3", action="store_true")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], Path(args.one[1]), Path(args.one[2]))))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="phenoflow-gating-") as tmp:
        xml = Path(tmp) / "strategy.xml"
        xml.write_text(strategy_xml())
        cases = [(f"{int(n):,} x 24, 11 gates", int(n), xml) for n in args.events.split(",")]
        if not args.no_set3 and SHARED.exists():
            cases.append(("Gating-ML set 3 x10 (1.25M)", -10, SHARED / "xml" / "gates3.xml"))
            subset = flowkit_compatible(SHARED / "xml" / "gates3.xml", Path(tmp) / "gates3_fk.xml")
            cases.append(("set 3 x10, gates FlowKit can run", -10, subset))
        for label, n, strategy in cases:
            fcs = Path(tmp) / f"case{abs(n)}.fcs"
            warm = fcs.with_name("warm-" + fcs.name)
            if n > 0:
                make_file(fcs, n)
                make_file(warm, 200_000, seed=1)  # big enough to load parallel and serial kernels
            else:
                make_set3(fcs, -n)
                make_set3(warm, 1)
            results = {}
            for tool in args.tools.split(","):
                res = measure("benchmarks.bench_gating", [tool, str(fcs), str(strategy)], repeats=args.repeats)
                results[tool] = res
                print(label, tool, {k: v for k, v in res.items() if k != "counts"}, file=sys.stderr, flush=True)
            if "phenoflow" in results:
                with tempfile.TemporaryDirectory(prefix="numba-cold-") as cold:
                    # an empty Numba cache: the warm-up call compiles every kernel it uses
                    res = measure(
                        "benchmarks.bench_gating", ["phenoflow", str(fcs), str(strategy)],
                        repeats=1, env={"NUMBA_CACHE_DIR": cold},
                    )
                if "error" not in res:
                    results["phenoflow (cold JIT cache)"] = res
            ours = results.get("phenoflow", {}).get("counts", {})
            theirs = results.get("flowkit", {}).get("counts", {})
            shared = sorted(set(ours) & set(theirs))
            agree = sum(ours[g] == theirs[g] for g in shared)
            for tool, res in results.items():
                if "error" in res:
                    rows.append({"case": label, "tool": tool, "seconds": f"error: {res['error']}"})
                    continue
                base = results.get("flowkit", {}).get("seconds")
                rows.append(
                    {
                        "case": label,
                        "tool": tool,
                        "seconds": f"{res['seconds']:.3f}",
                        "speed-up vs FlowKit": f"{base / res['seconds']:.1f}x" if base else "",
                        "peak RSS MiB": f"{res['peak_rss_mb']:.0f}",
                        "JIT/import s": f"{res['setup_seconds']:.2f}",
                        "counts equal": f"{agree}/{len(shared)}" if shared else "",
                    }
                )
            disagree = {g: (ours[g], theirs[g]) for g in shared if ours[g] != theirs[g]}
            if disagree:
                print(f"{label}: counts differ (phenoflow, FlowKit): {disagree}", file=sys.stderr)
            fcs.unlink()
            warm.unlink()
    md = write_table(
        "gating",
        rows,
        ["case", "tool", "seconds", "speed-up vs FlowKit", "peak RSS MiB", "JIT/import s", "counts equal"],
        title="Gating end to end: read + compensate + transform + gate + counts (best of 3)",
    )
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
