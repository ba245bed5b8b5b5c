"""What travels in and out: samples and strategies from pandas, AnnData and FlowKit; gated
events out as DataFrames, AnnData, Parquet and h5ad."""

from gating._interop._events import (
    EVENT_LAYERS,
    STAT_NAMES,
    EventChannel,
    event_channels,
    iter_events,
    obs_column,
    stat_channels,
    to_anndata,
    to_dataframe,
    write_events,
)
from gating._interop._samples import ConversionError, EventSample, EventValues, as_sample
from gating._interop._strategies import (
    apply_plan,
    as_strategy,
    compile_plan,
    evaluate_plan,
    load_strategy,
    resolve_strategy,
)

__all__ = [
    "EVENT_LAYERS",
    "STAT_NAMES",
    "ConversionError",
    "EventChannel",
    "EventSample",
    "EventValues",
    "apply_plan",
    "as_sample",
    "as_strategy",
    "compile_plan",
    "evaluate_plan",
    "event_channels",
    "iter_events",
    "load_strategy",
    "obs_column",
    "resolve_strategy",
    "stat_channels",
    "to_anndata",
    "to_dataframe",
    "write_events",
]
