"""Event-level export: a gated sample's events x channels with one boolean column per population.

Three views of every channel a plan's gates use (one *event channel* per plan axis):

- ``raw``: the sample's preprocessed channel value (:attr:`gating.FCSData.events`), NaN for a
  ratio axis or a fluorochrome that is not a channel of the file;
- ``compensated``: the value the gate sees before its transform (compensated as the gate
  says, ratio'd for a ratio axis), computed exactly as the gating kernels do;
- ``transformed``: the gate's transform of it (the compensated value when there is none).

A channel used with two compensations or transforms is two event channels, labelled
``<channel> [<compensation>, <transform>]``; otherwise the label is the ``$PnN`` name.
Population columns are named by population id (the ids of ``membership``), and the
populations table (id, path, parent, count) travels with the data.

Everything is produced chunk by chunk (:func:`iter_events`), so :func:`write_events` keeps
memory bounded on big files: Parquet one row group per chunk, h5ad through h5py datasets
written a chunk at a time in anndata's on-disk format.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from engine.runtime import atomic_path
from gating._interop._samples import as_sample
from gating._plan import Channel, Feature, Plan

__all__ = [
    "EVENT_LAYERS",
    "STAT_NAMES",
    "EventChannel",
    "event_channels",
    "iter_events",
    "obs_column",
    "stat_channels",
    "to_anndata",
    "to_dataframe",
    "write_events",
]

#: The per-channel views, in column order (``raw`` is AnnData's ``X``).
EVENT_LAYERS = ("raw", "compensated", "transformed")

#: Events per chunk of the export (about 2 MiB per exported channel and view).
CHUNK_EVENTS = 1 << 18


@dataclasses.dataclass(frozen=True)
class EventChannel:
    """One exported axis of a plan.

    Attributes
    ----------
    label
        Column / ``var_names`` label.
    channel
        The strategy's name for it (``$PnN``, marker, fluorochrome or ratio id).
    pnn
        The sample's ``$PnN`` for the raw value, or ``""`` (ratio, fluorochrome).
    marker
        The channel's marker (``$PnS``), or ``""``.
    compensation
        ``FCS``, ``uncompensated`` or a matrix id.
    transform
        Transform id, or ``""``.
    feature
        The plan feature computed.
    column
        Sample column of the raw value, or ``None``.
    """

    label: str
    channel: str
    pnn: str
    marker: str
    compensation: str
    transform: str
    feature: Feature
    column: int | None


def event_channels(plan: Plan, sample: Any) -> list[EventChannel]:
    """The exported axes of ``plan`` on ``sample``, in plan order.

    Parameters
    ----------
    plan
        A compiled plan.
    sample
        The sample it was compiled for.

    Returns
    -------
    list of EventChannel
        One per plan axis (feature).

    Examples
    --------
    >>> import pandas as pd
    >>> from gating import Dimension, RectangleGate, Strategy, compile_plan
    >>> events = pd.DataFrame({"A": [0.0, 1.0]})
    >>> s = Strategy(gates=(RectangleGate("R", (Dimension("A"),), ((0.5, None),)),))
    >>> [c.label for c in event_channels(compile_plan(s, events), events)]
    ['A']
    """
    sample = as_sample(sample)
    mapped = {name: pnn for name, pnn, _ in plan.channel_map}
    found = []
    for f in plan.features:
        name, comp, transform, kind = f.key.rsplit("|", 3)
        column: int | None = None
        if kind != "ratio":
            try:
                column = sample.channel_index(mapped.get(name, name))
            except KeyError:  # a fluorochrome of a matrix, not a channel of the file
                column = None
        pnn = str(sample.names[column]) if column is not None else ""
        marker = str(sample.channels["marker"].iloc[column] or "") if column is not None else ""
        found.append((pnn or name, name, comp, "" if transform == "None" else transform, f,
                      column, pnn, marker))
    base = [item[0] for item in found]
    out = []
    for label, name, comp, transform, f, column, pnn, marker in found:
        if base.count(label) > 1:
            label = f"{label} [{comp}, {transform or 'none'}]"
        out.append(EventChannel(label=label, channel=name, pnn=pnn, marker=marker,
                                compensation=comp, transform=transform, feature=f, column=column))
    return out


#: The per-channel statistics of ``apply_plan(stats=...)``, as FlowJo's table editor names
#: them, and what each is here (on the population's compensated channel values, exactly, where
#: FlowJo computes most statistics on binned display values, so FlowJo may differ in the last
#: digits):
#:
#: - ``Median``: the 50th percentile (mean of the two middle values for an even count);
#: - ``Mean``: the arithmetic mean;
#: - ``Geometric Mean``: ``exp(mean(log x))`` over the population's **positive** values only
#:   (NaN when it has none);
#: - ``CV``: ``100 * SD / Mean`` with the sample standard deviation (``n - 1``), in percent;
#: - ``Robust SD``: ``0.5 * (P84.13 - P15.87)``, percentiles by linear interpolation (the
#:   spread of the middle 68.26% around the median, as FlowJo defines it).
#:
#: Frequencies are percentages: ``Freq. of Parent`` = count / parent's count, ``Freq. of
#: Grandparent`` = count / parent's parent's count (all events when the parent is a top-level
#: gate; NaN for a top-level gate, which has no grandparent), ``Freq. of Total`` = count /
#: events in the sample. An empty denominator or population gives NaN.
STAT_NAMES = ("Median", "Mean", "Geometric Mean", "CV", "Robust SD")


def stat_channels(plan: Plan, sample: Any) -> list[str]:
    """The sample's channels (``$PnN``) that the plan's gates use, in plan order (ratio and
    fluorochrome axes that are not channels are left out).

    Parameters
    ----------
    plan
        A compiled plan.
    sample
        The sample it was compiled for.

    Returns
    -------
    list of str
        ``$PnN`` names.

    Examples
    --------
    >>> import pandas as pd
    >>> from gating import Dimension, RectangleGate, Strategy, compile_plan
    >>> events = pd.DataFrame({"A": [0.0, 1.0], "B": [1.0, 2.0]})
    >>> s = Strategy(gates=(RectangleGate("R", (Dimension("B"),), ((0.5, None),)),))
    >>> stat_channels(compile_plan(s, events), events)
    ['B']
    """
    out: list[str] = []
    for c in event_channels(plan, sample):
        if c.pnn and c.pnn not in out:
            out.append(c.pnn)
    return out


def _sample_of(result: Any, sample: Any) -> Any:
    data = sample if sample is not None else getattr(result, "data", None)
    if data is None or getattr(result, "plan", None) is None:
        raise ValueError("the result holds no plan and sample: pass a result of gating.apply_plan")
    return data


def _channel(x: np.ndarray, colmap: dict[int, int], ch: Channel, lo: int, hi: int) -> np.ndarray:
    """``sum_t coef_t * x[:, col_t]`` over events ``lo..hi``, summed in the kernels' order."""
    coefs = (1.0,) * len(ch.columns) if ch.coefficients is None else ch.coefficients
    acc = np.zeros(hi - lo, dtype=np.float64)
    for col, w in zip(ch.columns, coefs, strict=True):
        acc += np.asarray(x[lo:hi, colmap[col]], dtype=np.float64) * w
    return acc


def _untransformed(x: np.ndarray, colmap: dict[int, int], f: Feature, lo: int, hi: int
                   ) -> np.ndarray:
    values = _channel(x, colmap, f.numerator, lo, hi)
    if f.denominator is not None:
        a, b, c = f.ratio
        den = _channel(x, colmap, f.denominator, lo, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = a * (values - b) / (den - c)
        low, high = f.ratio_bounds
        if low is not None:
            np.maximum(values, low, out=values)
        if high is not None:
            np.minimum(values, high, out=values)
    return values


def iter_events(
    result: Any, *, sample: Any = None, evaluator: Any = None, chunk_events: int = CHUNK_EVENTS,
) -> Iterator[tuple[int, int, dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """The exported events of a gating result, chunk by chunk.

    Parameters
    ----------
    result
        From :func:`gating.apply_plan` (it holds the plan and the sample).
    sample
        The sample, when the result's own should not be used (same channel layout).
    evaluator
        ``evaluate_plan`` of the result's plan and sample, to read populations from; default
        the result's ``membership`` if it was kept, else the sample gated again.
    chunk_events
        Events per chunk.

    Yields
    ------
    tuple
        ``(lo, hi, layers, populations)``: events ``lo..hi-1``, ``{layer: (hi-lo) x channels
        float64}`` for :data:`EVENT_LAYERS`, ``{population id: bool array}``.
    """
    data = _sample_of(result, sample)
    plan: Plan = result.plan
    channels = event_channels(plan, data)
    members = result.membership if sample is None else None
    ev = evaluator
    if members is None and ev is None:
        ev = result.evaluate()
    wanted = sorted({*plan.columns, *(c.column for c in channels if c.column is not None)})
    x, colmap = data.event_matrix(wanted)
    ids = [g.population for g in plan.gates]
    step = max(1, int(chunk_events))
    for base_lo, base_hi in data.chunk_ranges():
        for lo in range(base_lo, base_hi, step):
            hi = min(lo + step, base_hi)
            comp = np.empty((hi - lo, len(channels)), dtype=np.float64)
            raw = np.full((hi - lo, len(channels)), np.nan, dtype=np.float64)
            trans = np.empty_like(comp)
            for j, ch in enumerate(channels):
                comp[:, j] = _untransformed(x, colmap, ch.feature, lo, hi)
                if ch.column is not None:
                    raw[:, j] = x[lo:hi, colmap[ch.column]]
                t = ch.feature.transform
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    trans[:, j] = t.apply(comp[:, j]) if t is not None else comp[:, j]
            pops: dict[str, np.ndarray] = {}
            for pid in ids:
                if members is not None:
                    pops[pid] = np.asarray(members[pid].to_numpy()[lo:hi], dtype=bool)
                    continue
                rows = ev.rows(pid)
                mask = np.zeros(hi - lo, dtype=bool)
                if rows is None:
                    mask[:] = True
                else:
                    a, b = (int(i) for i in np.searchsorted(rows, (lo, hi)))
                    mask[rows[a:b] - lo] = True
                pops[pid] = mask
            yield lo, hi, {"raw": raw, "compensated": comp, "transformed": trans}, pops
    if data.n_events == 0:
        empty = np.empty((0, len(channels)), dtype=np.float64)
        yield 0, 0, {k: empty for k in EVENT_LAYERS}, {pid: np.zeros(0, bool) for pid in ids}


def _column_names(channels: list[EventChannel], ids: list[str]) -> list[str]:
    names = ["event"] + [f"{c.label} | {layer}" for c in channels for layer in EVENT_LAYERS] + ids
    seen: set[str] = set()
    clash = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if clash:
        raise ValueError(f"population ids clash with event column names: {clash}")
    return names


def _frame(lo: int, hi: int, channels: list[EventChannel], layers: dict[str, np.ndarray],
           pops: dict[str, np.ndarray]) -> pd.DataFrame:
    cols: dict[str, Any] = {"event": np.arange(lo, hi, dtype=np.int64)}
    for j, c in enumerate(channels):
        for layer in EVENT_LAYERS:
            cols[f"{c.label} | {layer}"] = layers[layer][:, j]
    cols.update(pops)
    return pd.DataFrame(cols, copy=False)


def _populations(result: Any) -> pd.DataFrame:
    counts = result.counts
    return pd.DataFrame({
        "id": counts["id"].astype(str).to_numpy(),
        "obs": [obs_column(str(i)) for i in counts["id"]],
        "population": counts["population"].astype(str).to_numpy(),
        "parent": counts["parent"].fillna("").astype(str).to_numpy(),
        "count": counts["count"].astype(np.int64).to_numpy(),
    })


def _var(channels: list[EventChannel]) -> pd.DataFrame:
    return pd.DataFrame(
        {"channel": [c.channel for c in channels], "pnn": [c.pnn for c in channels],
         "marker": [c.marker for c in channels], "compensation": [c.compensation for c in channels],
         "transform": [c.transform for c in channels]},
        index=pd.Index([c.label for c in channels]),
    )


def _meta(result: Any, data: Any) -> dict[str, str]:
    return {"sample": str(result.sample), "strategy_name": str(result.plan.strategy_name),
            "strategy_hash": str(result.plan.strategy_hash), "n_events": str(data.n_events),
            "layers": "X=raw, compensated, transformed"}


def to_dataframe(result: Any, *, sample: Any = None, evaluator: Any = None) -> pd.DataFrame:
    """A gated sample's events as one DataFrame.

    Columns: ``event`` (the event's index in the sample), then per exported channel
    (:func:`event_channels`) ``<label> | raw``, ``<label> | compensated``, ``<label> |
    transformed``, then one boolean column per population id. ``attrs["populations"]`` holds
    the populations (records of id, path, parent, count), ``attrs["phenoflow"]`` the sample
    and strategy.

    Parameters
    ----------
    result
        From :func:`gating.apply_plan`.
    sample
        The sample, if not the result's own.
    evaluator
        See :func:`iter_events`.

    Returns
    -------
    pandas.DataFrame
        Events x columns, in memory (for a big file use :func:`write_events`).

    Examples
    --------
    >>> import pandas as pd
    >>> from gating import Dimension, RectangleGate, Strategy, apply_plan, compile_plan
    >>> events = pd.DataFrame({"A": [0.0, 1.0]})
    >>> s = Strategy(gates=(RectangleGate("R", (Dimension("A"),), ((0.5, None),)),))
    >>> df = to_dataframe(apply_plan(compile_plan(s, events), events))
    >>> list(df.columns), df["R"].tolist()
    (['event', 'A | raw', 'A | compensated', 'A | transformed', 'R'], [False, True])
    """
    data = _sample_of(result, sample)
    channels = event_channels(result.plan, data)
    ids = [g.population for g in result.plan.gates]
    names = _column_names(channels, ids)
    frames = [_frame(lo, hi, channels, layers, pops)
              for lo, hi, layers, pops in iter_events(result, sample=sample, evaluator=evaluator)]
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    out = out[names]
    out.attrs["populations"] = _populations(result).to_dict("records")
    out.attrs["phenoflow"] = _meta(result, data)
    return out


def obs_column(population: str) -> str:
    """The AnnData ``obs`` column of a population id: the id without a leading ``/`` and with
    ``/`` written ``|`` (HDF5 reads ``/`` in a name as a group path), e.g.
    ``Lymphocytes|Singlets`` for ``/Lymphocytes/Singlets``; Gating-ML ids are unchanged.

    Parameters
    ----------
    population
        A population id.

    Returns
    -------
    str
        The column name.

    Examples
    --------
    >>> obs_column("/Lymphocytes/Singlets"), obs_column("CD3pos")
    ('Lymphocytes|Singlets', 'CD3pos')
    """
    return population.lstrip("/").replace("/", "|")


def _obs_columns(ids: list[str]) -> list[str]:
    cols = [obs_column(i) for i in ids]
    if len(set(cols)) != len(cols) or "_index" in cols:
        raise ValueError(f"population ids that give the same AnnData obs column: {ids}")
    return cols


def _obs_index(lo: int, hi: int) -> np.ndarray:
    return np.arange(lo, hi).astype(str).astype(object)


def to_anndata(result: Any, sample: Any = None, *, evaluator: Any = None) -> Any:
    """A gated sample's events as an AnnData (for scanpy).

    - ``X``: the raw channel values (events x exported channels, float64; NaN for ratio
      axes); ``layers["compensated"]`` and ``layers["transformed"]`` the other views
      (:data:`EVENT_LAYERS`);
    - ``obs``: one boolean column per population, named :func:`obs_column` of its id
      (``obs_names`` are the event indices);
    - ``var``: ``channel``, ``pnn``, ``marker``, ``compensation``, ``transform``;
    - ``uns["populations"]``: id, obs (its column), population (path), parent, count; ``uns["phenoflow"]``: sample,
      strategy name and hash; ``uns["spill"]``: the sample's spillover matrix, if any (so
      :func:`gating.as_sample` on this AnnData gates the same events again).

    Parameters
    ----------
    result
        From :func:`gating.apply_plan`.
    sample
        The sample, if not the result's own.
    evaluator
        See :func:`iter_events`.

    Returns
    -------
    anndata.AnnData
        In memory (for a big file use :func:`write_events` with ``.h5ad``).

    Examples
    --------
    >>> import pandas as pd
    >>> from gating import Dimension, RectangleGate, Strategy, apply_plan, compile_plan
    >>> events = pd.DataFrame({"A": [0.0, 1.0]})
    >>> s = Strategy(gates=(RectangleGate("R", (Dimension("A"),), ((0.5, None),)),))
    >>> a = to_anndata(apply_plan(compile_plan(s, events), events))
    >>> a.shape, a.obs["R"].tolist(), list(a.layers)
    ((2, 1), [False, True], ['compensated', 'transformed'])
    """
    import anndata

    data = _sample_of(result, sample)
    channels = event_channels(result.plan, data)
    ids = [g.population for g in result.plan.gates]
    _column_names(channels, ids)
    parts = list(iter_events(result, sample=sample, evaluator=evaluator))
    layers = {k: np.concatenate([p[2][k] for p in parts]) for k in EVENT_LAYERS}
    obs = pd.DataFrame({col: np.concatenate([p[3][pid] for p in parts])
                        for pid, col in zip(ids, _obs_columns(ids), strict=True)},
                       index=pd.Index(_obs_index(0, data.n_events)))
    uns: dict[str, Any] = {"populations": _populations(result), "phenoflow": _meta(result, data)}
    if data.spill is not None:
        uns["spill"] = data.spill
    return anndata.AnnData(X=layers["raw"], obs=obs, var=_var(channels),
                           layers={"compensated": layers["compensated"],
                                   "transformed": layers["transformed"]}, uns=uns)


def write_events(
    result: Any, path: str | os.PathLike[str], *, format: Literal["parquet", "h5ad"] | None = None,
    sample: Any = None, evaluator: Any = None, chunk_events: int = CHUNK_EVENTS,
) -> Path:
    """Write a gated sample's events, chunk by chunk, atomically.

    Parquet: the columns of :func:`to_dataframe`, one row group per chunk, the populations
    table and run facts as JSON in the schema metadata (key ``phenoflow``). h5ad: the AnnData
    of :func:`to_anndata`, written a chunk at a time through h5py in anndata's on-disk
    format (readable by ``anndata.read_h5ad``, also backed). Memory: a few chunks of the
    exported columns, whatever the number of events.

    Parameters
    ----------
    result
        From :func:`gating.apply_plan`.
    path
        Output file (replaced atomically).
    format
        ``"parquet"`` or ``"h5ad"``; default from the suffix.
    sample, evaluator
        See :func:`iter_events`.
    chunk_events
        Events per chunk (Parquet row group).

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> from gating import Dimension, RectangleGate, Strategy, apply_plan, compile_plan
    >>> events = pd.DataFrame({"A": [0.0, 1.0]})
    >>> s = Strategy(gates=(RectangleGate("R", (Dimension("A"),), ((0.5, None),)),))
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "events.parquet"
    >>> write_events(apply_plan(compile_plan(s, events), events), out).name
    'events.parquet'
    """
    p = Path(path)
    fmt = format or {".parquet": "parquet", ".h5ad": "h5ad"}.get(p.suffix.lower())
    if fmt not in ("parquet", "h5ad"):
        raise ValueError(f"{p}: give format='parquet' or 'h5ad' (or a .parquet/.h5ad name)")
    data = _sample_of(result, sample)
    channels = event_channels(result.plan, data)
    ids = [g.population for g in result.plan.gates]
    names = _column_names(channels, ids)
    chunks = iter_events(result, sample=sample, evaluator=evaluator, chunk_events=chunk_events)
    if fmt == "parquet":
        _write_parquet(p, result, data, channels, names, chunks)
    else:
        _write_h5ad(p, result, data, channels, ids, chunks)
    return p


def _write_parquet(path: Path, result: Any, data: Any, channels: list[EventChannel],
                   names: list[str], chunks: Iterator[Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {**_meta(result, data), "populations": _populations(result).to_dict("records"),
            "channels": _var(channels).reset_index(names="label").to_dict("records")}
    fields = [pa.field("event", pa.int64())]
    fields += [pa.field(n, pa.float64()) for n in names[1:1 + len(channels) * len(EVENT_LAYERS)]]
    fields += [pa.field(n, pa.bool_()) for n in names[1 + len(channels) * len(EVENT_LAYERS):]]
    schema = pa.schema(fields, metadata={b"phenoflow": json.dumps(meta, default=str).encode()})
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for lo, hi, layers, pops in chunks:  # arrays straight to Arrow: no pandas copies
            arrays = [pa.array(np.arange(lo, hi, dtype=np.int64))]
            arrays += [pa.array(np.ascontiguousarray(layers[layer][:, j]))
                       for j in range(len(channels)) for layer in EVENT_LAYERS]
            arrays += [pa.array(pops[pid]) for pid in names[1 + len(channels) * len(EVENT_LAYERS):]]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            del arrays


def _write_h5ad(path: Path, result: Any, data: Any, channels: list[EventChannel],
                ids: list[str], chunks: Iterator[Any]) -> None:
    import h5py
    from anndata.io import write_elem

    n, k = data.n_events, len(channels)
    array = {"encoding-type": "array", "encoding-version": "0.2.0"}
    uns: dict[str, Any] = {"populations": _populations(result), "phenoflow": _meta(result, data)}
    if data.spill is not None:
        uns["spill"] = data.spill
    with atomic_path(path, suffix=".h5ad") as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        rows = max(1, min(n, CHUNK_EVENTS))
        opts: dict[str, Any] = {"chunks": (rows, max(k, 1))} if n and k else {}
        x = f.create_dataset("X", shape=(n, k), dtype="f8", **opts)
        layers = f.create_group("layers")
        layers.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        views = {"raw": x}
        for name in EVENT_LAYERS[1:]:
            views[name] = layers.create_dataset(name, shape=(n, k), dtype="f8", **opts)
        for d in views.values():
            d.attrs.update(array)
        obs = f.create_group("obs")
        obs.attrs.update({"encoding-type": "dataframe", "encoding-version": "0.2.0",
                          "_index": "_index"})
        cols = _obs_columns(ids)
        obs.attrs.create("column-order", np.array(cols, dtype=object), dtype=h5py.string_dtype())
        index = obs.create_dataset("_index", shape=(n,), dtype=h5py.string_dtype(),
                                   **({"chunks": (rows,)} if n else {}))
        index.attrs.update({"encoding-type": "string-array", "encoding-version": "0.2.0"})
        flags = {pid: obs.create_dataset(col, shape=(n,), dtype=bool,
                                         **({"chunks": (rows,)} if n else {}))
                 for pid, col in zip(ids, cols, strict=True)}
        for d in flags.values():
            d.attrs.update(array)
        for lo, hi, values, pops in chunks:
            if hi == lo:
                continue
            for name, d in views.items():
                d[lo:hi] = values[name]
            index[lo:hi] = _obs_index(lo, hi)
            for pid, d in flags.items():
                d[lo:hi] = pops[pid]
        write_elem(f, "var", _var(channels))
        write_elem(f, "uns", uns)
        for empty in ("obsm", "varm", "obsp", "varp"):
            write_elem(f, empty, {})
