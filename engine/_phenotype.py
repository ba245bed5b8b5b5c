"""Unsupervised phenotyping of one gated population, scored against the strategy's children.

:func:`phenotype` takes the events of one population of a gating strategy (for example the CD3+
T cells) from many FCS files, subsamples them reproducibly, clusters them with scanpy (a kNN
graph on the population's transformed marker channels, then Leiden on igraph) and scores how
well the clusters recover the strategy's child populations, the way FlowCAP-I scored automated
gating: per population, the F1 of the best single cluster and of the best union of clusters.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.runtime import atomic_path, atomic_write_text, new_figure

__all__ = ["Phenotype", "PhenotypeError", "phenotype"]

log = logging.getLogger(__name__)

#: columns of :attr:`Phenotype.agreement`
AGREEMENT_COLUMNS = (
    "population", "parent", "n_events", "n_clusters", "cluster", "f1_cluster",
    "precision_cluster", "recall_cluster", "clusters", "f1", "precision", "recall",
)


class PhenotypeError(ValueError):
    """A usage mistake: an unknown population, channel or an impossible option."""


@dataclass(frozen=True)
class Phenotype:
    """The result of :func:`phenotype`.

    Attributes
    ----------
    agreement
        One row per child population (:data:`AGREEMENT_COLUMNS`): ``n_events`` of the
        population among the clustered events; ``cluster``/``f1_cluster``/
        ``precision_cluster``/``recall_cluster``: the single cluster with the highest F1;
        ``clusters`` (``;``-joined)/``f1``/``precision``/``recall``: the union of clusters
        with the highest F1 (see :func:`best_union`).
    events
        One row per clustered event: ``file``, ``event`` (its index in the file),
        ``cluster``, one boolean column per child population (its path), and ``umap1``/
        ``umap2`` when UMAP was run.
    population
        The clustered population (its path).
    children
        The child populations scored (their paths).
    channels
        The clustering channels (marker names where the file has them).
    n_clusters
        Leiden clusters found.
    params
        Parameters, seed, per-file counts, versions and timings (as in ``phenotype.json``).
    out_dir
        Where the outputs were written, or ``None``.
    """

    agreement: pd.DataFrame
    events: pd.DataFrame
    population: str
    children: tuple[str, ...]
    channels: tuple[str, ...]
    n_clusters: int
    params: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None


def best_union(tp: np.ndarray, sizes: np.ndarray, n_pop: int) -> tuple[np.ndarray, float]:
    """The clusters whose union has the highest F1 with a population of ``n_pop`` events.

    F1 of a union U is ``2 sum_U tp / (n_pop + sum_U size)``; the best union is a prefix of
    the clusters sorted by precision ``tp / size`` (descending), so every prefix is tried.

    Parameters
    ----------
    tp
        Events of the population in each cluster.
    sizes
        Events in each cluster.
    n_pop
        Events of the population.

    Returns
    -------
    (numpy.ndarray, float)
        Indices of the chosen clusters (by decreasing precision) and the union's F1 (0 when the
        population is empty).

    Examples
    --------
    >>> idx, f1 = best_union(np.array([50, 48, 2]), np.array([50, 50, 100]), 100)
    >>> idx.tolist(), round(f1, 3)
    ([0, 1], 0.98)
    """
    tp = np.asarray(tp, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    if n_pop == 0 or tp.sum() == 0:
        return np.array([], dtype=np.int64), 0.0
    order = np.argsort(-tp / np.maximum(sizes, 1.0), kind="stable")
    f1 = 2.0 * np.cumsum(tp[order]) / (n_pop + np.cumsum(sizes[order]))
    k = int(np.argmax(f1))
    return order[: k + 1].astype(np.int64), float(f1[k])


def score_clusters(clusters: np.ndarray, flags: pd.DataFrame, *, parent: str = "") -> pd.DataFrame:
    """FlowCAP-style agreement of ``clusters`` with each population column of ``flags``.

    Each population is scored on its own, so a cluster can count for two populations that
    overlap; the children of one parent usually do not.

    Parameters
    ----------
    clusters
        A cluster label per event.
    flags
        One boolean column per population, one row per event.
    parent
        Written into the ``parent`` column.

    Returns
    -------
    pandas.DataFrame
        :data:`AGREEMENT_COLUMNS`, one row per column of ``flags``.

    Examples
    --------
    >>> flags = pd.DataFrame({"A": [True, True, False, False]})
    >>> score_clusters(np.array(["0", "0", "1", "1"]), flags)[["cluster", "f1"]].values.tolist()
    [['0', 1.0]]
    """
    labels, codes = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    sizes = np.bincount(codes, minlength=labels.size)
    rows = []
    for name in flags.columns:
        member = flags[name].to_numpy(dtype=bool)
        n_pop = int(member.sum())
        tp = np.bincount(codes[member], minlength=labels.size).astype(np.float64)
        single = 2.0 * tp / np.maximum(n_pop + sizes, 1)
        best = int(np.argmax(single)) if labels.size else -1
        union, f1 = best_union(tp, sizes, n_pop)
        tp_u, size_u = tp[union].sum(), sizes[union].sum()
        rows.append({
            "population": name,
            "parent": parent,
            "n_events": n_pop,
            "n_clusters": int(labels.size),
            "cluster": str(labels[best]) if best >= 0 and tp[best] > 0 else "",
            "f1_cluster": float(single[best]) if best >= 0 else 0.0,
            "precision_cluster": float(tp[best] / sizes[best]) if best >= 0 and sizes[best] else 0.0,
            "recall_cluster": float(tp[best] / n_pop) if best >= 0 and n_pop else 0.0,
            "clusters": ";".join(labels[union].tolist()),
            "f1": f1,
            "precision": float(tp_u / size_u) if size_u else 0.0,
            "recall": float(tp_u / n_pop) if n_pop else 0.0,
        })
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def _norm(path: str) -> str:
    return "/" + str(path).strip().replace("|", "/").strip("/")


def find_population(populations: pd.DataFrame, wanted: str) -> str:
    """The id of ``wanted`` (a path such as ``/Lymphocytes/.../CD3+``, or a unique name)."""
    ids = [str(i) for i in populations["id"]]
    key = _norm(wanted)
    if key in ids:
        return key
    tails = [i for i in ids if i.endswith(key)]
    if len(tails) == 1:
        return tails[0]
    if len(tails) > 1:
        raise PhenotypeError(f"--population {wanted!r} is ambiguous: {', '.join(tails)}; "
                             "give the full path")
    raise PhenotypeError(f"--population {wanted!r}: the strategy has no such population; "
                         f"populations: {', '.join(ids)}")


def _versions() -> dict[str, str]:
    found = {}
    for dist in ("phenoflow", "scanpy", "anndata", "igraph", "numpy", "pandas", "scikit-learn"):
        try:
            found[dist] = _dist_version(dist)
        except PackageNotFoundError:
            found[dist] = "not installed"
    return found


def _file_seed(seed: int, name: str) -> np.random.Generator:
    """One generator per file from the seed and the file name (independent of file order)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def phenotype(
    strategy: Any,
    files: Sequence[Any],
    *,
    population: str,
    out_dir: str | Path | None = None,
    per_file: int | None = 5000,
    seed: int = 0,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    channels: Sequence[str] | None = None,
    umap: bool = False,
) -> Phenotype:
    """Cluster the events of one strategy population and score the clusters against its children.

    Per file the population's events are gated with the strategy and ``per_file`` of them are
    drawn without replacement (all when fewer), by a generator seeded with ``seed`` and the
    file name, and the files are clustered in name order: the same seed gives the same events
    and the same clusters whatever the file order. The events of all
    files form one AnnData on the population's transformed marker channels (by default every
    fluorescence channel of the strategy that has a marker name; scatter is left out);
    ``sc.pp.neighbors`` (exact kNN, ``transformer="sklearn"``) and
    ``sc.tl.leiden(flavor="igraph")`` cluster them, with ``random_state=seed``.

    Agreement follows FlowCAP-I: each child population is matched to the union of clusters that
    maximises its F1 (``f1``, ``precision``, ``recall``, ``clusters``; the best union is found
    exactly, as a prefix of the clusters sorted by precision), and the best single cluster is
    reported beside it (``f1_cluster``...). Populations are scored independently.

    Parameters
    ----------
    strategy
        A :class:`gating.Strategy`, a strategy file or a preset name.
    files
        FCS files (paths, or :class:`engine.InputFile` from :func:`engine.resolve_inputs`).
    population
        The parent population: its path (``/Lymphocytes/Singlets/Live/CD3+``) or a unique
        ending of it (``CD3+``).
    out_dir
        Write ``agreement.csv``, ``clusters.parquet``, ``agreement.png`` and
        ``phenotype.json`` here (atomically); ``None`` writes nothing.
    per_file
        Events drawn per file (``None``: all).
    seed
        Seed of the subsampling, the kNN graph, Leiden and UMAP.
    resolution
        Leiden resolution (higher: more clusters).
    n_neighbors
        kNN graph neighbours.
    channels
        Clustering channels (marker names or channel names); default all marker channels.
    umap
        Also compute a UMAP embedding (``umap1``, ``umap2``; used in the figure).

    Returns
    -------
    Phenotype
        Agreement table, per-event clusters and the parameters.

    Raises
    ------
    PhenotypeError
        An unknown population, a population without children, an unknown channel, no files
        or no events to cluster.

    Examples
    --------
    >>> from engine.demo import make_demo_study  # doctest: +SKIP
    >>> study = make_demo_study("demo", n_events=2000, n_genes=100)  # doctest: +SKIP
    >>> result = phenotype("study_panel", study.fcs, population="CD3+", per_file=1000)  # doctest: +SKIP
    >>> result.agreement[["population", "f1"]]  # doctest: +SKIP
    """
    import anndata as ad
    import scanpy as sc

    import gating

    if per_file is not None and per_file < 1:
        raise PhenotypeError(f"--per-file must be at least 1, got {per_file}")
    if resolution <= 0:
        raise PhenotypeError(f"--resolution must be positive, got {resolution}")
    # files in name order, so the clustered matrix (and the clusters) do not depend on the
    # order the files were given in
    paths = sorted((Path(getattr(item, "path", item)) for item in files),
                   key=lambda p: (p.name, str(p)))
    if not paths:
        raise PhenotypeError("no FCS files given")
    if isinstance(strategy, str | Path):
        strategy = gating.load_strategy(strategy)
    started = time.perf_counter()
    pop_id = ""
    children: list[str] = []
    blocks: list[np.ndarray] = []
    frames: list[pd.DataFrame] = []
    per_file_rows: list[dict[str, Any]] = []
    chosen: list[str] = []
    var_names: list[str] = []
    strategy_info: dict[str, Any] = {}
    for path in paths:
        data = gating.read_fcs(path)
        plan = gating.compile_plan(strategy, data)
        result = gating.apply_plan(plan, data, membership=True)
        adata = gating.to_anndata(result, data)
        pops = adata.uns["populations"]
        if not pop_id:
            pop_id = find_population(pops, population)
            children = [str(i) for i, p in zip(pops["id"], pops["parent"], strict=True)
                        if _norm(str(p)) == pop_id]
            if not children:
                raise PhenotypeError(f"--population {pop_id} has no child populations to score "
                                     "the clusters against; choose a parent population")
            chosen, var_names = _channels(adata.var, channels)
            strategy_info = {k: str(v) for k, v in dict(adata.uns.get("phenoflow", {})).items()
                             if k != "sample"}
        obs_of = dict(zip(pops["id"].astype(str), pops["obs"].astype(str), strict=True))
        missing = [v for v in var_names if v not in adata.var_names]
        if pop_id not in obs_of or missing:
            raise PhenotypeError(f"{path}: its channels or populations differ from the first "
                                 f"file's (missing {', '.join(missing) or pop_id})")
        inside = np.flatnonzero(adata.obs[obs_of[pop_id]].to_numpy(dtype=bool))
        take = inside
        if per_file is not None and inside.size > per_file:
            take = np.sort(_file_seed(seed, path.name).choice(inside, size=per_file, replace=False))
        values = np.asarray(adata[take, var_names].layers["transformed"], dtype=np.float64)
        blocks.append(values)
        frame = pd.DataFrame({"file": path.name, "event": adata.obs_names[take].astype(np.int64)})
        for child in children:
            frame[child] = adata.obs[obs_of[child]].to_numpy(dtype=bool)[take]
        frames.append(frame)
        per_file_rows.append({"file": path.name, "events": int(adata.n_obs),
                              "in_population": int(inside.size), "drawn": int(take.size)})
        log.info("%s: %d of %d events in %s, %d drawn", path.name, inside.size, adata.n_obs,
                 pop_id, take.size)
    events = pd.concat(frames, ignore_index=True)
    matrix = np.vstack(blocks)
    if matrix.shape[0] < max(3, n_neighbors + 1):
        raise PhenotypeError(f"only {matrix.shape[0]} events of {pop_id} in {len(paths)} files; "
                             "too few to cluster")
    if not np.isfinite(matrix).all():
        raise PhenotypeError("the clustering channels hold non-finite values; choose --channels")
    gated_s = time.perf_counter() - started

    cells = ad.AnnData(
        X=matrix.astype(np.float32),
        obs=pd.DataFrame(index=pd.Index([f"{f}#{e}" for f, e in zip(events["file"], events["event"],
                                                                      strict=True)])),
        var=pd.DataFrame(index=pd.Index(chosen)),
    )
    sc.pp.neighbors(cells, n_neighbors=n_neighbors, use_rep="X", random_state=seed,
                    transformer="sklearn")
    sc.tl.leiden(cells, resolution=resolution, flavor="igraph", n_iterations=-1, directed=False,
                 random_state=seed)
    events["cluster"] = cells.obs["leiden"].astype(str).to_numpy()
    if umap:
        sc.tl.umap(cells, random_state=seed)
        events["umap1"] = cells.obsm["X_umap"][:, 0]
        events["umap2"] = cells.obsm["X_umap"][:, 1]
    clustered_s = time.perf_counter() - started - gated_s
    events = events[["file", "event", "cluster", *children,
                     *(["umap1", "umap2"] if umap else [])]]
    agreement = score_clusters(events["cluster"].to_numpy(), events[children], parent=pop_id)
    n_clusters = int(events["cluster"].nunique())
    params: dict[str, Any] = {
        "population": pop_id,
        "children": children,
        "channels": chosen,
        "per_file": per_file,
        "seed": seed,
        "resolution": resolution,
        "n_neighbors": n_neighbors,
        "umap": umap,
        "method": {
            "neighbors": "scanpy.pp.neighbors(transformer='sklearn', exact kNN, use_rep='X')",
            "clustering": "scanpy.tl.leiden(flavor='igraph', n_iterations=-1, directed=False)",
            "agreement": "FlowCAP-I: per population the union of clusters maximising F1 "
                         "(f1, precision, recall, clusters) and the best single cluster "
                         "(f1_cluster, ...); populations scored independently",
            "values": "transformed (compensated, then the strategy's transform)",
        },
        "strategy": strategy_info,
        "files": per_file_rows,
        "n_events": len(events),
        "n_clusters": n_clusters,
        "versions": _versions(),
        "seconds": {"gating": round(gated_s, 3), "clustering": round(clustered_s, 3)},
    }
    out = Path(out_dir) if out_dir is not None else None
    pheno = Phenotype(agreement=agreement, events=events, population=pop_id,
                      children=tuple(children), channels=tuple(chosen), n_clusters=n_clusters,
                      params=params, out_dir=out)
    if out is not None:
        _write(pheno, cells, out)
    return pheno


def _channels(var: pd.DataFrame, wanted: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(display names, var names) of the clustering channels."""
    names = {str(v): (str(m) if str(m) else str(c))
             for v, m, c in zip(var.index, var["marker"], var["channel"], strict=True)}
    if wanted is None:
        picked = [v for v, m in zip(var.index, var["marker"], strict=True)
                  if str(m).strip() and str(var.loc[v, "compensation"]) != "uncompensated"]
        if not picked:
            raise PhenotypeError("the files have no marker channels; name them with --channels")
        return [names[v] for v in picked], [str(v) for v in picked]
    lookup: dict[str, str] = {}
    for v, row in var.iterrows():
        for key in (v, row["channel"], row["pnn"], row["marker"]):
            if str(key).strip():
                lookup.setdefault(str(key), str(v))
    unknown = [w for w in wanted if w not in lookup]
    if unknown:
        raise PhenotypeError(f"--channels: no such channel {', '.join(map(repr, unknown))}; "
                             f"channels: {', '.join(names.values())}")
    picked = list(dict.fromkeys(lookup[w] for w in wanted))
    return [names[v] for v in picked], picked


def _write(result: Phenotype, cells: Any, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "agreement.csv") as tmp:
        result.agreement.to_csv(tmp, index=False)
    with atomic_path(out / "clusters.parquet") as tmp:
        result.events.to_parquet(tmp, index=False)
    with atomic_path(out / "agreement.png") as tmp:
        plot_phenotype(result, np.asarray(cells.X)).savefig(tmp, format="png")
    atomic_write_text(out / "phenotype.json", json.dumps(result.params, indent=2) + "\n")
    log.info("phenotype of %s written to %s", result.population, out)


def plot_phenotype(result: Phenotype, values: np.ndarray | None = None) -> Any:
    """F1 per child population, and the events coloured by cluster and by population.

    The scatter is the UMAP when it was computed, else the two clustering channels with the
    largest variance (``values``: the clustered events x :attr:`Phenotype.channels`).

    Parameters
    ----------
    result
        From :func:`phenotype`.
    values
        The clustering matrix, for the marker scatter when there is no UMAP.

    Returns
    -------
    matplotlib.figure.Figure
        On the Agg canvas (:func:`engine.runtime.new_figure`).

    Examples
    --------
    >>> fig = plot_phenotype(result)  # doctest: +SKIP
    """
    fig = new_figure(figsize=(15.0, 4.8))
    ax_f1, ax_cl, ax_pop = fig.subplots(1, 3)
    table = result.agreement
    names = [p.rsplit("/", 1)[-1] for p in table["population"]]
    y = np.arange(len(table))
    ax_f1.barh(y - 0.2, table["f1"], height=0.4, label="best union of clusters", color="#3b6ea8")
    ax_f1.barh(y + 0.2, table["f1_cluster"], height=0.4, label="best single cluster",
               color="#a8c6e8")
    for i, f1 in enumerate(table["f1"]):
        ax_f1.text(min(f1, 1.0) + 0.01, i - 0.2, f"{f1:.3f}", va="center", fontsize=8)
    ax_f1.set_yticks(y, names)
    ax_f1.set_ylim(len(table) - 0.5, -0.5)
    ax_f1.set_xlim(0.0, 1.15)
    ax_f1.set_xlabel("F1 with the gated population")
    ax_f1.set_title(f"Clusters vs children of {result.population.rsplit('/', 1)[-1]}")
    ax_f1.legend(loc="lower right", fontsize=7, frameon=False)

    ev = result.events
    if "umap1" in ev:
        xy, labels = ev[["umap1", "umap2"]].to_numpy(), ("UMAP 1", "UMAP 2")
    elif values is not None and values.shape[1] >= 2:
        top = np.argsort(-np.var(values, axis=0), kind="stable")[:2]
        xy, labels = values[:, top], tuple(result.channels[i] for i in top)
    else:
        xy, labels = np.column_stack([np.arange(len(ev)), np.zeros(len(ev))]), ("event", "")
    codes, uniques = pd.factorize(ev["cluster"], sort=True)
    cmap = _colormap("tab20")
    ax_cl.scatter(xy[:, 0], xy[:, 1], c=cmap(codes % 20), s=2, linewidths=0, rasterized=True)
    for k, label in enumerate(uniques):
        centre = np.median(xy[codes == k], axis=0)
        ax_cl.text(centre[0], centre[1], str(label), fontsize=7, ha="center", va="center")
    ax_cl.set_title(f"Leiden clusters ({result.n_clusters})")
    pop_code = np.full(len(ev), -1)
    for i, child in enumerate(result.children):
        pop_code[ev[child].to_numpy(dtype=bool) & (pop_code < 0)] = i
    palette = _colormap("tab10")
    ax_pop.scatter(xy[pop_code < 0, 0], xy[pop_code < 0, 1], c="#cccccc", s=2, linewidths=0,
                   rasterized=True, label="none")
    for i, child in enumerate(result.children):
        sel = pop_code == i
        ax_pop.scatter(xy[sel, 0], xy[sel, 1], color=palette(i % 10), s=2, linewidths=0,
                       rasterized=True, label=child.rsplit("/", 1)[-1])
    ax_pop.legend(loc="best", fontsize=7, markerscale=4, frameon=False)
    ax_pop.set_title("Gated child populations")
    for ax in (ax_cl, ax_pop):
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    return fig


def _colormap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name]
