"""FlowJo 9 (Mac) gates on its 256-bin display: rectangles, ranges and polygons read from a
FlowJo 9 workspace hold exactly the events whose display bin has its centre in the gate, an
ellipse the events whose display bin lies wholly inside the ellipse through its handles.

The workspaces here are written by hand in the FlowJo 9 layout (what ``gating._flowjo._mac``
reads). Their events sit on a grid of four per display bin, two of them on the bin's lower
edges, so an event on an edge must land in its own bin; the expected counts are worked out
bin by bin with integer arithmetic.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gating import (
    PolygonGate,
    RectangleGate,
    apply_plan,
    compile_plan,
    read_fcs,
    read_flowjo,
    write_fcs,
)
from gating._flowjo._mac import (
    _EDGE,
    _bin_outline,
    _bin_range,
    _ellipse_inside,
    _ellipse_outline,
)

N_BINS = 128  # events on display bins 0..127 of both axes (of 256)
# drawn polygon, in display bins (A: 4 raw units per bin; B: log, 64 bins per decade)
POLYGON = [(10, 10), (50, 12), (40, 30), (70, 52), (21, 45), (25, 29)]
RECT = [(20, 30), (61, 70)]  # corners in bins, under the polygon
RANGE = (10.25, 90)  # bins; 10.25 is no bin edge: the first bin whose centre is in is 10
# ellipse handles in bins: the ends of the axis from (20, 20) to (60, 60), then of the
# perpendicular one; centre (40, 40), semi-axes 20 * sqrt(2) and 8 * sqrt(2)
ELLIPSE = [(20, 20), (60, 60), (48, 32), (32, 48)]


def _a(bins: float) -> float:
    return 4.0 * bins  # A: linear, 0 to 1024 over the 256 bins


def _b(bins: float) -> float:
    return 10.0 ** (bins / 64.0)  # B: log, 1 to 10**4 over the 256 bins


def _workspace(tmp_path, polygon=POLYGON, ellipse=ELLIPSE) -> tuple:
    def vertices(points, scale_y=True):
        return "".join(
            f'<Vertex x="{_a(x)!r}" y="{_b(y) if scale_y else 0.0!r}" />' for x, y in points
        )

    rect = [RECT[0], (RECT[1][0], RECT[0][1]), RECT[1], (RECT[0][0], RECT[1][1])]
    text = f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE Workspace>
<Workspace version="2.0" flowJoVersion="9.6.4"><SampleList><Sample sampleID="1">
 <Keywords><Keyword name="$FIL" value="s.fcs" /></Keywords>
 <Parameter name="A" log="0" lowValue="0" highValue="1024" decades="0" />
 <Parameter name="B" log="1" lowValue="1" highValue="10000" decades="4" />
 <SampleNode sampleID="1" name="s.fcs" count="-1">
  <Population name="P" count="-1"><PolygonGate>
   <Polygon name="P" xAxisName="A" yAxisName="B"><Polygon>{vertices(polygon)}</Polygon></Polygon>
  </PolygonGate>
   <Population name="R" count="-1"><PolygonGate>
    <PolyRect name="R" xAxisName="A" yAxisName="B"><Polygon>{vertices(rect)}</Polygon></PolyRect>
   </PolygonGate></Population>
  </Population>
  <Population name="G" count="-1"><PolygonGate>
   <Range name="G" xAxisName="A"><Polygon>{vertices([(RANGE[0], 0), (RANGE[1], 0)], False)}</Polygon></Range>
  </PolygonGate></Population>
  <Population name="E" count="-1"><PolygonGate>
   <Ellipse name="E" xAxisName="A" yAxisName="B"><Polygon>{vertices(ellipse)}</Polygon></Ellipse>
  </PolygonGate></Population>
 </SampleNode></Sample></SampleList></Workspace>"""
    path = tmp_path / "w.xml"
    path.write_text(text, encoding="latin-1")
    # four events per bin: quarter-bin steps, the first on the bin's lower edges
    q = np.arange(4 * N_BINS) / 4.0
    qa, qb = np.meshgrid(q, q)
    events = np.column_stack([_a(qa.ravel()), _b(qb.ravel())])
    data = read_fcs(write_fcs(tmp_path / "s.fcs", events, ["A", "B"]))
    return read_flowjo(path), data


def _inside_or_on(polygon, x2, y2) -> np.ndarray:
    """Points (given doubled, as integers) inside the polygon or on its outline, exactly."""
    v = [(2 * px, 2 * py) for px, py in polygon]
    inside = np.zeros(x2.shape, dtype=bool)
    on = np.zeros(x2.shape, dtype=bool)
    for (x1, y1), (x2_, y2_) in zip(v, v[1:] + v[:1], strict=True):
        cross = (x2_ - x1) * (y2 - y1) - (y2_ - y1) * (x2 - x1)
        on |= (cross == 0) & (np.minimum(x1, x2_) <= x2) & (x2 <= np.maximum(x1, x2_)) & (
            np.minimum(y1, y2_) <= y2) & (y2 <= np.maximum(y1, y2_))
        spans = (y1 > y2) != (y2_ > y2)
        # x2 < x1 + (y2 - y1)(x2_ - x1)/(y2_ - y1), multiplied through by (y2_ - y1)
        sign = 1 if y2_ > y1 else -1
        inside ^= spans & ((x2 - x1) * (y2_ - y1) * sign < (y2 - y1) * (x2_ - x1) * sign)
    return inside | on


def _bins_in_polygon(polygon) -> np.ndarray:
    i, j = np.meshgrid(np.arange(N_BINS), np.arange(N_BINS), indexing="ij")
    return _inside_or_on(polygon, 2 * i + 1, 2 * j + 1)  # the bins' centres, doubled


def test_polygon_range_and_rectangle_hold_the_events_of_their_bins(tmp_path):
    ws, data = _workspace(tmp_path)
    strategy = ws.strategy_for("1")
    counts = apply_plan(compile_plan(strategy, data), data).counts
    got = dict(zip(counts["id"], counts["count"], strict=True))
    polygon = _bins_in_polygon(POLYGON)
    i = np.arange(N_BINS)
    in_x = (i >= RECT[0][0]) & (i < RECT[1][0])
    in_rect = in_x[:, None] & ((i >= RECT[0][1]) & (i < RECT[1][1]))[None, :]
    assert got["/P"] == 16 * polygon.sum()  # 4 x 4 events per bin
    assert got["/P/R"] == 16 * (polygon & in_rect).sum()
    assert got["/G"] == 16 * N_BINS * ((i >= 10) & (i < 90)).sum()
    # the binned count is not the count of the polygon as drawn: the test can tell them apart
    qa, qb = np.meshgrid(np.arange(4 * N_BINS), np.arange(4 * N_BINS), indexing="ij")
    drawn = _inside_or_on([(4 * x, 4 * y) for x, y in POLYGON], qa * 2, qb * 2).sum()
    assert drawn != got["/P"]


def test_binned_gates_are_display_scale_boxes_and_outlines(tmp_path):
    ws, _ = _workspace(tmp_path)
    gates = ws.strategy_for("1").populations()
    rect, poly, rng = gates["/P/R"], gates["/P"], gates["/G"]
    assert isinstance(rect, RectangleGate) and rect.inclusive == "min"
    flat = [v * 256 for bound in (*rect.bounds, *rng.bounds) for v in bound]
    assert flat == pytest.approx([20, 61, 30, 70, 10, 90], abs=2 * _EDGE)
    assert all(d.transform for d in (*rect.dimensions, *poly.dimensions, *rng.dimensions))
    assert isinstance(poly, PolygonGate) and len(poly.vertices) > len(POLYGON)
    for x, y in poly.vertices:  # every corner a bin corner, moved down by _EDGE
        for v in (x * 256 + _EDGE, y * 256 + _EDGE):
            assert v == pytest.approx(round(v), abs=1e-9)
    assert "display bins" in ws.strategy_for("1").notes["/P"]


def test_bin_outline_of_a_square_and_of_bins_touching_at_a_corner():
    square = _bin_outline(((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)))
    assert square == tuple((x - _EDGE, y - _EDGE) for x, y in [(0, 0), (4, 0), (4, 4), (0, 4)])
    # a thin diagonal band: its bins touch at corners only and stay one outline
    band = _bin_outline(((0.0, 0.2), (0.2, 0.0), (4.0, 3.8), (3.8, 4.0)))
    assert band is not None
    corners = {(round(x + _EDGE), round(y + _EDGE)) for x, y in band}
    assert {(0, 0), (4, 4), (1, 1), (3, 3)} <= corners


def test_bin_outline_refuses_bins_in_two_regions(tmp_path, caplog):
    # a dumbbell whose bar passes between two rows of bin centres: two regions of bins
    dumbbell = [(0, 0), (4, 0), (4, 1.8), (10, 1.8), (10, 0), (14, 0), (14, 4), (10, 4),
                (10, 2.2), (4, 2.2), (4, 4), (0, 4)]
    assert _bin_outline(tuple((float(x), float(y)) for x, y in dumbbell)) is None
    with caplog.at_level(logging.WARNING, logger="gating._flowjo._mac"):
        ws, _ = _workspace(tmp_path, polygon=dumbbell)
    assert any("polygons gated as drawn" in r.getMessage() and "/P" in r.getMessage()
               for r in caplog.records)
    assert len(ws.strategy_for("1").populations()["/P"].vertices) == len(dumbbell)


def test_bin_range_takes_the_bins_whose_centres_are_in():
    assert _bin_range(10.0, 90.0) == (10 - _EDGE, 90 - _EDGE)
    assert _bin_range(90.0, 10.25) == (10 - _EDGE, 90 - _EDGE)
    assert _bin_range(10.6, 11.4) == (11 - _EDGE, 11 - _EDGE)  # no centre inside: empty


def _in_ellipse(dx, dy) -> np.ndarray:
    """ELLIPSE, exactly: points at (dx, dy) bins from its centre inside or on it. Along the
    axes ``(dx + dy) / sqrt(2)`` and ``(dy - dx) / sqrt(2)``, semi-axes squared 800 and 128."""
    return 256 * (dx + dy) ** 2 + 1600 * (dy - dx) ** 2 <= 1600 * 256


def test_ellipse_holds_the_events_of_the_bins_wholly_inside_it(tmp_path):
    ws, data = _workspace(tmp_path)
    strategy = ws.strategy_for("1")
    counts = apply_plan(compile_plan(strategy, data), data).counts
    got = dict(zip(counts["id"], counts["count"], strict=True))
    i, j = np.meshgrid(np.arange(N_BINS) - 40, np.arange(N_BINS) - 40, indexing="ij")
    corners = [_in_ellipse(i + di, j + dj) for di in (0, 1) for dj in (0, 1)]
    wholly = np.logical_and.reduce(corners)
    assert got["/E"] == 16 * wholly.sum()  # 4 x 4 events per bin
    # the handles are bin corners on the ellipse: the bins they touch inside it count
    assert wholly[60 - 1, 60 - 1] and wholly[20, 20]
    # neither the bins whose centres are inside nor the events inside give that count
    centres = _in_ellipse(i + 0.5, j + 0.5)
    assert 16 * centres.sum() > got["/E"]
    qa, qb = np.meshgrid(np.arange(4 * N_BINS) / 4 - 40, np.arange(4 * N_BINS) / 4 - 40, indexing="ij")
    assert _in_ellipse(qa, qb).sum() > got["/E"]
    gate = strategy.populations()["/E"]
    assert isinstance(gate, PolygonGate) and all(d.transform for d in gate.dimensions)
    for x, y in gate.vertices:  # the outline of the bins: corners on bin corners
        for v in (x * 256 + _EDGE, y * 256 + _EDGE):
            assert v == pytest.approx(round(v), abs=1e-9)
    assert "wholly inside the ellipse" in strategy.notes["/E"]


def test_ellipse_without_a_bin_wholly_inside_is_gated_as_drawn(tmp_path, caplog):
    # a circle of radius 0.5 bins about a bin centre: no bin's four corners are inside
    tiny = ((40.0, 40.5), (41.0, 40.5), (40.5, 40.0), (40.5, 41.0))
    assert _ellipse_outline(tiny) is None
    with caplog.at_level(logging.WARNING, logger="gating._flowjo._mac"):
        ws, _ = _workspace(tmp_path, ellipse=list(tiny))
    assert any("ellipses gated as drawn" in r.getMessage() and "/E" in r.getMessage()
               for r in caplog.records)
    assert ws.strategy_for("1").populations()["/E"].kind == "ellipsoid"


def test_ellipse_passes_through_all_four_handles_when_they_are_not_perpendicular():
    # the pairs (0, 0)-(4, 2) and (0, 1.5)-(4, 0.5): same midpoint, not at right angles (an
    # ellipse with the second axis perpendicular to the first misses the second pair)
    handles = ((0.0, 0.0), (4.0, 2.0), (0.0, 1.5), (4.0, 0.5))
    h = np.array(handles)
    on = _ellipse_inside(handles, h[:, 0], h[:, 1])
    beyond = [2.0, 1.0] + 1.001 * (h - [2.0, 1.0])  # just outside each handle, away from the centre
    within = [2.0, 1.0] + 0.999 * (h - [2.0, 1.0])
    assert on.all() and not _ellipse_inside(handles, beyond[:, 0], beyond[:, 1]).any()
    assert _ellipse_inside(handles, within[:, 0], within[:, 1]).all()
    assert _ellipse_outline(((0.0, 0.0), (4.0, 2.0), (2.0, 1.0), (6.0, 3.0))) is None  # parallel
