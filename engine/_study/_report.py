"""Figures and the report of a study run (called by :func:`engine._study._run.run_study`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine._batch import BatchRun
from engine._study._document import FigureRef, Section, Table, format_value, write_report
from engine._study._figures import (
    correlation_figure,
    ma_figure,
    pca_figure,
    save_figure,
    slope_grid,
    volcano_figure,
)
from engine._study._manifest import Study
from engine._study._stages import ExpressionResult, ReportFiles
from engine.runtime import new_figure, safe_name

__all__ = ["build_report"]

log = logging.getLogger(__name__)

_GATE_PANELS = 9


def _median_iqr(frame: pd.DataFrame, part: str) -> pd.Series:
    return frame.apply(
        lambda r: f"{format_value(r[f'{part}_median'])} [{format_value(r[f'{part}_q1'])}, "
                  f"{format_value(r[f'{part}_q3'])}]", axis=1,
    ) if len(frame) else pd.Series(dtype=str)


def paper_table(tests: pd.DataFrame, *, pre: str, post: str) -> pd.DataFrame:
    """The paper's table: the test's P and BH-adjusted P first, then n pairs, median [IQR],
    mean, SD and SEM per timepoint and for the difference, the test and its statistic.

    P and padj come right after the variable so that they are on screen without scrolling
    however many summary columns follow.

    Examples
    --------
    >>> import pandas as pd
    >>> parts = {f"{p}_{s}": [1.0] for p in ("pre", "post", "diff")
    ...          for s in ("mean", "sd", "sem", "median", "q1", "q3")}
    >>> tests = pd.DataFrame({"variable": ["MMRSS"], "n": [15], "method": ["wilcoxon"],
    ...                       "statistic_name": ["V"], "statistic": [100.0],
    ...                       "pvalue": [0.003], "padj": [0.01], **parts})
    >>> list(paper_table(tests, pre="pre", post="post").columns[:5])
    ['variable', 'P', 'padj (BH)', 'n pairs', 'pre median [IQR]']
    """
    out = pd.DataFrame({"variable": tests["variable"], "P": tests["pvalue"],
                        "padj (BH)": tests["padj"], "n pairs": tests["n"]})
    parts = (("pre", pre), ("post", post), ("diff", f"{post} - {pre}"))
    for part, label in parts:
        out[f"{label} median [IQR]"] = _median_iqr(tests, part)
    for part, label in parts:
        out[f"{label} mean"] = tests[f"{part}_mean"]
        out[f"{label} SD"] = tests[f"{part}_sd"]
        out[f"{label} SEM"] = tests[f"{part}_sem"]
    out["test"] = tests["method"]
    out["statistic"] = tests["statistic_name"].astype(str) + " = " + tests["statistic"].map(format_value)
    return out


def _slopes(long: pd.DataFrame, tests: pd.DataFrame, variables: list[str], study: Study,
            stem: Path, *, value: str, variable: str, title: str) -> Path:
    pvalues = dict(zip(tests["variable"], tests["pvalue"], strict=True))
    fig = slope_grid(long, variables=variables, subject=study.subject, time=study.time,
                     order=study.timepoints, pvalues=pvalues, value=value, variable=variable,
                     title=title)
    return save_figure(fig, stem)[0]


def _label(text: str) -> str:
    """``text`` for a figure title: control characters shown as escapes, ``$`` not mathtext."""
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return shown.replace("$", r"\$")


def gate_plot_patient(study: Study, ok: set[str] | None = None) -> str | None:
    """The patient whose samples are drawn as gate figures.

    The manifest's ``gate_plot_patient``, else the first patient with a sample at every
    timepoint (among the gated samples ``ok`` when given). ``None`` when there is none.
    """
    if study.gate_plot_patient is not None:
        return study.gate_plot_patient
    have: dict[str, set[str]] = {}
    for s in study.fcs:
        if ok is None or s.sample in ok:
            have.setdefault(s.patient, set()).add(s.timepoint)
    return next((p for p, tps in have.items() if tps == set(study.timepoints)), None)


def _gate_populations(study: Study) -> tuple[str, list[str]]:
    """The key population drawn and the gate chain leading to it (at most ``_GATE_PANELS``)."""
    key = next((p for p in study.populations if p.name in study.key_populations),
               study.populations[0])
    parts = key.path.strip("/").split("/")
    return key.name, ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))][-_GATE_PANELS:]


def draw_gate_figures(study: Study, folder: Path, name: str, timepoint: str, plan: Any,
                      sample: Any, evaluation: Any) -> Path:
    """Draw one sample's gates from its evaluation: per-gate PNGs and a panel figure.

    File and folder names come from :func:`engine.runtime.safe_name` of the sample: a
    manifest's sample names are untrusted. Returns the panel figure's PNG.
    """
    from gating import plot_gate, plot_gates

    key, wanted = _gate_populations(study)
    stem = safe_name(name)
    plot_gates(plan, sample, folder / "gates" / stem, populations=wanted, evaluation=evaluation)
    cols = 3
    rows = int(np.ceil(len(wanted) / cols))
    fig = new_figure(figsize=(5.2 * cols, 4.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, pop in zip(axes, wanted, strict=False):
        plot_gate(plan, sample, pop, ax=ax, events=20_000, evaluation=evaluation)
    for ax in axes[len(wanted):]:
        ax.set_visible(False)
    fig.suptitle(f"{_label(name)}: gating of {_label(key)} ({_label(timepoint)})", fontsize=12)
    return save_figure(fig, folder / f"gates_{stem}")[0]


def _gate_figures(study: Study, folder: Path, gating: BatchRun,
                  drawn: dict[str, Path]) -> list[tuple[str, str, Path]]:
    """One panel figure per timepoint of the chosen patient (plus per-gate PNGs).

    Returns (timepoint, sample, figure) triples. ``drawn`` holds the figures already drawn
    while the batch gated those samples in this process (sample -> panel PNG,
    :func:`draw_gate_figures` on the batch's own evaluation). A sample not among them (its
    gating was resumed from an earlier run, or another patient had to be chosen) is
    evaluated here once (:func:`gating.evaluate_plan`); one sample's evaluation is held at a
    time. The strategy is the study's loaded one (not read again).
    """
    from gating import Strategy, compile_plan, evaluate_plan, read_fcs

    ok = set(gating.files.loc[gating.files["status"] == "ok", "sample"])
    patient = gate_plot_patient(study, ok)
    if patient is None:
        return []
    loaded = study.loaded_strategy
    if not isinstance(loaded, Strategy):
        return []  # a FlowJo workspace: per-sample strategies, not drawn here
    out = []
    for s in study.fcs:
        if s.patient != patient or s.sample not in ok:
            continue
        png = drawn.get(s.sample)
        if png is None or not png.exists():
            sample = read_fcs(s.path)
            plan = compile_plan(loaded, sample)
            evaluation = evaluate_plan(plan, sample)  # not gated in this process this run
            png = draw_gate_figures(study, folder, s.sample, s.timepoint, plan, sample, evaluation)
            del evaluation, sample  # before the next sample is read
        out.append((s.timepoint, s.sample, png))
    order = {tp: i for i, tp in enumerate(study.timepoints)}
    return sorted(out, key=lambda t: order.get(t[0], 9))


def _cohort(study: Study, tables: dict[str, pd.DataFrame], expr: ExpressionResult | None,
            gating: BatchRun) -> pd.DataFrame:
    visits = tables["visits"]
    ok = set(gating.files.loc[gating.files["status"] == "ok", "sample"])
    flow = {(s.patient, s.timepoint): s.sample in ok for s in study.fcs}
    rna = set()
    if expr is not None:
        sf = expr.size_factors
        rna = set(zip(sf[study.subject].astype(str), sf[study.time].astype(str), strict=True))
    clin = set(zip(visits[study.subject], visits[study.time], strict=True))
    rows = []
    for p in study.patients:
        row: dict[str, Any] = {study.subject: p}
        if study.subgroup is not None:
            g = visits.loc[visits[study.subject] == p, study.subgroup].dropna()
            row[study.subgroup] = g.iloc[0] if len(g) else "NA"
        for tp in study.timepoints:
            row[f"clinical {tp}"] = (p, tp) in clin
            row[f"flow {tp}"] = flow.get((p, tp), False)
            if expr is not None:
                row[f"skin RNA {tp}"] = (p, tp) in rna
        rows.append(row)
    return pd.DataFrame(rows)


def build_report(
    study: Study, out: Path, *, tables: dict[str, pd.DataFrame], expr: ExpressionResult | None,
    gating: BatchRun, strategy_hash: str, versions: dict[str, str],
    drawn: dict[str, Path] | None = None,
) -> ReportFiles:
    """Draw the figures and write ``report.html`` and ``report.md``.

    Parameters
    ----------
    study
        The validated manifest (holding its loaded strategy).
    out
        The run's output folder (``figures/`` and the reports are written into it).
    tables
        The result tables by name (``clinical_tests``, ``visits``, ...).
    expr
        The skin RNA stage, or None when the study has no counts.
    gating
        The batch gating run.
    strategy_hash, versions
        For the methods section.
    drawn
        Gate figures already drawn during gating (sample -> panel PNG), see
        :func:`draw_gate_figures`.

    Returns
    -------
    ReportFiles
        The HTML report, the Markdown report and every PNG written.
    """
    figs = out / "figures"
    figures: list[Path] = []
    sections: list[Section] = []
    pre, post = study.timepoints
    test_name = {"wilcoxon": "Wilcoxon signed-rank", "t": "paired t"}[study.paired_test]

    # cohort
    cohort = _cohort(study, tables, expr, gating)
    n_flow = int(cohort[[f"flow {tp}" for tp in study.timepoints]].all(axis=1).sum())
    blocks: list[Any] = [
        f"{len(study.patients)} {study.subject}s measured at {pre} and {post}. "
        f"{len(study.fcs)} FCS files listed, {int((gating.files['status'] == 'ok').sum())} gated "
        f"({gating.resumed} reused from an earlier run), {len(gating.errors)} failed; "
        f"{n_flow} {study.subject}s have flow cytometry at both timepoints."
    ]
    if study.subgroup is not None:
        counts = cohort[study.subgroup].value_counts().sort_index()
        blocks.append(f"Subgroups ({study.subgroup}): "
                      + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ".")
    blocks.append(Table("Data available per " + study.subject, cohort))
    if not gating.errors.empty:
        blocks.append(Table("FCS files that failed", gating.errors))
    sections.append(Section("Cohort", tuple(blocks)))

    # clinical
    clinical_tests = tables["clinical_tests"]
    visits = tables["visits"]
    long = visits.melt(id_vars=[study.subject, study.time], value_vars=list(study.outcomes),
                       var_name="variable", value_name="value")
    png = _slopes(long, clinical_tests, list(study.outcomes), study, figs / "clinical_slopes",
                  value="value", variable="variable", title="Clinical outcomes, paired")
    figures.append(png)
    sections.append(Section("Clinical response", (
        f"Each outcome {pre} vs {post}: summaries over the complete pairs, {test_name} test "
        "(two-sided), Benjamini-Hochberg adjusted P over the outcomes. SD and SEM are both "
        "reported (the paper's ± values read as SEMs).",
        Table("Clinical outcomes", paper_table(clinical_tests, pre=pre, post=post)),
        FigureRef("Clinical outcomes per patient", png,
                  f"One line per {study.subject} with both timepoints ({pre} to {post}; blue = "
                  "decrease, red = increase), black bar = median over those pairs; hollow "
                  "circles: values without a pair (in no median, no test); panel titles give "
                  "the test P and the n of pairs drawn."),
    )))

    # flow
    freq, pop_tests = tables["population_frequencies"], tables["population_tests"]
    blocks = [
        "Frequencies of each population of interest against its named parent and against all "
        f"events of the file (the denominator is named in every row), {test_name} test, BH over "
        "all population x denominator rows."
    ]
    blocks.append(Table("Population frequencies: paired tests",
                        paper_table(pop_tests, pre=pre, post=post)))
    key_vars = [f"{p.name} (% of {p.parent})" for p in study.populations
                if p.name in study.key_populations]
    if not freq.empty and key_vars:
        png = _slopes(freq, pop_tests, key_vars, study, figs / "population_slopes",
                      value="percent", variable="variable", title="Key populations, paired")
        figures.append(png)
        blocks.append(FigureRef("Key populations per patient", png,
                                "Percent of the named parent; one line per patient with "
                                "both timepoints, black bar = median over those pairs, hollow "
                                "circles: samples without a pair."))
    for tp, sample_name, png in _gate_figures(study, figs, gating, drawn or {}):
        figures.append(png)
        blocks.append(FigureRef(f"Gates, {sample_name} ({tp})", png,
                                "Each gate drawn over its parent's events (density, log "
                                "colour); Boolean subsets shown on their operand axes."))
    sections.append(Section("Flow cytometry", tuple(blocks)))

    # skin RNA
    if expr is not None and study.expression is not None:
        ex = study.expression
        de = expr.de.set_index("gene")
        n_sig = int((de["padj"] < ex.alpha).sum())
        n_down = int(((de["padj"] < ex.alpha) & (de["log2FoldChange"] < 0)).sum())
        highlight: dict[str, list[str]] = {}
        for name, genes in expr.sets.items():  # distinct sets only, at most three
            shown = {g for v in highlight.values() for g in v}
            if len(highlight) < 3 and len(set(genes) - shown) > len(genes) / 2:
                highlight[name] = genes
        fig = volcano_figure(de, alpha=ex.alpha, highlight=highlight,
                             title=f"{ex.contrast[1]} vs {ex.contrast[2]} ({ex.design})")
        volcano = save_figure(fig, figs / "volcano")[0]
        figures.append(volcano)
        gs_tests = expr.tests
        png = _slopes(expr.scores, gs_tests, list(gs_tests["variable"]), study,
                      figs / "geneset_slopes", value="score", variable="gene_set",
                      title=f"Gene-set scores ({ex.score}), paired")
        figures.append(png)
        from expression import plot_mean_sd, plot_size_factors

        adata = expr.adata
        sf_png = save_figure(plot_size_factors(adata.obs["size_factors"]), figs / "size_factors")[0]
        meansd_png = save_figure(plot_mean_sd({
            "log2(normalised + 1)": np.asarray(adata.layers["log2p1"]).T,
            "VST": np.asarray(adata.layers[expr.layer]).T,
        }), figs / "mean_sd")[0]
        figures += [sf_png, meansd_png]
        pca_png = save_figure(pca_figure(
            np.asarray(adata.layers[expr.layer]), adata.obs, subject=study.subject,
            time=study.time, order=study.timepoints, ntop=500,
            title=f"PCA of {expr.n_samples} biopsy samples ({expr.layer.upper()}, top "
                  f"{min(500, expr.n_genes)} variable genes)",
        ), figs / "pca")[0]
        ma_png = save_figure(ma_figure(de, alpha=ex.alpha,
                                       title=f"MA plot: {ex.contrast[1]} vs {ex.contrast[2]}"),
                             figs / "ma")[0]
        figures += [pca_png, ma_png]
        top = expr.de.dropna(subset=["padj"]).sort_values(["padj", "gene"]).head(25)
        first = ["gene", "pvalue", "padj", "log2FoldChange"]
        top = top[first + [c for c in top.columns if c not in first]]
        sizes = dict(zip(expr.scores["gene_set"], expr.scores["n_genes"], strict=False))
        gs_table = paper_table(gs_tests, pre=pre, post=post)
        gs_table.insert(4, "genes used", gs_table["variable"].map(sizes))
        sections.append(Section("Skin RNA", (
            f"{expr.n_genes:,} genes x {expr.n_samples} biopsy samples. DESeq2 median-of-"
            f"ratios size factors; paired differential expression (pydeseq2 Wald test, design "
            f"{ex.design}, contrast {', '.join(ex.contrast)}, independent filtering at alpha "
            f"{ex.alpha:g}): {n_sig} genes with padj < {ex.alpha:g} ({n_down} down). Gene-set "
            f"scores ({ex.score}) on {expr.layer_note}, {test_name} test pre vs post.",
            Table("Gene-set scores: paired tests", gs_table),
            FigureRef("Gene-set scores per patient", png, "One line per patient; score = "
                      f"{ex.score} of the set's genes."),
            FigureRef("PCA of the biopsy samples", pca_png,
                      f"PC1 against PC2 of the {expr.layer_note} values of the 500 most variable "
                      f"genes (centred, not scaled, as DESeq2's plotPCA); colour = {study.time}, "
                      f"grey arrows join each {study.subject}'s {pre} and {post} samples."),
            FigureRef("Volcano plot", volcano, "Each gene's log2 fold change against -log10 P; "
                      "gene-set members coloured; the most significant genes labelled."),
            FigureRef("MA plot", ma_png, "Each gene's log2 fold change against the log2 of its "
                      f"mean normalised count; genes with padj < {ex.alpha:g} in colour (red up, "
                      "blue down), padj NA (independent filtering) light grey."),
            Table(f"Top {len(top)} genes by padj", top),
            FigureRef("Size factors", sf_png, "DESeq2 median-of-ratios size factor per biopsy "
                      "sample (log2 axis)."),
            FigureRef("Mean-SD", meansd_png, "Per-gene SD against the rank of its mean (red: running "
                      "median): the VST damps the inflated SD of low-count genes that "
                      "log2(x + 1) shows."),
            Table("Size factors", expr.size_factors),
        )))

    # correlations
    if "correlations" in tables:
        corr = tables["correlations"]
        labels = {p.name: f"{p.name} (% of {p.parent})" for p in study.populations}
        fig = correlation_figure(tables["correlation_points"], corr, labels=labels,
                                 title="Correlations")
        png = save_figure(fig, figs / "correlations")[0]
        figures.append(png)
        shown = corr[["x", "y", "pvalue", "padj", "r", "ci_low", "ci_high", "n", "method",
                      "timepoint", "ci_method", "warning"]]
        notes = [str(w) for w in corr["warning"].fillna("") if str(w)]
        sections.append(Section("Correlations", (
            f"Spearman or Pearson correlation with a {study.confidence:.0%} confidence interval "
            "(Fisher z); BH over the pairs computed with the same settings."
            + (" Warning: " + "; ".join(dict.fromkeys(notes)) if notes else ""),
            Table("Correlations", shown),
            FigureRef("Correlations", png, "Least-squares line for orientation; r (or ρ), CI, "
                      "P and n in each panel."),
        )))

    if "subgroup_summary" in tables:
        sub = tables["subgroup_summary"]
        shown = paper_table(sub, pre=pre, post=post)
        shown.insert(0, "subgroup", sub["subgroup"])
        sections.append(Section("Subgroups", (
            f"The same paired tests within each level of {study.subgroup!r} (BH within each "
            "subgroup). Small groups have little power: read as descriptive.",
            Table(f"By {study.subgroup}", shown),
        )))

    # methods
    params = [
        ("manifest", str(study.manifest)), ("strategy", study.strategy),
        ("strategy sha256", strategy_hash), ("paired test", test_name + " (two-sided; exact for "
                                             "small n, R's V statistic)"),
        ("multiple testing", "Benjamini-Hochberg within each table"),
        ("correlation", f"{study.correlation_method} (default), CI {study.confidence:.0%} Fisher z"),
        ("gating executor", gating.executor),
    ]
    if study.expression is not None and expr is not None:
        ex = study.expression
        params += [("DE design", ex.design), ("DE contrast", ", ".join(ex.contrast)),
                   ("DE alpha", f"{ex.alpha:g}"), ("gene-set score", ex.score),
                   ("score input", expr.layer_note),
                   ("gene sets", ", ".join(f"{k} ({len(v)})" for k, v in expr.sets.items()))]
    sections.append(Section("Methods", (
        "Gating: the strategy compiled per file and evaluated by phenoflow's kernels (batch "
        "engine, resumable). Frequencies: count / count of the named parent, and count / all "
        "events. Statistics: phenoflow's engine statistics layer (summaries over complete "
        "pairs; SD with n - 1; quartiles R type 7). Expression: pydeseq2 with phenoflow's "
        "size factors and gene-set scores.",
        Table("Parameters", pd.DataFrame(params, columns=["parameter", "value"])),
        Table("Package versions", pd.DataFrame(sorted(versions.items()),
                                               columns=["package", "version"])),
    )))
    html, md = write_report(
        sections, title=f"Study report: {study.name}", out_dir=out,
        intro=f"Paired {pre} vs {post} analysis generated by phenoflow {versions.get('phenoflow')} "
              f"from {study.manifest.name}. Tables: tables/ (Parquet and CSV); figures: figures/ "
              "(PNG and SVG).",
    )
    log.debug("report: %d figures", len(figures))
    return ReportFiles(html=html, markdown=md, figures=tuple(figures))
