"""Gate FCS files with one strategy and write tidy outputs (an in-process loop for now)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from engine._paths import safe_name

__all__ = ["GateRun", "gate_files"]

log = logging.getLogger(__name__)

ERROR_COLUMNS = ["path", "error_type", "message"]


@dataclasses.dataclass(frozen=True)
class GateRun:
    """What :func:`gate_files` produced.

    Attributes
    ----------
    populations
        Tidy counts of every file that succeeded (``gating.GatingResult.counts`` rows).
    errors
        One row per file that failed: ``path``, ``error_type``, ``message``.
    out_dir
        Where ``populations.parquet`` (and ``.csv``), ``errors.parquet`` and
        ``membership/`` were written.
    """

    populations: pd.DataFrame
    errors: pd.DataFrame
    out_dir: Path

    @property
    def ok(self) -> bool:
        """Whether every file was gated."""
        return self.errors.empty


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def gate_files(
    strategy: str | os.PathLike[str],
    files: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str],
    membership: bool = False,
    group: str | None = None,
    mfi: Sequence[str] | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> GateRun:
    """Gate every file; a failing file is recorded and the others go on.

    Parameters
    ----------
    strategy
        Gating-ML, FlowJo workspace, phenoflow YAML/JSON, or a preset name.
    files
        FCS files.
    out_dir
        Output folder (created).
    membership
        Also write ``membership/<sample>.parquet`` (one boolean column per population id).
    group
        For a FlowJo workspace: apply this group's gates to every file instead of each
        sample's own.
    mfi
        Channels whose per-population medians are written to ``mfi.parquet``.
    on_file
        Called after each file (progress reporting).

    Returns
    -------
    GateRun
        Counts and errors (also written to ``out_dir``).
    """
    from gating import (
        apply_plan,
        compile_plan,
        load_strategy,
        read_fcs,
        resolve_strategy,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_strategy(strategy)
    counts: list[pd.DataFrame] = []
    medians: list[pd.DataFrame] = []
    errors: list[dict[str, str]] = []
    if membership:
        (out / "membership").mkdir(exist_ok=True)
    for f in files:
        path = Path(f)
        try:
            sample = read_fcs(path)
            plan = compile_plan(resolve_strategy(loaded, path.name, group=group), sample)
            result = apply_plan(plan, sample, membership=membership, mfi=mfi)
        except Exception as exc:  # a batch never dies for one bad file; the error is recorded
            log.warning("%s failed: %s: %s", path, type(exc).__name__, exc)
            errors.append({"path": str(path), "error_type": type(exc).__name__, "message": str(exc)})
        else:
            counts.append(result.counts)
            if result.mfi is not None:
                medians.append(result.mfi)
            if result.membership is not None:
                _atomic_parquet(result.membership, out / "membership" / f"{safe_name(result.sample)}.parquet")
        if on_file is not None:
            on_file(path)
    populations = pd.concat(counts, ignore_index=True) if counts else pd.DataFrame()
    error_table = pd.DataFrame(errors, columns=ERROR_COLUMNS)
    _atomic_parquet(populations, out / "populations.parquet")
    populations.to_csv(out / "populations.csv", index=False)
    _atomic_parquet(error_table, out / "errors.parquet")
    if medians:
        _atomic_parquet(pd.concat(medians, ignore_index=True), out / "mfi.parquet")
    return GateRun(populations=populations, errors=error_table, out_dir=out)
