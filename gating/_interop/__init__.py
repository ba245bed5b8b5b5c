"""What travels in and out: samples and strategies from pandas, AnnData and FlowKit; gated
events out as DataFrames, AnnData, Parquet and h5ad.

The names load lazily (PEP 562): converting or loading a strategy does not import pandas or the
FCS reader's kernels, which the event and sample modules need.
"""

from engine.runtime import lazy_namespace

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "EVENT_LAYERS": "gating._interop._events",
    "STAT_NAMES": "gating._interop._events",
    "EventChannel": "gating._interop._events",
    "event_channels": "gating._interop._events",
    "iter_events": "gating._interop._events",
    "obs_column": "gating._interop._events",
    "stat_channels": "gating._interop._events",
    "to_anndata": "gating._interop._events",
    "to_dataframe": "gating._interop._events",
    "write_events": "gating._interop._events",
    "ConversionError": "gating._interop._errors",
    "EventSample": "gating._interop._samples",
    "EventValues": "gating._interop._samples",
    "as_sample": "gating._interop._samples",
    "apply_plan": "gating._interop._gate",
    "as_strategy": "gating._interop._strategies",
    "compile_plan": "gating._interop._gate",
    "evaluate_plan": "gating._interop._gate",
    "load_strategy": "gating._interop._strategies",
    "resolve_strategy": "gating._interop._strategies",
}

__all__: list[str] = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())
