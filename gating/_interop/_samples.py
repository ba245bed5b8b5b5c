"""Samples from what a user already has: a pandas DataFrame, an AnnData or a ``flowkit.Sample``.

:func:`as_sample` converts explicitly and refuses anything it would have to guess (a typed
:class:`ConversionError`): the events are taken as they are (already FCS-preprocessed: gain,
log amplification and time step applied), channel names are the columns / ``var_names`` /
``$PnN`` labels, and a spillover matrix is used only when it is given (``spill=``), stored
under the documented key (``AnnData.uns["spill"]``) or is the FlowKit sample's own
``$SPILLOVER`` keyword. The result, an :class:`EventSample`, is what :func:`gating.compile_plan`,
:func:`gating.apply_plan` and the exporters take in place of an :class:`gating.FCSData`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gating._fcs import FCSData, channel_lookups, find_channel
from gating._interop._errors import ConversionError

__all__ = ["ConversionError", "EventSample", "EventValues", "as_sample", "parse_spillover_text"]

#: Events per chunk when an in-memory sample is walked chunk by chunk (as files are).
_CHUNK_EVENTS = 1 << 20


def _scatter_kind(name: str) -> str:
    low = name.lower()
    if low == "time":
        return "time"
    return "scatter" if low.startswith(("fsc", "ssc")) else "fluorescence"


@dataclasses.dataclass(frozen=True)
class EventValues:
    """The columns gating reads from an :class:`EventSample` (values, never stored bytes)."""

    x: np.ndarray
    colmap: dict[int, int]
    stored: None = None


@dataclasses.dataclass(frozen=True, eq=False)
class EventSample:
    """Events held in memory, with channel names, markers and an optional spillover matrix.

    It answers what gating asks of an :class:`gating.FCSData` (``names``, ``channel_index``,
    ``columns``, ``event_matrix``, ``spill``, ...), so it can be gated, plotted and exported
    like a file. Build it with :func:`as_sample`.

    Attributes
    ----------
    name
        Sample name (the ``sample`` column of the counts; ``path`` is ``<name>``).
    values
        Events x channels, C-contiguous float32 or float64, read-only.
    channels
        One row per channel, as :attr:`gating.FCSData.channels` (``number``, ``name``,
        ``marker``, ``range``, ``bits``, ``amplification``, ``decades``, ``log_zero``,
        ``gain``, ``kind``).
    spill
        Spillover matrix labelled by channel name, or ``None``.
    metadata
        Keywords carried from the source (upper-case), informational only.

    Examples
    --------
    >>> import pandas as pd
    >>> s = as_sample(pd.DataFrame({"FSC-A": [1.0, 2.0], "CD3": [0.5, 3.0]}), name="df")
    >>> s.names, s.n_events
    (['FSC-A', 'CD3'], 2)
    """

    name: str
    values: np.ndarray
    channels: pd.DataFrame
    spill: pd.DataFrame | None = None
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)

    # ---- what FCSData has -----------------------------------------------------------
    @property
    def path(self) -> Path:
        """``<name>``: used in messages where a file's path would be."""
        return Path(f"<{self.name}>")

    dataset = 0
    n_datasets = 1
    version = ""
    warnings: tuple[str, ...] = ()

    @property
    def n_events(self) -> int:
        """Number of events."""
        return int(self.values.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.values.shape[1])

    @property
    def names(self) -> list[str]:
        """Channel names in column order."""
        return [str(n) for n in self.channels["name"]]

    @functools.cached_property
    def _lookups(self) -> tuple[dict[str, int], ...]:
        return channel_lookups(self.names, [str(m) for m in self.channels["marker"]])

    def channel_index(self, channel: str | int) -> int:
        """0-based column of a channel given by name, unique marker or index (the rule of
        :meth:`gating.FCSData.channel_index`).

        Parameters
        ----------
        channel
            A name (exact, then case-insensitive), a unique marker, or an int.

        Returns
        -------
        int
            The column index.
        """
        return find_channel(channel, lookups=self._lookups, names=self.names,
                            markers=[str(m) for m in self.channels["marker"]], where=self.path)

    @property
    def events(self) -> np.ndarray:
        """The events (read-only), as :attr:`gating.FCSData.events`."""
        return self.values

    @property
    def raw(self) -> np.ndarray:
        """The events (there is no stored form apart from them)."""
        return self.values

    def columns(
        self, channels: Sequence[str | int] | range, *, dtype: np.dtype | type = np.float64
    ) -> np.ndarray:
        """Events of selected channels (events x len(channels)), a new array.

        Parameters
        ----------
        channels
            Names, markers or indices.
        dtype
            Output dtype.

        Returns
        -------
        numpy.ndarray
            C-contiguous copy.
        """
        idx = [self.channel_index(c) for c in channels]
        return np.ascontiguousarray(self.values[:, idx], dtype=dtype)

    def event_matrix(self, columns: Sequence[int]) -> tuple[np.ndarray, dict[int, int]]:
        """The event array itself and where each column is in it (no copy).

        Parameters
        ----------
        columns
            0-based channel indices.

        Returns
        -------
        tuple
            ``(array, {channel index: column})``.
        """
        return self.values, {int(c): int(c) for c in columns}

    def event_source(self, columns: Sequence[int]) -> EventValues:
        """How gating reads the columns: the event array itself (no copy).

        Parameters
        ----------
        columns
            0-based channel indices.

        Returns
        -------
        EventValues
            ``x`` (the events), ``colmap`` (channel index -> column) and ``stored`` (``None``).
        """
        x, colmap = self.event_matrix(columns)
        return EventValues(x, colmap)

    @property
    def _chunk_events(self) -> int:
        return _CHUNK_EVENTS

    def chunk_ranges(self) -> Iterator[tuple[int, int]]:
        """Consecutive ``(lo, hi)`` event ranges of :data:`_CHUNK_EVENTS` events.

        Yields
        ------
        tuple of int
            ``(lo, hi)``.
        """
        for lo in range(0, self.n_events, _CHUNK_EVENTS):
            yield lo, min(lo + _CHUNK_EVENTS, self.n_events)


SampleLike = Any  # FCSData | EventSample | pandas.DataFrame | anndata.AnnData | flowkit.Sample


def _channel_table(names: Sequence[str], markers: Sequence[str], ranges: Sequence[float] | None
                   ) -> pd.DataFrame:
    rows = []
    for i, (name, marker) in enumerate(zip(names, markers, strict=True)):
        rows.append({
            "number": i + 1, "name": name, "marker": marker,
            "range": float(ranges[i]) if ranges is not None else np.nan, "bits": 64,
            "amplification": "0,0", "decades": 0.0, "log_zero": 0.0, "gain": 1.0,
            "kind": _scatter_kind(name),
        })
    return pd.DataFrame(rows)


def _check_names(names: Sequence[Any], what: str) -> list[str]:
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ConversionError(f"{what}: channel names must be non-empty strings, got {bad[:3]!r}")
    seen: set[str] = set()
    dup = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if dup:
        raise ConversionError(f"{what}: channel names must be unique; repeated: {sorted(set(dup))}")
    return [str(n) for n in names]


def _float_values(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ConversionError(f"{what}: events must be a 2-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ConversionError(f"{what}: events must be numeric, got dtype {arr.dtype}")
    dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    out = np.array(arr, dtype=dtype, order="C", copy=True)
    out.flags.writeable = False
    return out


def _check_spill(spill: Any, names: list[str], what: str) -> pd.DataFrame | None:
    if spill is None:
        return None
    if not isinstance(spill, pd.DataFrame):
        raise ConversionError(
            f"{what}: spill must be a DataFrame labelled by channel name on both axes, got "
            f"{type(spill).__name__}")
    if [str(c) for c in spill.index] != [str(c) for c in spill.columns]:
        raise ConversionError(f"{what}: the spillover matrix needs the same labels on both axes")
    values = np.asarray(spill.to_numpy(), dtype=np.float64)
    if not np.isfinite(values).all():
        raise ConversionError(f"{what}: the spillover matrix has non-finite values")
    labels = [str(c) for c in spill.columns]
    return pd.DataFrame(values, index=labels, columns=labels)


def parse_spillover_text(text: str, *, what: str = "spillover") -> pd.DataFrame:
    """Parse an FCS ``$SPILLOVER`` value (``n,label_1..label_n,v_11..v_nn``).

    Parameters
    ----------
    text
        The keyword's value.
    what
        Named in errors.

    Returns
    -------
    pandas.DataFrame
        n x n, labelled by the labels on both axes.

    Examples
    --------
    >>> parse_spillover_text("2,A,B,1,0.1,0,1").loc["A", "B"]
    np.float64(0.1)
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        n = int(parts[0])
    except ValueError:
        raise ConversionError(f"{what}: {text[:40]!r} does not start with the matrix size") from None
    if n < 1 or len(parts) != 1 + n + n * n:
        raise ConversionError(f"{what}: {len(parts)} fields do not hold a {n}x{n} matrix")
    labels = parts[1:1 + n]
    try:
        values = np.array([float(v) for v in parts[1 + n:]], dtype=np.float64).reshape(n, n)
    except ValueError:
        raise ConversionError(f"{what}: the matrix has values that are not numbers") from None
    return pd.DataFrame(values, index=labels, columns=labels)


def _from_dataframe(df: pd.DataFrame, *, name: str, spill: Any, markers: Mapping[str, str] | None
                    ) -> EventSample:
    what = f"DataFrame {name!r}"
    if df.columns.nlevels == 2:  # (name, marker), as flowkit's Sample.as_dataframe gives
        names = [str(n) for n in df.columns.get_level_values(0)]
        marks = [str(m) if isinstance(m, str) else "" for m in df.columns.get_level_values(1)]
        if markers is not None:
            raise ConversionError(f"{what}: markers are given twice (column level 1 and markers=)")
    elif df.columns.nlevels == 1:
        names = list(df.columns)
        marks = None
    else:
        raise ConversionError(f"{what}: columns with {df.columns.nlevels} levels; use one level "
                              "of channel names (or two: name, marker)")
    names = _check_names(names, what)
    if marks is None:
        marks = [str((markers or {}).get(n, "")) for n in names]
    unknown = sorted(set(markers or {}) - set(names))
    if unknown:
        raise ConversionError(f"{what}: markers= names columns that are not there: {unknown}")
    bad = [str(c) for c, t in zip(names, df.dtypes, strict=True)
           if not (pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t))]
    if bad:
        raise ConversionError(f"{what}: columns that are not numbers: {bad}; select the channel "
                              "columns (events x channels)")
    values = _float_values(df.to_numpy(), what)
    return EventSample(name=name, values=values, channels=_channel_table(names, marks, None),
                       spill=_check_spill(spill, names, what))


def _from_anndata(adata: Any, *, name: str, spill: Any, layer: str | None) -> EventSample:
    what = f"AnnData {name!r}"
    names = _check_names(list(adata.var_names), what)
    if layer is None:
        data = adata.X
    elif layer in adata.layers:
        data = adata.layers[layer]
    else:
        raise ConversionError(f"{what}: no layer {layer!r}; layers: {list(adata.layers)}")
    if data is None:
        raise ConversionError(f"{what}: X is empty; name the layer with the events (layer=)")
    if hasattr(data, "toarray"):  # sparse: events are dense, made so explicitly
        data = data.toarray()
    marks = ([str(m) if isinstance(m, str) else "" for m in adata.var["marker"]]
             if "marker" in adata.var.columns else [""] * len(names))
    if spill is None and "spill" in adata.uns:
        stored = adata.uns["spill"]
        spill = (pd.DataFrame(stored) if not isinstance(stored, pd.DataFrame) else stored)
    return EventSample(name=name, values=_float_values(data, what),
                       channels=_channel_table(names, marks, None),
                       spill=_check_spill(spill, names, what))


def _from_flowkit(sample: Any, *, name: str | None, spill: Any) -> EventSample:
    sid = str(name or sample.id or "flowkit-sample")
    what = f"flowkit.Sample {sid!r}"
    if not getattr(sample, "is_preprocessed", True):
        raise ConversionError(f"{what} was read with preprocess=False: its events are not scaled "
                              "(gain, log, time step) as gates expect; read it with "
                              "preprocess=True")
    for attr in ("negative_scatter_indices", "flagged_indices"):
        flagged = getattr(sample, attr, None)
        if flagged is not None and len(flagged):
            raise ConversionError(
                f"{what} has {len(flagged)} events in {attr}; gating uses every event, so pass "
                "the events you mean as a DataFrame (sample.as_dataframe(source='raw') minus "
                "those rows)")
    names = _check_names(list(sample.pnn_labels), what)
    marks = [str(m) if m else "" for m in sample.pns_labels]
    values = _float_values(sample.get_events(source="raw"), what)
    if spill is None:
        spill = _flowkit_spill(sample, what)
    ranges = None
    if "pnr" in getattr(sample, "channels", pd.DataFrame()).columns:
        ranges = [float(r) for r in sample.channels["pnr"]]
    meta = {str(k).upper(): str(v) for k, v in (sample.metadata or {}).items()
            if str(k).lower() not in ("spill", "spillover")}
    return EventSample(name=sid, values=values, channels=_channel_table(names, marks, ranges),
                       spill=_check_spill(spill, names, what), metadata=meta)


def _flowkit_spill(sample: Any, what: str) -> pd.DataFrame | None:
    """The FlowKit sample's own ``$SPILLOVER``; a compensation applied in FlowKit must be the
    same matrix (else which one is meant is ambiguous)."""
    meta = {str(k).lower(): v for k, v in (sample.metadata or {}).items()}
    texts = [meta[k] for k in ("spillover", "spill") if str(meta.get(k, "")).strip()]
    own = parse_spillover_text(texts[0], what=f"{what}: $SPILLOVER") if texts else None
    applied = getattr(sample, "compensation", None)
    if applied is None:
        return own
    matrix = getattr(applied, "matrix", None)
    detectors = getattr(applied, "detectors", None)
    if matrix is None or detectors is None:
        raise ConversionError(f"{what}: a {type(applied).__name__} compensation is applied; "
                              "pass the spillover matrix explicitly (spill=)")
    labels = [str(d) for d in detectors]
    mine = pd.DataFrame(np.asarray(matrix, dtype=np.float64), index=labels, columns=labels)
    if own is None:
        raise ConversionError(f"{what}: a compensation was applied in FlowKit but the file has no "
                              "$SPILLOVER; pass it explicitly (spill=sample.compensation as a "
                              "DataFrame) if it is the one to gate with")
    if own.shape != mine.shape or list(own.columns) != labels or not np.array_equal(
            own.to_numpy(), mine.to_numpy()):
        raise ConversionError(f"{what}: the compensation applied in FlowKit differs from the "
                              "file's $SPILLOVER; say which one gates it (spill=)")
    return own


def as_sample(
    obj: SampleLike,
    *,
    name: str | None = None,
    spill: pd.DataFrame | None = None,
    markers: Mapping[str, str] | None = None,
    layer: str | None = None,
) -> FCSData | EventSample:
    """A gateable sample from an FCS sample, a DataFrame, an AnnData or a ``flowkit.Sample``.

    Parameters
    ----------
    obj
        An :class:`gating.FCSData` or :class:`EventSample` (returned as is); a
        :class:`pandas.DataFrame` of events (one column per channel, named by channel; a
        two-level column index is read as (name, marker)); an :class:`anndata.AnnData`
        (obs = events, ``var_names`` = channels, ``var["marker"]`` optional, events from
        ``X`` or ``layer``); a ``flowkit.Sample`` (its preprocessed ``raw`` events,
        ``pnn_labels``/``pns_labels`` and its ``$SPILLOVER``). Values are taken as FCS-
        preprocessed channel values (what :attr:`gating.FCSData.events` holds); float32
        stays float32, everything else becomes float64.
    name
        Sample name (default: ``"events"``, the FlowKit sample's ``id``).
    spill
        Spillover matrix (labelled by channel on both axes) for gates compensated with the
        file's matrix (``FCS``). Default: none, except ``AnnData.uns["spill"]`` and a FlowKit
        sample's ``$SPILLOVER``. A strategy that needs it and finds none raises
        :class:`gating.CompensationError` as for a file.
    markers
        For a DataFrame: channel name -> marker (``$PnS``), so gates may name markers.
    layer
        For an AnnData: the layer holding the events (default ``X``).

    Returns
    -------
    FCSData or EventSample
        The sample.

    Raises
    ------
    ConversionError
        Names that are not unique strings, non-numeric columns, an unknown layer, a FlowKit
        sample that is not preprocessed or has flagged events, a FlowKit compensation that
        differs from the file's, or an object of another type.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> df = pd.DataFrame(np.ones((3, 2)), columns=["FSC-A", "FITC-A"])
    >>> as_sample(df, name="tube1", markers={"FITC-A": "CD3"}).channel_index("CD3")
    1
    """
    if isinstance(obj, FCSData | EventSample):
        return obj
    if isinstance(obj, pd.DataFrame):
        return _from_dataframe(obj, name=name or "events", spill=spill, markers=markers)
    anndata = sys.modules.get("anndata")
    if anndata is not None and isinstance(obj, anndata.AnnData):
        return _from_anndata(obj, name=name or "events", spill=spill, layer=layer)
    flowkit = sys.modules.get("flowkit")
    if flowkit is not None and isinstance(obj, flowkit.Sample):
        return _from_flowkit(obj, name=name, spill=spill)
    if isinstance(obj, np.ndarray):
        raise ConversionError("a bare array has no channel names; pass a DataFrame whose columns "
                              "are the channel names")
    if isinstance(obj, str | Path):
        raise ConversionError(f"{obj!s}: a path; read it first with gating.read_fcs")
    raise ConversionError(f"cannot gate a {type(obj).__module__}.{type(obj).__name__}; give an "
                          "FCSData, a pandas DataFrame, an AnnData or a flowkit.Sample")
