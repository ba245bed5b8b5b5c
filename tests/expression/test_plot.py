"""Expression plots: files written and decodable, what is drawn matches the data, bad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import anndata as ad
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from expression import (
    normalize_counts,
    paired_slope_plot,
    plot_mean_sd,
    plot_paired_scores,
    plot_size_factors,
    plot_volcano,
)
from expression._plot import DOWN, UP


def _collections(ax, gid: str | None = None) -> list[PathCollection]:
    return [
        c
        for c in ax.collections
        if isinstance(c, PathCollection) and (gid is None or c.get_gid() == gid)
    ]


def _decodes(path: Path) -> None:
    assert path.stat().st_size > 0
    if path.suffix == ".png":
        image = mpimg.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    else:
        assert ET.parse(path).getroot().tag.endswith("svg")


# ---- size factors ------------------------------------------------------------------------------
@pytest.fixture()
def factors() -> pd.Series:
    return pd.Series(
        [0.5, 1.7, 1.0, 0.8, 2.2], index=["P1_pre", "P1_post", "P2_pre", "P2_post", "P3_pre"]
    )


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_size_factors_written_and_drawn(tmp_path: Path, factors: pd.Series, suffix: str) -> None:
    out = tmp_path / f"sub/sf{suffix}"
    fig = plot_size_factors(factors, out=out)
    _decodes(out)
    ax = fig.axes[0]
    (dots,) = _collections(ax)
    xy = dots.get_offsets()
    # sheet order from the top: the first sample is the highest row
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == list(factors.index[::-1])
    np.testing.assert_array_equal(np.asarray(xy)[:, 0], factors.to_numpy()[::-1])


def test_size_factors_sorted_and_from_anndata(factors: pd.Series) -> None:
    fig = plot_size_factors(factors, sort=True)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == list(factors.sort_values().index)
    counts = np.array([[10, 20, 30, 40], [20, 40, 60, 80], [5, 10, 16, 20]])
    adata = ad.AnnData(X=counts.astype(float), obs=pd.DataFrame(index=["a", "b", "c"]))
    with pytest.raises(KeyError, match="normalize_counts"):
        plot_size_factors(adata)
    normalize_counts(adata, layer=None)
    xy = np.asarray(_collections(plot_size_factors(adata).axes[0])[0].get_offsets())
    np.testing.assert_array_equal(xy[::-1, 0], adata.obs["size_factors"].to_numpy())


@pytest.mark.parametrize("bad", [[1.0, 0.0], [1.0, np.nan], [1.0, -2.0], []])
def test_size_factors_rejects_bad_values(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        plot_size_factors(pd.Series(bad, index=[f"s{i}" for i in range(len(bad))], dtype=float))


def test_bad_suffix_rejected_before_drawing(tmp_path: Path, factors: pd.Series) -> None:
    with pytest.raises(ValueError, match=r"\.pdf"):
        plot_size_factors(factors, out=tmp_path / "sf.pdf")
    assert not list(tmp_path.iterdir())


# ---- mean-SD -----------------------------------------------------------------------------------
def test_mean_sd_one_point_per_gene(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    log_norm = pd.DataFrame(rng.normal(5, 1, size=(300, 8)))
    vst = rng.normal(5, 0.5, size=(200, 8))  # a different number of genes is fine
    out = tmp_path / "meansd.png"
    fig = plot_mean_sd({"log2(norm + 1)": log_norm, "VST": vst}, out=out)
    _decodes(out)
    assert len(fig.axes) == 2
    for ax, values in zip(fig.axes, (log_norm.to_numpy(), vst), strict=True):
        (points,) = _collections(ax)
        xy = np.asarray(points.get_offsets())
        assert len(xy) == values.shape[0]
        np.testing.assert_allclose(np.sort(xy[:, 1]), np.sort(values.std(axis=1, ddof=1)))
        np.testing.assert_array_equal(np.sort(xy[:, 0]), np.arange(1, values.shape[0] + 1))
    raw = plot_mean_sd({"x": vst}, ranks=False)
    xy = np.asarray(_collections(raw.axes[0])[0].get_offsets())
    np.testing.assert_allclose(xy[:, 0], vst.mean(axis=1))


def test_mean_sd_anndata_is_samples_by_genes() -> None:
    values = np.arange(30, dtype=float).reshape(5, 6) ** 1.5  # 5 samples x 6 genes
    fig = plot_mean_sd({"a": ad.AnnData(X=values)})
    assert len(_collections(fig.axes[0])[0].get_offsets()) == 6


@pytest.mark.parametrize(
    "matrices",
    [{}, {"one sample": np.ones((5, 1))}, {"nan": np.array([[1.0, np.nan], [1.0, 2.0]])}],
)
def test_mean_sd_rejects_bad_input(matrices: dict) -> None:
    with pytest.raises(ValueError):
        plot_mean_sd(matrices)


# ---- volcano -----------------------------------------------------------------------------------
@pytest.fixture()
def de_table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 400
    table = pd.DataFrame(
        {
            "baseMean": rng.uniform(1, 1000, n),
            "log2FoldChange": rng.normal(0, 1, n),
            "pvalue": rng.uniform(0, 1, n) ** 3,
        },
        index=[f"G{i}" for i in range(n)],
    )
    table["padj"] = np.minimum(table["pvalue"] * 20, 1.0)
    table.loc[table.index[:40], "padj"] = np.nan  # independently filtered
    table.loc[table.index[40:43], ["log2FoldChange", "pvalue", "padj"]] = np.nan  # no test
    table.loc[table.index[50], ["pvalue", "padj"]] = 0.0
    return table


def test_volcano_counts_and_labels(tmp_path: Path, de_table: pd.DataFrame) -> None:
    out = tmp_path / "volcano.svg"
    fig = plot_volcano(de_table, alpha=0.05, label_top=7, out=out)
    _decodes(out)
    ax = fig.axes[0]
    placed = de_table["pvalue"].notna()
    sig = (de_table["padj"] < 0.05) & placed
    na = de_table["padj"].isna() & placed
    (s,) = _collections(ax, "significant")
    (n,) = _collections(ax, "not_significant")
    (g,) = _collections(ax, "padj_na")
    assert len(s.get_offsets()) == int(sig.sum()) > 7
    assert len(g.get_offsets()) == int(na.sum()) == 40
    assert len(s.get_offsets()) + len(n.get_offsets()) + len(g.get_offsets()) == int(placed.sum())
    assert np.isfinite(np.asarray(s.get_offsets())).all()  # p = 0 is drawn at a finite height
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "gene_label"]
    expected = de_table[sig].sort_values(["padj", "pvalue"]).index[:7]
    assert labels == list(expected)
    assert "3 without p-value" in ax.get_title()
    # colours: red for up, blue for down
    colours = s.get_facecolors()
    up = de_table.loc[sig, "log2FoldChange"].to_numpy() > 0
    np.testing.assert_allclose(
        colours[up][:, :3], [[0xC0 / 255, 0x39 / 255, 0x2B / 255]] * up.sum()
    )
    assert UP != DOWN


def test_volcano_from_result_object(de_table: pd.DataFrame) -> None:
    from expression import DEResult

    fig = plot_volcano(DEResult(table=de_table), label_top=0)
    assert not [t for t in fig.axes[0].texts if t.get_gid() == "gene_label"]
    assert len(_collections(fig.axes[0], "significant")[0].get_offsets()) == int(
        (de_table["padj"] < 0.1).sum()
    )


def test_volcano_rejects_bad_input(de_table: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="padj"):
        plot_volcano(de_table.drop(columns="padj"))
    with pytest.raises(ValueError, match="alpha"):
        plot_volcano(de_table, alpha=1.5)
    bad = de_table.copy()
    bad.iloc[60, bad.columns.get_loc("pvalue")] = 1.5
    with pytest.raises(ValueError, match="pvalue"):
        plot_volcano(bad)
    with pytest.raises(TypeError):
        plot_volcano(de_table.to_numpy())


# ---- paired ------------------------------------------------------------------------------------
@pytest.fixture()
def long() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient": ["P1", "P1", "P2", "P2", "P3", "P3", "P4", "P5", "P5"],
            "timepoint": ["pre", "post", "post", "pre", "pre", "post", "pre", "pre", "post"],
            "mRSS": [20.0, 12.0, 18.0, 15.0, 9.0, 9.0, 30.0, 11.0, np.nan],
        }
    )


def _axes() -> object:
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def test_paired_slope_plot_draws_each_pair(long: pd.DataFrame) -> None:
    ax = _axes()
    assert paired_slope_plot(ax, long, subject="patient", time="timepoint", value="mRSS") is ax
    pairs = [line for line in ax.lines if line.get_gid() == "pair"]
    assert len(pairs) == 3  # P1, P2, P3; P4 has no post row, P5's post is NaN
    (points,) = _collections(ax, "points")
    assert len(points.get_offsets()) == 6  # the three complete pairs
    (alone,) = _collections(ax, "unpaired")  # P4 pre, P5 pre (its post is NaN): hollow
    assert sorted(np.asarray(alone.get_offsets())[:, 1]) == [11.0, 30.0]
    by_first = {line.get_ydata()[0]: line for line in pairs}
    assert by_first[20.0].get_color() == DOWN and list(by_first[20.0].get_xdata()) == [0, 1]
    assert by_first[15.0].get_color() == UP  # P2: rows given post first, drawn pre -> post
    assert by_first[9.0].get_color() != UP and by_first[9.0].get_color() != DOWN
    assert [t.get_text() for t in ax.get_xticklabels()] == ["pre", "post"]


def test_paired_slope_plot_medians_are_over_the_pairs_only() -> None:
    # 10 of 12 pairs rise, but unpaired low post values would pull an all-points median down
    rng = np.random.default_rng(3)
    pre = rng.uniform(4.0, 8.0, 12)
    post = pre + np.r_[np.full(10, 1.0), np.full(2, -0.5)]
    long = pd.DataFrame({
        "patient": [f"P{i}" for i in range(12)] * 2 + [f"U{i}" for i in range(6)],
        "timepoint": ["pre"] * 12 + ["post"] * 12 + ["post"] * 6,
        "pct": np.r_[pre, post, np.full(6, 0.5)],
    })
    ax = _axes()
    paired_slope_plot(ax, long, subject="patient", time="timepoint", value="pct",
                      order=["pre", "post"])
    assert len([ln for ln in ax.lines if ln.get_gid() == "pair"]) == 12
    (bars,) = [c for c in ax.collections if c.get_gid() == "median"]
    (pre_bar, post_bar) = [seg[0][1] for seg in bars.get_segments()]
    assert pre_bar == pytest.approx(np.median(pre)) and post_bar == pytest.approx(np.median(post))
    assert post_bar > pre_bar
    assert len(_collections(ax, "unpaired")[0].get_offsets()) == 6
    ax = _axes()
    paired_slope_plot(ax, long, subject="patient", time="timepoint", value="pct",
                      order=["pre", "post"], unpaired=False)
    assert not _collections(ax, "unpaired")


def test_paired_slope_plot_order(long: pd.DataFrame) -> None:
    ax = _axes()
    paired_slope_plot(
        ax, long, subject="patient", time="timepoint", value="mRSS", order=["post", "pre"]
    )
    line = next(ln for ln in ax.lines if ln.get_gid() == "pair" and ln.get_ydata()[0] == 12.0)
    assert list(line.get_ydata()) == [12.0, 20.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["post", "pre"]
    ax = _axes()
    paired_slope_plot(ax, long, subject="patient", time="timepoint", value="mRSS", order=["pre"])
    assert not [ln for ln in ax.lines if ln.get_gid() == "pair"]
    assert len(_collections(ax, "points")[0].get_offsets()) == 5


def test_paired_slope_plot_rejects_bad_input(long: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="score"):
        paired_slope_plot(_axes(), long, subject="patient", time="timepoint", value="score")
    dup = pd.concat([long, long.iloc[[0]]])
    with pytest.raises(ValueError, match="P1"):
        paired_slope_plot(_axes(), dup, subject="patient", time="timepoint", value="mRSS")
    text = long.assign(mRSS=["a"] * len(long))
    with pytest.raises(ValueError, match="numeric"):
        paired_slope_plot(_axes(), text, subject="patient", time="timepoint", value="mRSS")


def test_paired_scores_panels_and_p_values(tmp_path: Path) -> None:
    samples = [f"P{i}_{t}" for i in range(1, 6) for t in ("pre", "post")]
    sheet = pd.DataFrame(
        {
            "patient": [s.split("_")[0] for s in samples],
            "timepoint": [s.split("_")[1] for s in samples],
        },
        index=samples,
    )
    rng = np.random.default_rng(1)
    scores = pd.DataFrame(
        rng.normal(size=(4, 10)), index=[f"SET{i}" for i in range(4)], columns=samples
    )
    scores.attrs = {"n_genes": {f"SET{i}": 10 + i for i in range(4)}, "method": "mean_z"}
    tests = pd.DataFrame(
        {
            "gene_set": ["SET0", "SET2"],
            "t_pvalue": [0.0123, 4e-6],
            "wilcoxon_pvalue": [0.0625, 0.03125],
        }
    )
    out = tmp_path / "paired.png"
    fig = plot_paired_scores(scores, sheet, tests=tests, ncols=3, out=out)
    _decodes(out)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4 and len(fig.axes) == 6
    titles = [ax.get_title() for ax in visible]
    assert "paired t P = 0.012, Wilcoxon P = 0.062" in titles[0]
    assert "paired t P = 4.0e-06" in titles[2]
    assert "P =" not in titles[1] and "11 genes" in titles[1]
    for ax in visible:
        assert len([ln for ln in ax.lines if ln.get_gid() == "pair"]) == 5
        assert len(_collections(ax, "points")[0].get_offsets()) == 10
    with pytest.raises(KeyError, match="P1_pre"):
        plot_paired_scores(scores, sheet.drop(index="P1_pre"))
    with pytest.raises(ValueError):
        plot_paired_scores(scores.iloc[:0], sheet)


def test_size_factors_many_samples_name_every_kth() -> None:
    factors = pd.Series(np.linspace(0.5, 2.0, 400), index=[f"S{i:03d}" for i in range(400)])
    ax = plot_size_factors(factors).axes[0]
    assert len(_collections(ax)[0].get_offsets()) == 400
    ticks = ax.get_yticks()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 134  # every 3rd of 400
    reversed_ids = list(factors.index[::-1])
    assert all(reversed_ids[int(y)] == label for y, label in zip(ticks, labels, strict=True))


def test_importing_expression_does_not_import_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import expression\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported by import expression'\n"
        "import gating, engine.runtime\n"
        "assert 'matplotlib' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_plots_use_the_house_dpi_and_p_text():
    from engine.runtime import DPI, format_p

    fig = plot_size_factors(pd.Series([0.5, 1.0, 2.0], index=["a", "b", "c"]))
    assert fig.dpi == DPI
    assert [format_p(p) for p in (0.0123, 0.0625, 4e-6)] == ["0.012", "0.062", "4.0e-06"]
