"""``phenoflow phenotype``: cluster one gated population and score the clusters against its children."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli._errors import UsageProblem, check_output_folder, debugging, load_strategy_option

__all__ = ["phenotype"]


@click.command()
@click.option("--strategy", required=True, help="Gating-ML, FlowJo .wsp, YAML/JSON, or a preset name.")
@click.option("--fcs", "fcs", multiple=True, required=True, help="FCS file, directory, glob or @list file (repeat).")
@click.option("--population", required=True,
              help="The population to cluster: its path (/Lymphocytes/Singlets/Live/CD3+) or a unique ending (CD3+).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--per-file", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Events of the population drawn per file (all when fewer).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of subsampling, kNN, Leiden and UMAP.")
@click.option("--resolution", type=float, default=1.0, show_default=True, help="Leiden resolution.")
@click.option("--neighbors", "n_neighbors", type=click.IntRange(min=2), default=15, show_default=True,
              help="Neighbours of the kNN graph.")
@click.option("--channels", default=None,
              help="Comma-separated clustering channels (markers or channel names; default every marker channel).")
@click.option("--umap", is_flag=True, help="Also compute a UMAP (columns umap1/umap2; the figure uses it).")
def phenotype(strategy: str, fcs: tuple[str, ...], population: str, out_dir: Path, per_file: int,
              seed: int, resolution: float, n_neighbors: int, channels: str | None,
              umap: bool) -> None:
    """Cluster the events of one strategy population (scanpy kNN + Leiden) across FCS files and
    score the clusters against the population's children as FlowCAP-I did (per population the
    F1 of the best union of clusters, and of the best single cluster).

    Writes agreement.csv, clusters.parquet, agreement.png and phenotype.json to --out.
    """
    from engine._batch import InputError, resolve_inputs
    from engine._phenotype import PhenotypeError
    from engine._phenotype import phenotype as run_phenotype

    loaded = load_strategy_option(strategy)
    check_output_folder(out_dir)
    try:
        inputs = resolve_inputs(fcs)
    except InputError as exc:
        raise UsageProblem(str(exc)) from None
    wanted = tuple(c.strip() for c in channels.split(",") if c.strip()) if channels else None
    try:
        result = run_phenotype(loaded, inputs, population=population, out_dir=out_dir,
                               per_file=per_file, seed=seed, resolution=resolution,
                               n_neighbors=n_neighbors, channels=wanted, umap=umap)
    except PhenotypeError as exc:
        if debugging():
            raise
        raise UsageProblem(str(exc)) from None
    click.echo(f"{len(result.events)} events of {result.population} from {len(inputs)} files: "
               f"{result.n_clusters} clusters")
    for row in result.agreement.itertuples():
        click.echo(f"{row.population}: F1 {row.f1:.3f} (precision {row.precision:.3f}, recall "
                   f"{row.recall:.3f}; best single cluster {row.cluster}: F1 {row.f1_cluster:.3f})")
    click.echo(f"agreement.csv, clusters.parquet, agreement.png, phenotype.json -> {out_dir}")
