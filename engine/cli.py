"""The ``phenoflow`` command line: a thin layer over the library with clear errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import click

from engine import __version__

T = TypeVar("T")
log = logging.getLogger("phenoflow")


def _progress(items: Sequence[T], *, label: str) -> Iterable[T]:
    """A progress bar on a terminal, plain iteration (with log lines) otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(items, desc=label, unit="file", leave=False)
    return items


class _NoBar:
    def update(self, n: int = 1) -> None:
        """Nothing to draw when not on a terminal."""

    def close(self) -> None:
        """Nothing to close."""


def _bar(total: int, *, label: str):
    """A tqdm progress bar on a terminal; a no-op otherwise (log lines carry progress)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=label, unit="file")
    return _NoBar()


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="phenoflow")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """phenoflow: cytometry and transcriptomics processing for paired clinical studies."""
    _setup_logging(verbose)


def _fcs_summary(paths: Sequence[Path]) -> tuple[list[dict[str, object]], int]:
    from gating import FCSError, read_fcs

    rows: list[dict[str, object]] = []
    failures = 0
    for path in _progress(paths, label="reading"):
        try:
            data = read_fcs(path)
        except (FCSError, OSError) as exc:
            failures += 1
            rows.append({"file": path.name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        spill = data.spill
        rows.append(
            {
                "file": path.name,
                "version": data.version,
                "events": data.n_events,
                "channels": data.n_channels,
                "spillover": f"{spill.shape[0]}x{spill.shape[1]}" if spill is not None else "-",
                "datasets": data.n_datasets,
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
    """Summarise FCS FILES: version, events, channels, spillover, datasets."""
    rows, failures = _fcs_summary(list(files))
    _print_rows(rows)
    if failures:
        raise SystemExit(1)


@main.command()
@click.option("--strategy", "strategy", required=True, help="Gating-ML, FlowJo .wsp, YAML/JSON, or a preset name.")
@click.option("--fcs", "fcs", multiple=True, required=True, type=click.Path(path_type=Path), help="FCS file (repeat, or a directory).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--membership", is_flag=True, help="Also write membership/<sample>.parquet.")
@click.option("--group", default=None, help="FlowJo workspace group whose gates apply to every file.")
@click.option("--mfi", default=None, help="Comma-separated channels for per-population medians.")
def gate(
    strategy: str, fcs: tuple[Path, ...], out_dir: Path, membership: bool, group: str | None,
    mfi: str | None,
) -> None:
    """Gate FCS files with a strategy; write populations.parquet (tidy counts) to --out."""
    from engine._batch import gate_files

    files: list[Path] = []
    for item in fcs:
        files += sorted(item.rglob("*.fcs")) if item.is_dir() else [item]
    if not files:
        raise click.UsageError("no FCS files given (--fcs FILE or a directory)")
    bar = _bar(len(files), label="gating")
    run = gate_files(
        strategy, files, out_dir=out_dir, membership=membership, group=group,
        mfi=[c.strip() for c in mfi.split(",")] if mfi else None,
        on_file=lambda _: bar.update(1),
    )
    bar.close()
    n_ok = run.populations["sample"].nunique() if not run.populations.empty else 0
    click.echo(f"gated {n_ok} of {len(files)} files -> {run.out_dir / 'populations.parquet'}")
    for row in run.errors.itertuples():
        click.echo(f"FAILED {row.path}: {row.error_type}: {row.message}", err=True)
    if not run.ok:
        raise SystemExit(1)


@main.command("demo-data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=20190419, show_default=True, help="Random seed.")
@click.option("--events", type=int, default=50_000, show_default=True, help="Events per FCS file.")
@click.option("--genes", type=int, default=20_000, show_default=True, help="Genes in the count matrix.")
def demo_data(out_dir: Path, seed: int, events: int, genes: int) -> None:
    """Write the synthetic demo study (FCS files, strategy, counts, clinical table, truth)."""
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
def demo(out_dir: Path, seed: int, events: int, genes: int) -> None:
    """Generate the built-in demo study and summarise it."""
    import pandas as pd

    from engine.demo import make_demo_study

    study = make_demo_study(out_dir / "study", seed=seed, n_events=events, n_genes=genes)
    from engine._batch import gate_files

    bar = _bar(len(study.fcs), label="gating")
    run = gate_files(study.strategy, study.fcs, out_dir=out_dir / "gating", on_file=lambda _: bar.update(1))
    bar.close()
    rows, failures = _fcs_summary(list(study.fcs))
    wide = (
        run.populations.assign(name=run.populations["population"].str.rsplit("/", n=1).str[-1])
        .pivot_table(index="sample", columns="name", values="percent_of_parent", aggfunc="first")
        if not run.populations.empty
        else pd.DataFrame()
    )
    for row in rows:
        sample = str(row["file"]).removesuffix(".fcs")
        for pop, label in _DEMO_POPULATIONS:
            if sample in wide.index and pop in wide.columns:
                row[label] = f"{wide.loc[sample, pop]:.2f}"
    click.echo(f"Flow cytometry: {len(study.fcs)} FCS files, gated with {study.strategy.name}")
    _print_rows(rows)
    counts = pd.read_csv(study.counts, index_col=0)
    clinical = pd.read_csv(study.clinical)
    click.echo(
        f"\nSkin biopsies: {counts.shape[0]:,} genes x {counts.shape[1]} samples ({study.counts.name})"
    )
    click.echo(
        f"Clinical table: {len(clinical)} rows, {clinical['patient'].nunique()} patients "
        f"({study.clinical.name})"
    )
    click.echo(f"Population counts: {run.out_dir / 'populations.parquet'}")
    click.echo(f"Planted truth: {study.truth}")
    click.echo(f"\nDemo study written to {study.out_dir.resolve()}")
    if failures or not run.ok:
        raise SystemExit(1)


_DEMO_POPULATIONS = (
    ("Lymphocytes", "lymph%"),
    ("CD3+", "CD3+%live"),
    ("CD8+", "CD8+%CD3"),
    ("Tc17", "Tc17%CD8"),
)


if __name__ == "__main__":  # pragma: no cover
    main()
