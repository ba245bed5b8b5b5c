"""Run a paired pre/post study from its manifest: gating, frequencies, RNA, statistics, report.

:func:`run_study` reads a manifest (:func:`engine.load_study`), gates the FCS files with the
batch engine into ``OUT/gating/`` (a re-run resumes and reuses every finished file), derives
population frequencies against the named parent and against all events, normalises the skin
counts, runs paired differential expression and gene-set scores, tests everything pre vs post,
computes the requested correlations and subgroup summaries and writes::

    OUT/tables/*.parquet + *.csv     every result table
    OUT/figures/*.png + *.svg        slope plots, correlations, volcano, gate plots
    OUT/report.html, OUT/report.md   the walk-through (HTML self-contained)
    OUT/study.json                   inputs with hashes, versions, parameters, timings

The tables depend only on the inputs, so re-running with the same inputs gives identical
tables.

Each stage hands the next a frozen record (:mod:`engine._study._stages`). The strategy is
read once, by :func:`engine.load_study`, and travels in :attr:`Study.loaded_strategy`. Each
FCS file is evaluated once: by the batch engine's workers, or, for the few files drawn as gate
figures (one patient, pre and post), by the batch in this process (``run_batch(watch=)``),
whose evaluation gives both the counts and every figure of the file. Only when such a file's
gating was resumed from an earlier run is it evaluated here for its figures.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine._batch import BatchRun, ExecutorSpec, GatedSample, InputFile, TaskOutcome, run_batch
from engine._study._manifest import Study, StudyError, file_hash, load_study
from engine._study._stages import (
    ClinicalResult,
    CorrelationResult,
    ExpressionResult,
    FlowResult,
)

__all__ = ["StudyRun", "run_study"]

log = logging.getLogger(__name__)

TOTAL = "total events"


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """The outcome of :func:`run_study`.

    Attributes
    ----------
    out_dir
        The output folder.
    study
        The validated manifest.
    tables
        Table name to its Parquet file (a CSV lies beside each).
    figures
        Every PNG written (an SVG lies beside each).
    report, report_md, record
        ``report.html``, ``report.md`` and ``study.json``.
    gating
        The batch gating run (``gating.resumed`` files came from an earlier run).
    """

    out_dir: Path
    study: Study
    tables: dict[str, Path]
    figures: tuple[Path, ...]
    report: Path
    report_md: Path
    record: Path
    gating: BatchRun

    @property
    def ok(self) -> bool:
        """Whether every FCS file was gated."""
        return self.gating.ok

    def table(self, name: str) -> pd.DataFrame:
        """Read one result table back (``clinical_tests``, ``population_tests`` ...)."""
        return pd.read_parquet(self.tables[name])


# ---- flow -------------------------------------------------------------------------------------
def population_frequencies(populations: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Frequencies of the populations of interest against their named parent and all events.

    Parameters
    ----------
    populations
        The batch's tidy counts table (one row per sample x population).
    study
        The manifest (populations of interest, subject/time columns).

    Returns
    -------
    pandas.DataFrame
        One row per sample x population x denominator: ``sample``, subject, time,
        ``population``, ``path``, ``denominator`` (the parent's name or ``"total events"``),
        ``denominator_path``, ``count``, ``denominator_count``, ``percent`` and ``variable``
        (``"Tc17 (% of CD8+)"``).
    """
    columns = ["sample", study.subject, study.time, "population", "path", "denominator",
               "denominator_path", "count", "denominator_count", "percent", "variable"]
    if populations.empty:
        return pd.DataFrame(columns=columns)
    table = populations[populations["dataset"] == 0] if "dataset" in populations else populations
    counts = table.pivot_table(index="sample", columns="population", values="count",
                               aggfunc="first", sort=False)
    roots = table[table["parent"].isna()].groupby("sample", sort=False)["parent_count"].first()
    meta = table.drop_duplicates("sample").set_index("sample")[[study.subject, study.time]]
    rows = []
    for sample in counts.index:
        for pop in study.populations:
            count = counts.at[sample, pop.path] if pop.path in counts.columns else np.nan
            for denom, denom_path, total in (
                (pop.parent, pop.parent_path,
                 counts.at[sample, pop.parent_path] if pop.parent_path in counts.columns else np.nan),
                (TOTAL, "", roots.get(sample, np.nan)),
            ):
                percent = 100.0 * count / total if total and np.isfinite(total) else np.nan
                rows.append({
                    "sample": sample, study.subject: meta.at[sample, study.subject],
                    study.time: meta.at[sample, study.time], "population": pop.name,
                    "path": pop.path, "denominator": denom, "denominator_path": denom_path,
                    "count": count, "denominator_count": total, "percent": percent,
                    "variable": f"{pop.name} (% of {denom})",
                })
    out = pd.DataFrame(rows, columns=columns)
    out["count"] = out["count"].astype("Int64")
    out["denominator_count"] = out["denominator_count"].astype("Int64")
    return out


def _gate(study: Study, out: Path, executor: ExecutorSpec | None,
          on_result: Callable[[TaskOutcome], None] | None) -> tuple[BatchRun, dict[str, Path]]:
    """Gate every FCS file; the drawn patient's samples are gated in this process and their
    gate figures drawn from that same evaluation (returned: sample -> panel PNG)."""
    from engine._study._report import draw_gate_figures, gate_plot_patient
    from gating import Strategy

    inputs = tuple(
        InputFile(str(s.path), s.sample, {study.subject: s.patient, study.time: s.timepoint})
        for s in study.fcs
    )
    strategy = study.loaded_strategy if study.loaded_strategy is not None else study.strategy
    drawn: dict[str, Path] = {}
    watch: dict[str, Callable[[GatedSample], None]] = {}
    patient = gate_plot_patient(study)
    if isinstance(study.loaded_strategy, Strategy) and patient is not None:
        for s in study.fcs:
            if s.patient != patient:
                continue

            def draw(gated: GatedSample, s: Any = s) -> None:
                drawn[s.sample] = draw_gate_figures(
                    study, out / "figures", s.sample, s.timepoint, gated.plan, gated.sample,
                    gated.evaluation)

            watch[str(s.path)] = draw
    run = run_batch(strategy, inputs, out_dir=out / "gating", executor=executor,
                    on_result=on_result, watch=watch)
    return run, drawn


# ---- expression -------------------------------------------------------------------------------
def _transformed_layer(adata: Any, design: str, numeric: tuple[str, ...] = (), *,
                       fit_type: str = "parametric") -> tuple[str, str]:
    """DESeq2's VST in ``layers["vst"]`` (dispersions fitted with the design, as DESeq2 advises
    for downstream analysis when the design is known); return the layer and a description."""
    from expression import vst

    vst(adata, blind=False, design=design, numeric=numeric, fit_type=fit_type)
    record = adata.uns["vst"]
    how = (f"vst(), dispersion trend on {record['nsub']} genes" if record.get("method") == "vst"
           else "varianceStabilizingTransformation, dispersion trend on all genes")
    return "vst", f"DESeq2 {how} (blind=False, design {design})"


def _gene_sets(study: Study) -> dict[str, list[str]]:
    from expression import default_gene_sets, read_gmt

    assert study.expression is not None
    sets: dict[str, list[str]] = {}
    for k, entry in enumerate(study.expression.gene_sets):
        try:
            more = default_gene_sets() if entry == "default" else read_gmt(entry)
        except ValueError as exc:
            raise StudyError(study.manifest, f"gene_sets[{k}]", str(exc)) from exc
        for name, genes in more.items():
            if name in sets:
                raise StudyError(study.manifest, f"gene_sets[{k}]",
                                 f"gene set {name!r} is defined twice")
            sets[name] = genes
    return sets


def _expression(study: Study, common: dict[str, Any]) -> ExpressionResult:
    """Size factors, DE, gene-set scores (long table), their paired tests and what was done."""
    from engine._stats import paired_tests
    from expression import (
        differential_expression,
        geneset_scores,
        log2p1,
        normalize_counts,
        read_counts,
        read_sample_sheet,
    )

    ex = study.expression
    assert ex is not None
    sheet = read_sample_sheet(ex.samples)
    for column in (study.subject, study.time):
        if column not in sheet.columns:
            raise StudyError(study.manifest, "samples",
                             f"{ex.samples.name} has no {column!r} column ({list(sheet.columns)})")
    sheet = sheet.astype({study.subject: str, study.time: str})
    try:
        adata = read_counts(ex.counts, samples=sheet)
    except ValueError as exc:
        raise StudyError(study.manifest, "counts", f"{type(exc).__name__}: {exc}") from exc
    normalize_counts(adata)
    size_factors = pd.DataFrame({
        "sample": adata.obs_names.astype(str),
        study.subject: adata.obs[study.subject].to_numpy(),
        study.time: adata.obs[study.time].to_numpy(),
        "size_factor": adata.obs["size_factors"].to_numpy(dtype=float),
    })
    layer, layer_note = _transformed_layer(adata, ex.design, ex.numeric, fit_type=ex.fit_type)
    log2p1(adata, layer="normalized")  # for the mean-SD comparison figure only
    de = differential_expression(adata, design=ex.design, contrast=ex.contrast, alpha=ex.alpha,
                                 numeric=ex.numeric, fit_type=ex.fit_type)
    sets = _gene_sets(study)
    scores = geneset_scores(adata, sets, method=ex.score, layer=layer)  # type: ignore[arg-type]
    long = scores.reset_index().melt(id_vars="gene_set", var_name="sample", value_name="score")
    obs = adata.obs[[study.subject, study.time]].astype(str)
    long[study.subject] = obs.loc[long["sample"], study.subject].to_numpy()
    long[study.time] = obs.loc[long["sample"], study.time].to_numpy()
    long["n_genes"] = long["gene_set"].map(scores.attrs["n_genes"]).astype("Int64")
    long["method"] = ex.score
    long = long[["sample", study.subject, study.time, "gene_set", "n_genes", "method", "score"]]
    return ExpressionResult(
        size_factors=size_factors, de=de.table.reset_index(), de_params=de.params, scores=long,
        tests=paired_tests(long, variable="gene_set", value="score", **common), sets=sets,
        layer=layer, layer_note=layer_note, adata=adata, n_samples=int(adata.n_obs),
        n_genes=int(adata.n_vars),
    )


# ---- statistics -------------------------------------------------------------------------------
def _wide_by_visit(study: Study, clinical: pd.DataFrame, freq: pd.DataFrame,
                   scores: pd.DataFrame | None) -> pd.DataFrame:
    """One row per subject x timepoint: clinical columns, population % of parent, set scores."""
    keys = [study.subject, study.time]
    wide = clinical.copy()
    wide[keys] = wide[keys].astype(str)
    parts = []
    if not freq.empty:
        named = freq[freq["denominator"] != TOTAL]
        parts.append(named.pivot_table(index=keys, columns="population", values="percent",
                                       aggfunc="first"))
    if scores is not None and not scores.empty:
        parts.append(scores.pivot_table(index=keys, columns="gene_set", values="score",
                                        aggfunc="first"))
    for part in parts:
        part = part.drop(columns=[c for c in part.columns if c in wide.columns])
        part.columns = part.columns.astype(str)
        wide = wide.merge(part.reset_index(), on=keys, how="outer")
    order = {study.pre: 0, study.post: 1}
    return wide.sort_values(keys, key=lambda s: s.map(order) if s.name == study.time else s,
                            kind="stable").reset_index(drop=True)


def _correlations(study: Study, wide: pd.DataFrame) -> CorrelationResult:
    """The manifest's correlations, and the points behind each (for the scatter plots)."""
    from engine._stats import correlations

    results, points = [], []
    groups: dict[tuple[str, str, bool], list[tuple[str, str]]] = {}
    for c in study.correlations:
        for v, key in ((c.x, "x"), (c.y, "y")):
            if v not in wide.columns:
                k = study.correlations.index(c)
                raise StudyError(study.manifest, f"correlations[{k}].{key}",
                                 f"{v!r} is not a clinical column, population or gene set")
        groups.setdefault((c.method, c.timepoint, c.pool_timepoints), []).append((c.x, c.y))
    for (method, timepoint, pool), pairs in groups.items():
        res = correlations(wide, pairs=pairs, method=method, subject=study.subject,
                           time=study.time, timepoint=timepoint, pool_timepoints=pool,
                           confidence=study.confidence)
        results.append(res)
    if not results:
        return CorrelationResult(pd.DataFrame(), pd.DataFrame(columns=["panel", "x_value", "y_value"]))
    table = pd.concat(results, ignore_index=True)
    for k, row in enumerate(table.itertuples(index=False)):
        sub = wide if str(row.timepoint) == "pooled" else wide[wide[study.time] == str(row.timepoint)]
        sub = sub[[study.subject, study.time, row.x, row.y]].dropna()
        points.append(pd.DataFrame({"panel": k, study.subject: sub[study.subject].to_numpy(),
                                    study.time: sub[study.time].to_numpy(),
                                    "x": row.x, "y": row.y,
                                    "x_value": sub[row.x].to_numpy(dtype=float),
                                    "y_value": sub[row.y].to_numpy(dtype=float)}))
    return CorrelationResult(table, pd.concat(points, ignore_index=True))


# ---- output -----------------------------------------------------------------------------------
def _write_table(frame: pd.DataFrame, folder: Path, name: str) -> Path:
    """``name.parquet`` and ``name.csv``, each written atomically (whole, or not at all)."""
    from engine.runtime import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    frame = frame.reset_index(drop=True)
    parquet = folder / f"{name}.parquet"
    with atomic_path(parquet, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_path(folder / f"{name}.csv", suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", na_rep="NA")
    return parquet


def _versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("phenoflow", "numpy", "pandas", "scipy", "pyarrow", "numba", "anndata",
                 "pydeseq2", "matplotlib", "dask", "distributed", "pyyaml"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - all are dependencies
            out[name] = "not installed"
    return out


def _strategy_hash(study: Study) -> str:
    from gating import Strategy, strategy_hash

    loaded = study.loaded_strategy
    return strategy_hash(loaded) if isinstance(loaded, Strategy) else "workspace"


def _with_strategy(study: Study) -> Study:
    """``study`` holding its loaded strategy (read here only for a Study built by hand)."""
    if study.loaded_strategy is not None:
        return study
    from gating import load_strategy

    try:
        loaded = load_strategy(study.strategy)
    except Exception as exc:
        raise StudyError(study.manifest, "strategy",
                         f"cannot load {study.strategy}: {type(exc).__name__}: {exc}") from exc
    return dataclasses.replace(study, loaded_strategy=loaded)


def _clinical(study: Study, common: dict[str, Any]) -> ClinicalResult:
    """The clinical table of the study's subjects and the paired tests of the outcomes."""
    from engine._stats import paired_tests

    clinical = pd.read_csv(study.clinical)
    clinical[[study.subject, study.time]] = clinical[[study.subject, study.time]].astype(str)
    clinical = clinical[clinical[study.subject].isin(study.patients)]
    for k, o in enumerate(study.outcomes):
        if not pd.api.types.is_numeric_dtype(clinical[o]):
            raise StudyError(study.manifest, f"outcomes[{k}]", f"column {o!r} is not numeric")
    return ClinicalResult(clinical, paired_tests(clinical, variables=list(study.outcomes), **common))


def _flow(study: Study, gating: BatchRun, common: dict[str, Any]) -> FlowResult:
    """Population frequencies from the batch's counts and their paired tests."""
    from engine._stats import paired_tests

    freq = population_frequencies(gating.populations, study)
    return FlowResult(freq, paired_tests(freq, variable="variable", value="percent", **common))


def _writable_folder(study: Study, out: Path) -> Path:
    """Create ``out`` and check a file can be written there, before any work."""
    from engine.runtime import unwritable_reason

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason: str | None = exc.strerror or str(exc)
    else:
        reason = unwritable_reason(out)
    if reason is not None:
        raise StudyError(study.manifest, "(out)", f"output folder {out} cannot be written: {reason}")
    return out


def run_study(
    manifest: str | os.PathLike[str] | Study,
    *,
    out_dir: str | os.PathLike[str],
    executor: ExecutorSpec | None = None,
    on_result: Callable[[TaskOutcome], None] | None = None,
) -> StudyRun:
    """Run a study end to end and write its tables, figures, report and run record.

    Parameters
    ----------
    manifest
        The study manifest (path) or an already validated :class:`Study`.
    out_dir
        Output folder (created). ``gating/`` inside it holds the batch outputs; a re-run
        with the same inputs gates only the files without a finished part.
    executor
        Where to gate (default: Dask's local threaded scheduler, as ``phenoflow gate``).
    on_result
        Called with each gated file's summary (progress reporting).

    Returns
    -------
    StudyRun
        Paths of everything written and the gating run.

    Raises
    ------
    StudyError
        For an invalid manifest or inputs that do not fit it (checked when the manifest is
        loaded, before any gating), or an output folder that cannot be written (key
        ``(out)``, also before any gating).
    """
    from engine.runtime import output_lock, remove_stale_partials

    study = _with_strategy(manifest if isinstance(manifest, Study) else load_study(manifest))
    out = _writable_folder(study, Path(out_dir))
    # one run per output folder at a time (a second one fails at once, naming the holder);
    # what killed runs left half-written is removed first
    with output_lock(out):
        stale = remove_stale_partials(out, out / "tables", out / "figures")
        if stale:
            log.warning("study: removed %d temporary files of an interrupted run", len(stale))
        return _run_locked(study, out, executor, on_result)


def _run_locked(
    study: Study, out: Path, executor: ExecutorSpec | None,
    on_result: Callable[[TaskOutcome], None] | None,
) -> StudyRun:
    from engine._study._report import build_report

    timings: dict[str, float] = {}
    started = time.perf_counter()

    t0 = time.perf_counter()
    gating, drawn = _gate(study, out, executor, on_result)
    timings["gating"] = time.perf_counter() - t0
    log.info("study: gated %d files (%d resumed)", len(gating.files), gating.resumed)

    t0 = time.perf_counter()
    method = study.paired_test
    common = {"subject": study.subject, "time": study.time, "pre": study.pre, "post": study.post,
              "method": method}
    clinical = _clinical(study, common)
    flow = _flow(study, gating, common)
    tables: dict[str, pd.DataFrame] = {
        "clinical_tests": clinical.tests,
        "population_frequencies": flow.frequencies,
        "population_tests": flow.tests,
    }
    timings["statistics_flow_clinical"] = time.perf_counter() - t0

    expr: ExpressionResult | None = None
    if study.expression is not None:
        t0 = time.perf_counter()
        expr = _expression(study, common)
        tables["size_factors"] = expr.size_factors
        tables["differential_expression"] = expr.de
        tables["geneset_scores"] = expr.scores
        tables["geneset_tests"] = expr.tests
        timings["expression"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    wide = _wide_by_visit(study, clinical.table, flow.frequencies,
                          expr.scores if expr is not None else None)
    tables["visits"] = wide
    corr = _correlations(study, wide)
    if not corr.table.empty:
        tables["correlations"] = corr.table
        tables["correlation_points"] = corr.points
    if study.subgroup is not None:
        from engine._stats import subgroup_summary

        variables = [*study.outcomes, *[p.name for p in study.populations if p.name in wide]]
        if expr is not None:
            variables += [s for s in expr.scores["gene_set"].unique() if s in wide]
        tables["subgroup_summary"] = subgroup_summary(wide, by=study.subgroup, variables=variables,
                                                      **common)
    timings["statistics"] = time.perf_counter() - t0

    paths = {name: _write_table(frame, out / "tables", name) for name, frame in tables.items()}

    t0 = time.perf_counter()
    digest, versions = _strategy_hash(study), _versions()
    report = build_report(
        study, out, tables=tables, expr=expr, gating=gating,
        strategy_hash=digest, versions=versions, drawn=drawn,
    )
    timings["figures_and_report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started

    record = {
        "study": study.name,
        "manifest": str(study.manifest),
        "inputs": {role: {"path": str(p), "sha256": file_hash(p)}
                   for role, p in study.input_files().items()},
        "fcs": gating.files.to_dict("records"),
        "strategy": {"source": study.strategy, "sha256": digest},
        "versions": versions,
        "parameters": _parameters(study, expr),
        "gating": {"files": len(gating.files), "failed": len(gating.errors),
                   "resumed": gating.resumed, "executor": gating.executor},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "outputs": {"tables": {k: str(v.relative_to(out)) for k, v in paths.items()},
                    "figures": [str(f.relative_to(out)) for f in report.figures],
                    "report": "report.html", "report_md": "report.md"},
    }
    from engine.runtime import atomic_write_text

    record_path = out / "study.json"
    atomic_write_text(record_path, json.dumps(record, indent=2, default=str) + "\n")
    log.info("study: report %s (%.1f s)", report.html, timings["total"])
    return StudyRun(out_dir=out, study=study, tables=paths, figures=report.figures,
                    report=report.html, report_md=report.markdown, record=record_path,
                    gating=gating)


def _parameters(study: Study, expr: ExpressionResult | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "subject": study.subject, "time": study.time, "pre": study.pre, "post": study.post,
        "paired_test": study.paired_test, "correlation_method": study.correlation_method,
        "confidence": study.confidence, "outcomes": list(study.outcomes),
        "subgroup": study.subgroup,
        "populations": [dataclasses.asdict(p) for p in study.populations],
        "correlations": [dataclasses.asdict(c) for c in study.correlations],
    }
    if study.expression is not None and expr is not None:
        params["expression"] = {
            "design": study.expression.design, "contrast": list(study.expression.contrast),
            "alpha": study.expression.alpha, "score": study.expression.score,
            "numeric": list(study.expression.numeric), "fit_type": study.expression.fit_type,
            "design_variables": dict(expr.de_params.get("variables", {})),
            "gene_sets": list(study.expression.gene_sets), "score_input": expr.layer_note,
            "de": expr.de_params,
        }
    return params
