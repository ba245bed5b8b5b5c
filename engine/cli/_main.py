"""The ``phenoflow`` command line: a thin layer over the library with clear errors."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import click

from engine import __version__
from engine.cli._convert import convert as _convert_command
from engine.cli._errors import (
    PhenoflowGroup,
    UsageProblem,
    check_output_file,
    check_output_folder,
    debugging,
    load_strategy_option,
)
from engine.cli._gate import gate as _gate_command
from engine.cli._phenotype import phenotype as _phenotype_command
from engine.cli._process import owns_process
from engine.cli._progress import track
from engine.cli._study import executor_options
from engine.cli._study import study as _study_command

log = logging.getLogger("phenoflow")


def _fcs_files(items: Sequence[str | Path], *, hint: str) -> list[Path]:
    """FCS files from files, folders, globs and list files: the batch's own expansion rule."""
    from engine._batch import InputError, expand_inputs

    try:
        files = list(expand_inputs(items))
    except InputError as exc:
        raise UsageProblem(str(exc)) from None
    if not files:
        raise click.UsageError(f"no FCS files given ({hint})")
    return files


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    """A warning as the command line shows it: its kind and message on one line (Python's
    default adds the file, line number and source line of the code that warned)."""
    return f"{category.__name__}: {message}\n"


def _setup_logging(verbose: int) -> None:
    if owns_process():  # the command line's presentation; an in-process caller keeps its own
        warnings.formatwarning = _one_line_warning
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)  # also filters records that Dask's own loggers let through
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("distributed").setLevel(max(level, logging.WARNING) if verbose < 2 else level)


@click.group(cls=PhenoflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="phenoflow")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True,
              help="Show the full traceback of an error instead of its one-line summary.")
def main(verbose: int, debug: bool) -> None:
    """phenoflow: cytometry and transcriptomics processing for paired clinical studies.

    Usage mistakes (a missing or unreadable input, an output that cannot be written, an
    unknown channel or group) stop before any work with one line and exit code 2.
    """
    _setup_logging(verbose)
    _ensure_cache_dir()


def _ensure_cache_dir() -> None:
    """Point Numba's cache somewhere writable before any kernel package is imported."""
    import importlib.util

    from engine.runtime import ensure_cache_dir

    folders = []
    for package in ("gating", "expression"):  # the packages that hold kernels
        spec = importlib.util.find_spec(package)  # locates without importing
        if spec is not None and spec.submodule_search_locations:
            folders.extend(spec.submodule_search_locations)
    ensure_cache_dir(*folders)


def _spillover_text(data: object) -> str:
    """``ok (10x10)``, ``none``, ``labels do not match (BV510_A -> BV510-A)``, ``singular``."""
    from gating import FCSError, check_spillover

    try:
        return check_spillover(data).text  # type: ignore[arg-type]
    except FCSError as exc:
        return f"malformed ({exc.detail if hasattr(exc, 'detail') else exc})"


def _fcs_summary(paths: Sequence[Path]) -> tuple[list[dict[str, object]], int]:
    from gating import FCSError, read_fcs

    rows: list[dict[str, object]] = []
    failures = 0
    for path in track(paths, label="reading"):
        try:
            data = read_fcs(path)
        except (FCSError, OSError) as exc:
            failures += 1
            rows.append({"file": path.name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append(
            {
                "file": path.name,
                "version": data.version,
                "events": data.n_events,
                "channels": data.n_channels,
                "datasets": data.n_datasets,
                "spillover": _spillover_text(data),
            }
        )
    return rows, failures


def _print_rows(rows: Sequence[dict[str, object]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def info(files: tuple[Path, ...]) -> None:
    """Summarise FCS FILES (files, directories, globs, @list files): version, events, channels,
    datasets, and whether the spillover matrix fits the channels (ok, none, labels do not
    match, singular)."""
    rows, failures = _fcs_summary(_fcs_files(files, hint="FILES: files, directories, globs or @list files"))
    _print_rows(rows)
    if failures:
        raise SystemExit(1)


@main.command()
@click.option("--strategy", "strategies", multiple=True, required=True, help="Strategy A, then strategy B (exactly two): Gating-ML, FlowJo .wsp, YAML/JSON, or a preset name.")
@click.option("--fcs", "fcs", multiple=True, required=True, type=click.Path(path_type=Path), help="FCS file, directory, glob or @list file (repeat).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--map", "maps", multiple=True, metavar="A_POP=B_POP", help="Compare these populations (full path or id; repeat).")
@click.option("--map-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSV: a header row, then an A and a B population per row.")
@click.option("--group-a", default=None, help="FlowJo workspace group for strategy A.")
@click.option("--group-b", default=None, help="FlowJo workspace group for strategy B.")
@click.option("--label-a", default="A", show_default=True, help="Name of strategy A in tables and the figure.")
@click.option("--label-b", default="B", show_default=True, help="Name of strategy B in tables and the figure.")
def compare(
    strategies: tuple[str, ...], fcs: tuple[Path, ...], out_dir: Path, maps: tuple[str, ...],
    map_file: Path | None, group_a: str | None, group_b: str | None, label_a: str, label_b: str,
) -> None:
    """Compare two gating strategies on the same FCS files: counts, per-event F1, timing."""
    from engine._compare import (
        compare_strategies,
        format_score,
        pair_labels,
        parse_mapping,
        read_mapping,
    )
    from gating import FlowJoWorkspace, Strategy

    if len(strategies) != 2:
        raise click.UsageError(f"give exactly two --strategy options (A, then B), not {len(strategies)}")
    files = _fcs_files(fcs, hint="--fcs FILE or a directory")
    check_output_folder(out_dir)
    try:
        mapping = {**(read_mapping(map_file) if map_file else {}), **parse_mapping(maps)}
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    loaded: list[Strategy | FlowJoWorkspace] = [load_strategy_option(spec) for spec in strategies]
    for strategy, group, option in ((loaded[0], group_a, "--group-a"), (loaded[1], group_b, "--group-b")):
        if group is not None and isinstance(strategy, FlowJoWorkspace) and group not in strategy.groups:
            raise UsageProblem(f"{option} {group!r}: the workspace {strategy.source} has no such "
                               f"group; groups: {', '.join(map(repr, strategy.groups))}")
    try:
        result = compare_strategies(
            loaded[0], loaded[1], files, mapping=mapping, group_a=group_a, group_b=group_b,
            out_dir=out_dir, labels=(label_a, label_b),
        )
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    n_ok = result.per_file["file"].nunique() if not result.per_file.empty else 0
    click.echo(f"compared {n_ok} of {len(files)} files: {label_a} = {strategies[0]}, {label_b} = {strategies[1]}")
    if not result.summary.empty:
        _print_rows([
            {"population": name, "match": row.match, "F1 mean": format_score(row.f1_mean),
             "F1 min": format_score(row.f1_min), f"count {label_a}": row.count_a,
             f"count {label_b}": row.count_b, "diff": f"{row.difference:+d}",
             "max |diff|": row.max_abs_difference}
            for name, row in zip(pair_labels(result.summary), result.summary.itertuples(), strict=True)
        ])
    for row in result.timing[result.timing["scope"] == "total"].itertuples():
        click.echo(
            f"time {'reading files' if row.stage == 'read' else row.label}: "
            f"{row.seconds:.3f} s for {row.files} files "
            f"({row.seconds_per_file:.4f} s/file, {row.events_per_s:,.0f} events/s)"
        )
    for side, label in (("a", label_a), ("b", label_b)):
        missing = result.unmatched.loc[result.unmatched["side"] == side, "population"].tolist()
        if missing:
            click.echo(f"unmatched in {label}: {', '.join(missing)}")
    click.echo(f"tables and agreement.png -> {out_dir}")
    for row in result.errors.itertuples():
        click.echo(f"FAILED {row.file} ({row.stage}): {row.error_type}: {row.message}", err=True)
    if not result.ok:
        raise SystemExit(1)


@main.command()
@click.argument("counts", type=click.Path(exists=True, dir_okay=True, path_type=Path))
@click.option("--samples", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None, help="Sample sheet (first column = sample id).")
@click.option("--method", type=click.Choice(["ratio", "poscounts", "cpm", "log2p1", "vst"]), default="ratio", show_default=True, help="DESeq2 size factors, CPM, log2(normalised + 1) or DESeq2's vst() (dispersion trend on --nsub genes; all genes when fewer have a mean above 5).")
@click.option("--nsub", default="1000", show_default=True, help="vst: genes the trend is fitted on, as R's vst(nsub=); 'all' gives varianceStabilizingTransformation.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .csv (genes x samples), .parquet or .h5ad.")
@click.option("--size-factors", "sf_out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write size factors (sample,size_factor) to this CSV.")
@click.option("--blind/--no-blind", default=True, show_default=True, help="vst: dispersions with design ~1 (blind) or with --design.")
@click.option("--fit-type", type=click.Choice(["parametric", "mean"]), default="parametric", show_default=True, help="vst: dispersion trend (R's fitType). Where the parametric trend cannot be fitted the run stops (R would use a local fit, not implemented); 'mean' is the explicit way on.")
@click.option("--design", default="~ patient + timepoint", show_default=True, help="vst --no-blind: model formula over sample-sheet columns.")
@click.option("--numeric", multiple=True, metavar="COLUMN", help="Fit this integer-valued design column as a number (default: integer codes with few distinct values, like patient ids 1..10, are fitted as factors, with a notice). Repeatable.")
def normalize(counts: Path, samples: Path | None, method: str, out: Path, sf_out: Path | None, blind: bool, fit_type: str, design: str, numeric: tuple[str, ...], nsub: str) -> None:
    """Normalise a count matrix (DESeq2-exact size factors, CPM, log2(x+1) or VST)."""
    check_output_file(out, suffixes=(".csv", ".tsv", ".parquet", ".h5ad"))
    if sf_out is not None:
        check_output_file(sf_out, suffixes=(".csv",), option="--size-factors")
    from expression import normalize_file

    try:
        adata = normalize_file(counts, out=out, method=method, samples=samples, size_factors_out=sf_out,
                               blind=blind, fit_type=fit_type, design=design, numeric=numeric,
                               nsub=_nsub(nsub))
    except ValueError as exc:  # CountsError and every input mistake are ValueErrors
        if debugging():
            raise
        raise UsageProblem(f"{type(exc).__name__}: {exc}") from None
    click.echo(f"{adata.n_obs} samples x {adata.n_vars} genes ({method}) -> {out}")


@main.command()
@click.argument("counts", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--samples", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Sample sheet (first column = sample id).")
@click.option("--design", default="~ patient + timepoint", show_default=True, help="Model formula over sample-sheet columns.")
@click.option("--contrast", default="timepoint,post,pre", show_default=True, help="factor,level,reference.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .csv, .tsv or .parquet (one row per gene).")
@click.option("--alpha", type=float, default=0.1, show_default=True, help="Independent-filtering significance level.")
@click.option("--inference", type=click.Choice(["numba", "pydeseq2"]), default="numba", show_default=True, help="Per-gene fits: phenoflow's R-faithful Numba kernels or pydeseq2's default.")
@click.option("--shrink", is_flag=True, help="Add log2FoldChange_shrunk (LFC shrinkage of the contrast's coefficient).")
@click.option("--numeric", multiple=True, metavar="COLUMN", help="Fit this integer-valued design column as a number (default: integer codes with few distinct values, like patient ids 1..10, are fitted as factors, with a notice). Repeatable.")
@click.option("--test", "test", type=click.Choice(["Wald", "LRT"]), default="Wald", show_default=True, help="Wald test of the contrast, or likelihood-ratio test against --reduced.")
@click.option("--reduced", default=None, help="LRT: the reduced formula, e.g. '~ patient'.")
@click.option("--lfc-threshold", type=float, default=0.0, show_default=True, help="Wald: test |log2 fold change| against this threshold (R's lfcThreshold).")
@click.option("--alt-hypothesis", type=click.Choice(["greaterAbs", "lessAbs", "greater", "less"]), default="greaterAbs", show_default=True, help="Wald with --lfc-threshold: R's altHypothesis.")
@click.option("--fit-type", type=click.Choice(["parametric", "mean"]), default="parametric", show_default=True, help="Dispersion trend (R's fitType). Where the parametric trend cannot be fitted the run stops (R would use a local fit, not implemented); 'mean' is the explicit way on.")
def de(counts: Path, samples: Path, design: str, contrast: str, out: Path, alpha: float, inference: str, shrink: bool, numeric: tuple[str, ...], test: str, reduced: str | None, lfc_threshold: float, alt_hypothesis: str, fit_type: str) -> None:
    """Differential expression as R DESeq2: Wald (optionally against an LFC threshold) or LRT."""
    check_output_file(out, suffixes=(".csv", ".tsv", ".parquet"))
    from expression import de_file

    try:
        result = de_file(counts, samples=samples, out=out, design=design, contrast=contrast, alpha=alpha,
                         inference=inference, shrink=shrink, numeric=numeric, test=test,
                         reduced=reduced, lfc_threshold=lfc_threshold,
                         alt_hypothesis=alt_hypothesis, fit_type=fit_type)
    except ValueError as exc:  # CountsError, a design or contrast that does not fit the samples
        if debugging():
            raise
        raise UsageProblem(f"{type(exc).__name__}: {exc}") from None
    factors = result.params.get("integer_factors") or ()
    if factors:
        click.echo(f"note: integer-coded {', '.join(factors)} fitted as factor(s); "
                   f"--numeric {factors[0]} fits it as a number", err=True)
    click.echo(f"{result.params['n_significant']} of {result.params['n_genes']} genes at padj < {alpha} -> {out}")


def _nsub(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageProblem(f"--nsub must be a positive number of genes or 'all', got {text!r}")
    return int(text)


@main.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=20190419, show_default=True, help="Random seed.")
@click.option("--events", type=int, default=50_000, show_default=True, help="Events per FCS file.")
@click.option("--genes", type=int, default=20_000, show_default=True, help="Genes in the count matrix.")
def demo_data(out_dir: Path, seed: int, events: int, genes: int) -> None:
    """Write the synthetic demo study (FCS files, strategy, counts, clinical table, truth)."""
    check_output_folder(out_dir, option="OUT_DIR")
    from engine.demo import make_demo_study

    study = make_demo_study(out_dir, seed=seed, n_events=events, n_genes=genes)
    click.echo(f"wrote {len(study.files)} files to {study.out_dir}")


@main.command()
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"),
    show_default=True, help="Folder for the demo study and its results.",
)
@click.option("--seed", type=int, default=20190419, show_default=True, help="Random seed.")
@click.option("--events", type=int, default=50_000, show_default=True, help="Events per FCS file.")
@click.option("--genes", type=int, default=20_000, show_default=True, help="Genes in the count matrix.")
def demo(out_dir: Path, seed: int, events: int, genes: int, **options: object) -> None:
    """Generate the demo study into OUT/study and run `phenoflow study` on it (in-process
    unless an executor option is given); prints the report's path."""
    import pandas as pd

    from engine.cli._study import executor_spec, headline, run_with_progress
    from engine.demo import make_demo_study

    check_output_folder(out_dir)

    study = make_demo_study(out_dir / "study", seed=seed, n_events=events, n_genes=genes)
    spec = executor_spec(dict(options), default="inprocess")
    run = run_with_progress(study.study, out_dir, spec, json_lines=options["log_format"] == "json")
    rows, failures = _fcs_summary(list(study.fcs))
    pops = run.gating.populations
    wide = (
        pops.assign(name=pops["population"].str.rsplit("/", n=1).str[-1])
        .pivot_table(index="sample", columns="name", values="percent_of_parent", aggfunc="first")
        if not pops.empty
        else pd.DataFrame()
    )
    for row in rows:
        sample = str(row["file"]).removesuffix(".fcs")
        for pop, label in _DEMO_POPULATIONS:
            if sample in wide.index and pop in wide.columns:
                row[label] = f"{wide.loc[sample, pop]:.2f}"
    click.echo(f"Flow cytometry: {len(study.fcs)} FCS files, gated on {run.gating.executor}")
    _print_rows(rows)
    click.echo(f"\nDemo study: {study.out_dir.resolve()} (planted truth: {study.truth.name})")
    for line in headline(run):
        click.echo(line)
    click.echo(f"tables: {(out_dir / 'tables').resolve()}")
    click.echo(f"report: {run.report.resolve()}")
    if failures or not run.ok:
        raise SystemExit(1)


_DEMO_POPULATIONS = (
    ("Lymphocytes", "lymph%"),
    ("CD3+", "CD3+%live"),
    ("CD8+", "CD8+%CD3"),
    ("Tc17", "Tc17%CD8"),
)


main.add_command(_gate_command)
main.add_command(_convert_command)
main.add_command(_study_command)
main.add_command(_phenotype_command)
executor_options(demo)
