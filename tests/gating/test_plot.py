"""Gate plots: drawn headless, outlines equal to the strategy's geometry, counts from apply_plan."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from gating import (
    BooleanGate,
    Dimension,
    EllipsoidGate,
    RectangleGate,
    Strategy,
    apply_plan,
    compile_plan,
    preset,
    read_fcs,
    write_fcs,
)
from gating._plot._gates import plot_gate, plot_gates

LIVE = "/Lymphocytes/Singlets/Live"
CD8 = f"{LIVE}/CD3+/CD8+"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from engine.demo import make_demo_study

    study = make_demo_study(tmp_path_factory.mktemp("plot_demo"), n_events=20_000, n_genes=200)
    sample = read_fcs(study.fcs[0])
    strategy = preset("study_panel")
    plan = compile_plan(strategy, sample)
    result = apply_plan(plan, sample, membership=True)
    return strategy, sample, plan, result


def _row(result, population):
    return result.counts.set_index("id").loc[population]


def _main_axes(fig):
    return fig.axes[0]


def _lines(ax, label):
    return [line for line in ax.lines if line.get_label() == label]


def _xy(line):
    return tuple(map(float, line.get_xdata())), tuple(map(float, line.get_ydata()))


def _check_png(path, fig):
    img = imread(path)
    width, height = fig.get_size_inches() * fig.dpi
    assert img.shape[:2] == (round(height), round(width))
    colours = np.unique(img.reshape(-1, img.shape[-1]), axis=0)
    assert len(colours) > 20  # not a blank canvas


def test_polygon_outline_density_and_title(demo, tmp_path):
    strategy, sample, plan, result = demo
    pid = "/Lymphocytes/Singlets"
    out = tmp_path / "singlets.png"
    fig = plot_gate(plan, sample, pid, path=out)
    _check_png(out, fig)
    ax = _main_axes(fig)
    (outline,) = _lines(ax, "gate")
    vertices = np.asarray(strategy.populations()[pid].vertices, dtype=np.float64)
    np.testing.assert_array_equal(outline.get_xydata(), np.vstack([vertices, vertices[:1]]))
    row = _row(result, pid)
    title = ax.get_title(loc="left")
    assert pid in title and f"{row['count']:,} events" in title
    assert f"{row['percent_of_parent']:.2f}%" in title
    assert "FSC-A" in ax.get_xlabel() and "linear" in ax.get_xlabel()
    # the density is the parent's (Lymphocytes) events in the gate's axes: FSC / 262144
    parent = result.membership["/Lymphocytes"].to_numpy()
    raw = sample.columns(["FSC-A", "FSC-H"], dtype=np.float64)[parent] / 262144.0
    (image,) = ax.images
    shown = np.ma.filled(image.get_array(), 0)
    x0, x1, y0, y1 = image.get_extent()
    want, _, _ = np.histogram2d(raw[:, 0], raw[:, 1], bins=shown.shape[::-1],
                                range=[(x0, x1), (y0, y1)])
    np.testing.assert_array_equal(shown, want.T)
    assert shown.sum() >= 0.99 * row["parent_count"]


def test_range_gate_is_a_histogram_with_its_bound(demo, tmp_path):
    _, sample, plan, result = demo
    out = tmp_path / "live.png"
    fig = plot_gate(plan, sample, LIVE, path=out)
    _check_png(out, fig)
    ax = _main_axes(fig)
    assert not ax.images
    (line,) = _lines(ax, "gate")
    assert list(line.get_xdata()) == [0.45, 0.45]
    hist = next(p for p in ax.patches if p.get_label() == "parent")
    total = hist.get_data().values.sum()
    parent_count = _row(result, LIVE)["parent_count"]
    assert 0.99 * parent_count <= total <= parent_count
    assert "LiveDead (BV510-A)" in ax.get_xlabel() and "logicle" in ax.get_xlabel()
    assert f"{_row(result, LIVE)['count']:,} events" in ax.get_title(loc="left")


def test_rectangle_open_sides_run_to_the_plot_edge(demo, tmp_path):
    strategy, sample, plan, result = demo
    fig = plot_gate(plan, sample, CD8, path=tmp_path / "cd8.png")
    _check_png(tmp_path / "cd8.png", fig)
    ax = _main_axes(fig)
    (x_lo, _), (_, y_hi) = strategy.populations()[CD8].bounds  # CD8 >= 0.45, CD4 < 0.45
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    segments = sorted(tuple(map(tuple, line.get_xydata())) for line in _lines(ax, "gate"))
    assert segments == sorted([
        ((x_lo, ylim[0]), (x_lo, y_hi)),
        ((x_lo, y_hi), (xlim[1], y_hi)),
    ])
    assert "CD8 (PerCP-Cy5.5-A)" in ax.get_xlabel() and "CD4 (BV605-A)" in ax.get_ylabel()
    assert f"{_row(result, CD8)['count']:,} events" in ax.get_title(loc="left")


def test_quadrant_splits_cell_and_percentages(demo, tmp_path):
    _, sample, plan, result = demo
    naive = f"{CD8}/Naive"
    fig = plot_gate(plan, sample, naive, path=tmp_path / "naive.png")
    _check_png(tmp_path / "naive.png", fig)
    ax = _main_axes(fig)
    # one vertical (x = CD45RA split) and one horizontal (y = CCR7 split) line, axes-long
    assert sorted(_xy(line) for line in _lines(ax, "split")) == sorted(
        [((0.41, 0.41), (0.0, 1.0)), ((0.0, 1.0), (0.41, 0.41))]
    )
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    segments = sorted(tuple(map(tuple, line.get_xydata())) for line in _lines(ax, "gate"))
    assert segments == sorted([((0.41, 0.41), (0.41, ylim[1])), ((0.41, 0.41), (xlim[1], 0.41))])
    texts = {t.get_text() for t in ax.texts if t.get_label() == "cell"}
    want = {
        f"{name}\n{_row(result, f'{CD8}/{name}')['percent_of_parent']:.1f}%"
        for name in ("Naive", "CM", "EM", "TEMRA")
    }
    assert texts == want
    assert f"{_row(result, naive)['count']:,} events" in ax.get_title(loc="left")


def test_boolean_highlights_its_events_on_operand_axes(demo, tmp_path):
    _, sample, plan, result = demo
    tc17 = f"{CD8}/Tc17"
    fig = plot_gate(plan, sample, "Tc17", path=tmp_path / "tc17.png")
    _check_png(tmp_path / "tc17.png", fig)
    ax = _main_axes(fig)
    assert "CCR6 (" in ax.get_xlabel() and "CXCR3 (" in ax.get_ylabel()
    (points,) = [c for c in ax.collections if c.get_label() == "population"]
    xy = points.get_offsets()
    row = _row(result, tc17)
    assert len(xy) == row["count"] > 0
    assert (xy[:, 0] >= 0.41).all() and (xy[:, 1] >= 0.41).all()  # CCR6+ and CXCR3+
    # CCR6+ (x) and CXCR3+ (y) bounds dashed; CCR4 is not on the axes
    assert sorted(_xy(line) for line in _lines(ax, "operand")) == sorted(
        [((0.41, 0.41), (0.0, 1.0)), ((0.0, 1.0), (0.41, 0.41))]
    )
    title = ax.get_title(loc="left")
    assert tc17 in title and f"{row['count']:,} events" in title
    assert "CCR6+ and CXCR3+ and not CCR4+" in title


def test_events_cap_subsamples_the_parent_only_in_the_drawing(demo):
    _, sample, plan, result = demo
    fig = plot_gate(plan, sample, "/Lymphocytes/Singlets", events=1000)
    ax = _main_axes(fig)
    shown = np.ma.filled(ax.images[0].get_array(), 0).sum()
    assert 950 <= shown <= 1000
    assert f"{_row(result, '/Lymphocytes/Singlets')['count']:,} events" in ax.get_title(loc="left")


def test_svg_also_writes_png_and_caller_axes_are_used(demo, tmp_path):
    _, sample, plan, _ = demo
    fig = Figure(figsize=(4, 3), dpi=50)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    returned = plot_gate(plan, sample, "Lymphocytes", ax=ax, path=tmp_path / "lym.svg")
    assert returned is fig and _lines(ax, "gate")
    assert "<svg" in (tmp_path / "lym.svg").read_text()
    _check_png(tmp_path / "lym.png", fig)


def test_bad_requests_raise_clear_errors(demo, tmp_path):
    _, sample, plan, _ = demo
    with pytest.raises(ValueError, match="ambiguous"):
        plot_gate(plan, sample, "CXCR3+")
    with pytest.raises(ValueError, match="no population"):
        plot_gate(plan, sample, "Nope")
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plot_gate(plan, sample, "Lymphocytes", path=tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="bins"):
        plot_gate(plan, sample, "Lymphocytes", bins=0)


def test_plot_gates_demo_subset(demo, tmp_path):
    _, sample, plan, _ = demo
    wanted = ["Tc17", f"{CD8}/CXCR3+", "/Lymphocytes/Singlets/Live/CD3+/CD4+/CXCR3+"]
    files = plot_gates(plan, sample, tmp_path / "plots", populations=wanted)
    assert [f.name for f in files] == [
        "Lymphocytes_Singlets_Live_CD3+_CD8+_Tc17.png",
        "Lymphocytes_Singlets_Live_CD3+_CD8+_CXCR3+.png",
        "Lymphocytes_Singlets_Live_CD3+_CD4+_CXCR3+.png",
    ]
    assert all(f.is_file() and imread(f).std() > 0 for f in files)


def test_unsafe_population_names_become_safe_distinct_files(tmp_path):
    rng = np.random.default_rng(3)
    sample = read_fcs(write_fcs(tmp_path / "s.fcs", rng.normal(size=(500, 2)), ["A", "B"]))
    a, b = Dimension("A"), Dimension("B")
    names = ["../../etc/passwd", "etc_passwd", "a\\b:c*?\x07\n<d>|e", "...", "C:\\x", "$1 $2", "CON", "nul.txt", "Com1"]
    gates = tuple(
        RectangleGate(f"g{i}", (a, b), ((-1.0 + 0.1 * i, None), (None, 1.0)), name=name)
        for i, name in enumerate(names)
    )
    strategy = Strategy(gates=(*gates, RectangleGate("kid", (a,), ((0.0, None),), parent="g0",
                                                     name="x/y")))
    out = tmp_path / "out"
    files = plot_gates(compile_plan(strategy, sample), sample, out)
    assert len(files) == len(names) + 1
    assert len({f.name.lower() for f in files}) == len(files)
    for f in files:
        assert f.parent == out and f.is_file() and f.suffix == ".png"
        assert f.name.isprintable() and not set(f.name) & set('/\\:*?"<>|')
        assert not f.name.startswith(".")
        assert f.name.split(".", 1)[0].upper() not in {"CON", "NUL", "COM1"}
        assert imread(f).std() > 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in files)


def test_ellipse_contour_is_the_gate_boundary(tmp_path):
    rng = np.random.default_rng(5)
    sample = read_fcs(write_fcs(tmp_path / "e.fcs", rng.normal(size=(2000, 2)) * 2, ["A", "B"]))
    mean, cov, d2 = np.array([1.0, 2.0]), np.array([[4.0, 1.0], [1.0, 2.0]]), 1.5
    gate = EllipsoidGate("E", (Dimension("A"), Dimension("B")), tuple(mean),
                         tuple(map(tuple, cov)), d2)
    fig = plot_gate(compile_plan(Strategy(gates=(gate,)), sample), sample, "E")
    (contour,) = _lines(_main_axes(fig), "gate")
    diff = contour.get_xydata() - mean
    distance = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff)
    np.testing.assert_allclose(distance, d2, rtol=1e-9)
    # the whole boundary is traced: its x extent is mean +- sqrt(d2 * var_x)
    np.testing.assert_allclose(
        [diff[:, 0].min(), diff[:, 0].max()], [-np.sqrt(d2 * 4.0), np.sqrt(d2 * 4.0)], rtol=1e-3
    )


def test_one_dimensional_boolean_overlays_its_events(tmp_path):
    rng = np.random.default_rng(9)
    sample = read_fcs(write_fcs(tmp_path / "b.fcs", rng.normal(size=(3000, 2)), ["A", "B"]))
    a = Dimension("A")
    strategy = Strategy(gates=(
        RectangleGate("Pos", (a,), ((0.5, None),)),
        RectangleGate("Low", (a,), ((None, 1.5),)),
        BooleanGate("Mid", "and", (("Pos", False), ("Low", False))),
    ))
    plan = compile_plan(strategy, sample)
    fig = plot_gate(plan, sample, "Mid", bins=40)
    ax = _main_axes(fig)
    parent = next(p for p in ax.patches if p.get_label() == "parent").get_data()
    mine = next(p for p in ax.patches if p.get_label() == "population").get_data()
    np.testing.assert_array_equal(parent.edges, mine.edges)
    assert len(mine.values) == 40
    count = _row(apply_plan(plan, sample), "Mid")["count"]
    assert mine.values.sum() == count > 0
    # only bins inside 0.5 <= A < 1.5 hold population events
    outside = (mine.edges[1:] <= 0.5) | (mine.edges[:-1] >= 1.5)
    assert outside.sum() > 10 and (mine.values[outside] == 0).all()
    assert sorted(_xy(line)[0][0] for line in _lines(ax, "operand")) == [0.5, 1.5]


def test_plotting_never_touches_pyplot():
    code = (
        "import io, sys\n"
        "from gating._plot._draw import new_axes as _new_axes\n"
        "fig, ax = _new_axes(None)\n"
        "ax.plot([0, 1], [0, 1])\n"
        "fig.savefig(io.BytesIO(), format='png')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_figures_reuse_a_given_evaluation(demo, tmp_path, monkeypatch):
    import gating
    from gating import Evaluator, evaluate_plan

    _, sample, plan, result = demo
    ev = evaluate_plan(plan, sample)
    made = []
    init = Evaluator.__init__

    def counting(self, *args, **kwargs):
        made.append(args)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "__init__", counting)
    wanted = ["Lymphocytes", "/Lymphocytes/Singlets", "Tc17"]
    written = gating.plot_gates(plan, sample, tmp_path / "gates", populations=wanted,
                                evaluation=ev)
    figs = [gating.plot_gate(plan, sample, pop, evaluation=ev, events=5000) for pop in wanted]
    assert made == []  # nothing evaluated again
    assert len(written) == 3 and all(p.is_file() for p in written)
    title = _main_axes(figs[2]).get_title(loc="left")
    assert f"{_row(result, f'{CD8}/Tc17')['count']:,} events" in title
    # without an evaluation each call evaluates once, as before
    gating.plot_gate(plan, sample, "Lymphocytes")
    assert len(made) == 1


def test_an_evaluation_of_another_plan_or_sample_is_refused(demo):
    from gating import evaluate_plan

    strategy, sample, plan, _ = demo
    other_plan = compile_plan(strategy, sample)
    ev = evaluate_plan(other_plan, sample)
    with pytest.raises(ValueError, match="another plan or sample"):
        plot_gate(plan, sample, "Lymphocytes", evaluation=ev)
    with pytest.raises(ValueError, match="another plan or sample"):
        plot_gates(plan, sample, "unused", evaluation=ev)
    with pytest.raises(TypeError, match="evaluate_plan"):
        plot_gate(plan, sample, "Lymphocytes", evaluation=object())


def test_importing_gating_does_not_import_matplotlib():
    code = (
        "import sys\n"
        "import gating\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported by import gating'\n"
        "from gating import plot_gate, plot_gates, evaluate_plan\n"
        "assert 'matplotlib' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_gate_plots_use_the_house_dpi(demo):
    from engine.runtime import DPI

    _, sample, plan, _ = demo
    assert plot_gate(plan, sample, "Lymphocytes").dpi == DPI


# ---- FlowJo-like axes and backgating -----------------------------------------------------------
def _ticks(axis):
    return ([float(t) for t in axis.get_majorticklocs()],
            [t.get_text() for t in axis.get_majorticklabels()])


def test_decade_ticks_sit_at_the_transformed_raw_values(demo):
    _, sample, plan, _ = demo
    fig = plot_gate(plan, sample, CD8)
    ax = _main_axes(fig)
    fig.canvas.draw()
    transform = next(f.transform for f in plan.features if f.key.startswith("CD8|"))
    for axis in (ax.xaxis, ax.yaxis):
        where, labels = _ticks(axis)
        assert "0" in labels and "$10^{4}$" in labels
        raw = [0.0 if t == "0" else float(t.strip("$").replace("10^{", "1e").rstrip("}")
                                          .replace("-1e", "-1e")) for t in labels]
        np.testing.assert_allclose(where, transform.apply(np.array(raw)), rtol=0, atol=1e-12)
        assert axis.get_minorticklocs().size > 5  # 2..9 x 10^k between the decades
    assert ax.get_xlabel().startswith("CD8 (PerCP-Cy5.5-A)")  # marker (channel)


def test_linear_scatter_axes_in_channel_units(demo):
    _, sample, plan, _ = demo
    ax = _main_axes(plot_gate(plan, sample, "/Lymphocytes"))
    for axis in (ax.xaxis, ax.yaxis):
        where, labels = _ticks(axis)
        assert labels[0] == "0" and all(t.endswith("K") for t in labels[1:])
        values = [float(t[:-1]) * 1e3 if t.endswith("K") else float(t) for t in labels]
        np.testing.assert_allclose(where, np.array(values) / 262144.0, atol=1e-12)
    assert "50K" in _ticks(ax.xaxis)[1] and "100K" in _ticks(ax.xaxis)[1]


def test_scale_ticks_of_each_transform_kind():
    from gating import Asinh, FlowJoBiex, FlowJoLog, Hyperlog, Linear, Log, Logicle
    from gating._plot import scale_ticks

    for t in (Logicle(t=262144, w=0.5, m=4.5, a=0), Hyperlog(t=262144, w=0.5, m=4.5, a=0),
              Asinh(t=262144, m=4.5, a=0), Log(t=262144, m=4.5),
              FlowJoBiex(max_range=262144, width=-10, positive=4.42, negative=0),
              FlowJoLog(offset=1.0, decades=5.0)):
        ticks = scale_ticks(t, 0.0, 1.0)
        assert "$10^{4}$" in ticks.labels, (t, ticks.labels)
        raw = {"$10^{3}$": 1e3, "$10^{4}$": 1e4}
        for label, value in raw.items():
            if label in ticks.labels:
                assert ticks.major[ticks.labels.index(label)] == pytest.approx(
                    float(t.apply(np.array([value]))[0]), abs=1e-12)
        labelled = np.sort(np.asarray(ticks.major))
        assert (np.diff(labelled) >= 0.045 - 1e-12).all()  # labels never crowd each other
    assert scale_ticks(Linear(t=1000.0, a=0.0), 0.0, 1.0).labels[:3] == ("0", "200", "400")


def test_backgate_colours_each_event_by_its_deepest_gate(demo, tmp_path):
    from gating._plot import plot_backgate

    _, sample, plan, result = demo
    tc17 = f"{CD8}/Tc17"
    out = tmp_path / "backgate.png"
    fig = plot_backgate(plan, sample, "Tc17", "FSC-A", "SSC-A", path=out, events=None)
    _check_png(out, fig)
    ax = _main_axes(fig)
    levels = [c for c in ax.collections if str(c.get_gid()).startswith("level")]
    parts = tc17.strip("/").split("/")
    assert len(levels) == len(parts) + 1  # all events, each gate down to Tc17
    sizes = [len(c.get_offsets()) for c in levels]
    assert sum(sizes) == sample.n_events  # every event once
    member = result.membership
    assert sizes[-1] == int(member[tc17].sum())
    assert sizes[1] == int(member["/Lymphocytes"].sum() - member["/Lymphocytes/Singlets"].sum())
    # population points are the Tc17 events at their FSC-A, SSC-A values (linear: / 262144)
    raw = sample.columns(["FSC-A", "SSC-A"], dtype=np.float64)[member[tc17].to_numpy()] / 262144.0
    shown = np.asarray(levels[-1].get_offsets())
    np.testing.assert_allclose(np.sort(shown, axis=0), np.sort(raw, axis=0))
    assert f"Tc17 ({int(member[tc17].sum()):,})" in [t.get_text() for t in ax.get_legend().texts]
    assert _ticks(ax.xaxis)[1][0] == "0" and "50K" in _ticks(ax.xaxis)[1]


def test_backgate_start_events_cap_and_channels_outside_the_plan(demo):
    from gating import Linear
    from gating._plot import plot_backgate

    _, sample, plan, result = demo
    fig = plot_backgate(plan, sample, "Tc17", "CD3", "CD19", start="Live", events=2000)
    ax = _main_axes(fig)
    levels = [c for c in ax.collections if str(c.get_gid()).startswith("level")]
    tc17 = int(result.membership[f"{CD8}/Tc17"].sum())
    assert len(levels[-1].get_offsets()) == tc17  # the population is kept when subsampling
    assert sum(len(c.get_offsets()) for c in levels) == 2000
    assert "CD3 (APC-H7-A)" in ax.get_xlabel() and "$10^{4}$" in _ticks(ax.xaxis)[1]
    time = "Time"  # a channel no gate uses: shown as stored
    fig = plot_backgate(plan, sample, "Tc17", str(time), "SSC-A",
                        transforms={str(time): Linear(t=1e6, a=0.0)})
    assert "uncompensated" in _main_axes(fig).get_xlabel()
    with pytest.raises(ValueError, match="not an ancestor"):
        plot_backgate(plan, sample, "Tc17", "CD3", "CD19", start="CD4+")
    with pytest.raises(KeyError):
        plot_backgate(plan, sample, "Tc17", "no-such-channel", "CD19")
