"""FlowJo workspaces gated by phenoflow against FlowJo's own population counts.

``flowjo/flowjo_population_counts.csv`` holds, per workspace, the sample's event count (the
``(root)`` row) and the count FlowJo recorded for each population. Every row is checked, by
the rule its gate type and FlowJo's number allow:

* ``(root)``: the sample's event count, exactly;
* rectangles and quadrants: exactly (FlowJo compares raw values, as we do);
* the ellipse of ``single_ellipse_51_events.wsp``: exactly 51;
* polygons: within ``POLYGON_TOLERANCE`` of FlowJo, which evaluates them on 256-bin data;
* ``-1``: FlowJo recorded no count (the gates were made while the FCS file was not loaded).
  Those rows are checked against FlowKit's evaluation of the same workspace and file;
* ``STALE``: rows whose FlowJo count contradicts the workspace's own gate. Each is checked
  against FlowKit and against a hand computation from the gate's coordinates, and is asserted
  to still disagree with FlowJo, so the list cannot outlive the problem.
"""

from __future__ import annotations

import csv
import functools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from gating import apply_plan, compile_plan, read_fcs
from gating._flowjo._workspace import read_flowjo
from tests.conftest import CONFORMANCE, require_shared

FLOWJO = CONFORMANCE / "flowjo"
COUNTS = FLOWJO / "flowjo_population_counts.csv"
POLYGON_TOLERANCE = 2  # events: FlowJo's 256-bin polygons versus exact geometry, 100-event file
STALE = {
    ("simple_line_example/simple_poly_and_rect_v2_poly50.wsp", "poly1"): (
        "FlowJo's count attribute says 0, but the polygon's top edge runs from y=131668.6 to "
        "y=130495.1 over the line y=131072 of the file's 100 points, so the left half (50) "
        "is inside; the attribute was not recomputed after the vertices were edited"
    ),
}
KIND_NAMES = {
    "rectangle": "RectangleGate",
    "quadrant": "RectangleGate",  # FlowJo writes quadrants as four open-sided rectangles
    "polygon": "PolygonGate",
    "ellipsoid": "EllipsoidGate",
}


def _rows() -> list[dict[str, str]]:
    if not COUNTS.exists():
        return [{"wsp": "missing", "population": "missing"}]
    with open(COUNTS, newline="") as fh:
        return list(csv.DictReader(fh))


def _row_id(row: dict[str, str]) -> str:
    return f"{Path(row['wsp']).stem}:{row.get('population') or '(root)'}"


def _population_path(row: dict[str, str]) -> str:
    parents = [p for p in row["parent_path"].split("/") if p and p != "root"]
    return "/" + "/".join([*parents, row["population"]])


@functools.cache
def _ours(wsp: str, sample: str, fcs_file: str):
    path = require_shared(FLOWJO / wsp)
    workspace = read_flowjo(path)
    strategy = workspace.strategy_for(sample)
    data = read_fcs(require_shared(path.parent / fcs_file))
    result = apply_plan(compile_plan(strategy, data), data)
    return workspace, strategy, result


@functools.cache
def _flowkit(wsp: str, sample: str, fcs_file: str) -> dict[str, int]:
    """FlowKit's counts for the same workspace and file, by population path (the oracle for
    rows where FlowJo recorded nothing)."""
    import flowkit

    path = FLOWJO / wsp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fk = flowkit.Workspace(str(path), fcs_samples=str(path.parent / fcs_file))
        fk.analyze_samples(sample_id=sample, use_mp=False)
        report = fk.get_analysis_report()
    return {
        "/" + "/".join([*(p for p in r.gate_path if p != "root"), r.gate_name]): int(r["count"])
        for _, r in report.iterrows()
    }


@pytest.mark.parametrize("row", _rows(), ids=_row_id)
def test_flowjo_population_count(row):
    require_shared(COUNTS)
    workspace, strategy, result = _ours(row["wsp"], row["sample_name"], row["fcs_file"])
    flowjo = int(row["flowjo_count"])
    if row["parent_path"] == "(root)":
        assert result.n_events == flowjo
        return
    pid = _population_path(row)
    table = result.counts.set_index("id")
    assert pid in table.index, f"{pid} is not a population of {row['wsp']}"
    ours = int(table.loc[pid, "count"])
    # the CSV row is the workspace's own count attribute, and the gate type is FlowJo's
    assert workspace.sample(row["sample_name"]).counts[pid] == flowjo
    kind = strategy.populations()[pid].kind
    assert KIND_NAMES[kind] == row["gate_type"]

    key = (row["wsp"], row["population"])
    if key in STALE:
        assert ours == _flowkit(row["wsp"], row["sample_name"], row["fcs_file"])[pid]
        assert ours != flowjo, f"{key} agrees with FlowJo now: remove it from STALE"
    elif flowjo == -1:
        assert ours == _flowkit(row["wsp"], row["sample_name"], row["fcs_file"])[pid]
    elif kind == "polygon":
        assert abs(ours - flowjo) <= POLYGON_TOLERANCE
    else:  # rectangles, quadrants and the ellipse: exact
        assert ours == flowjo


def test_every_population_has_a_row():
    """No population of a workspace escapes the comparison (and no row names a missing one)."""
    rows = [r for r in _rows() if r.get("parent_path") not in (None, "(root)")]
    require_shared(COUNTS)
    by_wsp: dict[tuple[str, str, str], set[str]] = {}
    for r in rows:
        by_wsp.setdefault((r["wsp"], r["sample_name"], r["fcs_file"]), set()).add(
            _population_path(r)
        )
    for key, paths in by_wsp.items():
        _, strategy, _ = _ours(*key)
        assert set(strategy.populations()) == paths, key
    workspaces = {p.relative_to(FLOWJO).as_posix() for p in FLOWJO.glob("*/*.wsp")}
    assert workspaces == {r["wsp"] for r in _rows()}


def test_stale_polygon_by_hand():
    """The STALE polygon, counted from its own coordinates without any gating code."""
    wsp = "simple_line_example/simple_poly_and_rect_v2_poly50.wsp"
    path = require_shared(FLOWJO / wsp)
    polygon = read_flowjo(path).strategy_for("1").populations()["/poly1"]
    events = read_fcs(path.parent / "data_set_simple_line_100.fcs").columns([0, 1])
    x, y = events[:, 0].astype(float), events[:, 1].astype(float)
    assert np.all(y == 131072.0)
    # the sample's polygon vertices in raw units, straight from the XML (both axes are linear)
    sample_part = path.read_text().split("<SampleList>")[1]
    polygon_xml = sample_part.split("<gating:PolygonGate")[1].split("</gating:PolygonGate>")[0]
    values = [float(v) for v in re.findall(r'data-type:value="([^"]+)"', polygon_xml)]
    raw = list(zip(values[::2], values[1::2], strict=True))
    assert len(raw) == len(polygon.vertices) == 4
    (x0, y0), (x1, y1) = raw[1], raw[2]
    crossing = x0 + (y0 - 131072.0) / (y0 - y1) * (x1 - x0)  # top edge meets the line here
    left = max(raw[0][0], raw[1][0])  # the left edge is left of every point
    assert x.min() > left
    assert int(np.count_nonzero(x <= crossing)) == 50
    ours = _ours(wsp, "data_set_simple_line_100.fcs", "data_set_simple_line_100.fcs")[2]
    assert int(ours.counts.set_index("id").loc["/poly1", "count"]) == 50
