"""Gate an archive of FCS files: fault-isolated tasks, streamed part files, resume, outputs.

Consecutive files are grouped into chunks, one task each (one file per task in-process): the
worker reads each file (every dataset of a multi-dataset file is a sample), compiles the
strategy for its channel layout and gates it. A file that fails gets its own
``parts/<key>.error.json`` at once; the chunk's results go into one part written atomically
when the chunk is done (``parts/chunk-<hash>.parquet``, whose metadata lists its files; a
one-file task writes ``parts/<key>.parquet``). A part's existence is the record that its files
are done, so a run killed at any moment (even with ``kill -9``) and started again gates only
the files no part or error record holds (same key, same size and mtime): a killed chunk is
redone whole, a file is never in the results twice. When every file has a record, the parts
are streamed, in input order, into ``populations.parquet`` (and a CSV mirror),
``errors.parquet``, ``files.parquet`` (size, hash, events, status of every input) and, on
request, an AnnData ``populations.h5ad``, ``stats.parquet``/``stats.csv`` (FlowJo's
table-editor statistics, one row per sample) and per sample ``events/<sample>.parquet|h5ad``
(the events with one boolean column per population, written by the worker chunk by chunk);
memory stays flat however many files there are.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine._batch._executor import ExecutorSpec, open_executor
from engine._batch._inputs import InputError, InputFile
from engine._batch._records import BatchTask, ErrorRecord, GatedSample, TaskOutcome
from engine.runtime import (
    atomic_path,
    atomic_write_bytes,
    check_output_dir,
    default_threads,
    output_lock,
    remove_stale_partials,
    safe_name,
)

if TYPE_CHECKING:
    from gating import FlowJoWorkspace, Plan, Strategy

    StrategyLike = str | os.PathLike[str] | Strategy | FlowJoWorkspace

__all__ = ["BatchOptions", "BatchRun", "FinishedFile", "check_mfi_channels", "file_fingerprint",
           "finished_files", "gate_chunk", "gate_task", "prepare_batch", "run_batch"]

log = logging.getLogger(__name__)

ERROR_COLUMNS = ["path", "error_type", "message"]
FILE_COLUMNS = ["path", "sample", "size", "xxh3_128", "n_datasets", "n_events", "status", "seconds",
                "uncompensated", "reader_notes"]
_HASH_CHUNK = 1 << 22


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """What to compute and write besides the counts.

    Attributes
    ----------
    membership
        Write ``membership/<sample>.parquet`` (one boolean column per population id).
    mfi
        Channels whose per-population medians go to ``mfi.parquet``.
    group
        For a FlowJo workspace: use this group's gates for every file.
    h5ad
        Also write ``populations.h5ad`` (samples x populations).
    uncompensated
        ``"error"`` (the default): a file whose compensation cannot be applied (no spillover
        matrix, ``$SPILLOVER`` labels that are not its channels, a singular matrix) fails with
        a :class:`gating.CompensationError` in ``errors.parquet``. ``"allow"``: such a file is
        gated uncompensated; ``run.json`` records the option and each such file with why, and
        the populations and files tables get an ``uncompensated`` column.
    events
        ``"parquet"`` or ``"h5ad"``: per sample ``events/<sample>.<ext>``, the events x the
        plan's channels (``<channel> | raw``, ``| compensated``, ``| transformed`` columns, or
        AnnData ``X`` and layers ``compensated``/``transformed``) with one boolean column per
        population id (see :func:`gating.write_events`); written chunk by chunk, atomically.
    stats
        Write ``stats.parquet`` and ``stats.csv``: one row per sample, FlowJo's table-editor
        statistics (``<population> | Count``, ``| Freq. of Parent``, ``| Freq. of
        Grandparent``, ``| Freq. of Total``, ``| Median (<channel>)``, ``Mean``, ``Geometric
        Mean``, ``CV``, ``Robust SD``; :data:`gating.STAT_NAMES`).
    stats_channels
        The statistics' channels (default: the channels the plan's gates use).
    """

    membership: bool = False
    mfi: tuple[str, ...] = ()
    group: str | None = None
    h5ad: bool = False
    uncompensated: Literal["error", "allow"] = "error"
    events: Literal["parquet", "h5ad"] | None = None
    stats: bool = False
    stats_channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.uncompensated not in ("error", "allow"):
            raise ValueError(f"uncompensated must be 'error' or 'allow', not {self.uncompensated!r}")
        if self.events not in (None, "parquet", "h5ad"):
            raise ValueError(f"events must be 'parquet', 'h5ad' or None, not {self.events!r}")
        if self.stats_channels and not self.stats:
            raise ValueError("stats_channels needs stats=True")


@dataclasses.dataclass(frozen=True)
class BatchRun:
    """The outcome of :func:`run_batch`.

    Attributes
    ----------
    out_dir
        Where everything was written.
    errors, files
        The error and per-file tables (also on disk); :attr:`populations` reads the counts
        from disk on request (they can be large).
    resumed
        Files whose part files from an earlier run were reused.
    executor
        Description of the executor used.
    """

    out_dir: Path
    errors: pd.DataFrame
    files: pd.DataFrame
    resumed: int
    executor: str

    @property
    def ok(self) -> bool:
        """Whether every file was gated."""
        return self.errors.empty

    @property
    def populations(self) -> pd.DataFrame:
        """The tidy counts table (read from ``populations.parquet``)."""
        return pd.read_parquet(self.out_dir / "populations.parquet")


# ---- worker side --------------------------------------------------------------------------
def file_fingerprint(path: str, *, sample: Any = None) -> str:
    """The file's content fingerprint: XXH3-128 over the file's mapped pages.

    It identifies the exact bytes gated (provenance, not security); resuming relies on size
    and mtime, not on this hash. XXH3 hashes at memory speed (BLAKE2b and SHA-256 at 0.5-1
    GB/s cost as much as gating a 100,000-event file), and hashing the mapping instead of
    ``read()`` into fresh 4 MiB buffers avoids a copy and the page faults of new buffers
    (2.3 against 9 ms per 9.6 MB file here; see the README's batch benchmark).

    Parameters
    ----------
    path
        The file.
    sample
        A :class:`gating.FCSData` read from ``path``: its mapping of the file is hashed
        (:meth:`gating.FCSData.file_chunks`) instead of a mapping of its own, so a file just
        gated is not mapped and faulted in a second time (about 1 ms per 9.6 MB file). The
        same bytes, the same fingerprint; a file whose mapping cannot be made is hashed from
        ``path`` as without it.
    """
    import mmap

    import xxhash

    h = xxhash.xxh3_128()
    if sample is not None:
        try:
            for piece in sample.file_chunks():
                h.update(piece)
        except (ValueError, OSError):  # not mappable (empty, changed): hash from the path
            h = xxhash.xxh3_128()
        else:
            return h.hexdigest()
    with open(path, "rb") as fh:
        try:
            view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):  # empty or not mappable: read it
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
            return h.hexdigest()
        with view:
            h.update(view)
    return h.hexdigest()


@functools.lru_cache(maxsize=16)
def _strategy(text: str) -> Strategy:
    from gating import strategy_from_dict

    return strategy_from_dict(json.loads(text))


#: Compiled plans kept per worker process (a batch's files mostly share one layout).
_PLAN_CACHE_SIZE = 32
_plans: collections.OrderedDict[tuple[Any, ...], Plan] = collections.OrderedDict()
_plans_lock = threading.Lock()


def _layout_key(text: str, sample: Any, mode: str) -> tuple[Any, ...]:
    """Everything :func:`gating.compile_plan` reads of a sample, and the strategy and mode:
    two data sets with the same key compile to the same plan. The names and markers (channel
    lookup) and every spillover-like keyword with its value (the file's matrix: whichever one
    the reader takes, its labels and values) are in it, so a file whose channels, channel
    order or spillover differ from an earlier one's never gets the earlier plan."""
    markers = tuple(str(m) for m in sample.channels["marker"])
    spill = tuple((k, v) for k, v in sample.metadata.items() if "SPILL" in k)
    return (text, mode, tuple(sample.names), markers, spill)


def _compiled(text: str, strategy: Strategy, sample: Any, mode: Any) -> Plan:
    """``compile_plan(strategy, sample, uncompensated=mode)``, reused across the data sets of
    one layout (:func:`_layout_key`).

    Only plans that resolved every channel name literally and applied every compensation are
    kept: compiling any other logs what it resolved or skipped for that very file, so those
    are compiled (and logged) per file as before. A plan that fails to compile raises, per
    file, as before.
    """
    from gating import compile_plan

    key = _layout_key(text, sample, mode)
    with _plans_lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    plan = compile_plan(strategy, sample, uncompensated=mode)
    if not plan.channel_map and not plan.uncompensated:
        with _plans_lock:
            _plans[key] = plan
            while len(_plans) > _PLAN_CACHE_SIZE:
                _plans.popitem(last=False)
    return plan


def _write_parquet(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _write_error(record: ErrorRecord, parts: Path, key: str) -> None:
    atomic_write_bytes(parts / f"{key}.error.json", json.dumps(record.to_dict()).encode())


@dataclasses.dataclass(frozen=True)
class _Gated:
    """One file's results, held by the worker until its part (or its chunk's part) is written."""

    counts: pa.Table
    meta: dict[str, Any]
    mfi: pd.DataFrame | None
    stats: pd.DataFrame | None
    n_events: int


def _gate_file(
    task: BatchTask, *, start: float, watcher: Callable[[GatedSample], None] | None = None,
) -> _Gated:
    """Gate every data set of one file; raises for a bad file. Membership and event files
    (per sample) are written here; the counts, MFIs and statistics are returned."""
    from gating import apply_plan, evaluate_plan, read_fcs, write_events

    out = Path(task.out_dir)
    path = task.path
    first = read_fcs(path)  # typed errors for anything that is not a readable FCS file
    strategy = _strategy(task.strategy)
    frames, medians, stat_rows, n_events = [], [], [], 0
    skipped: list[str] = []  # why compensation was not applied, when that is allowed
    mode: Any = task.uncompensated
    for k in range(first.n_datasets):
        sample = first if k == 0 else read_fcs(path, dataset=k)
        # compiled per dataset: the plan holds the dataset's own spillover coefficients
        plan = _compiled(task.strategy, strategy, sample, mode)
        name = task.name if k == 0 else f"{task.name}#{k}"
        # gated once: counts, statistics and the event export read the same evaluation
        ev = evaluate_plan(plan, sample, threads=task.threads) if (
            task.events or task.stats or (watcher is not None and k == 0)) else None
        stats: Any = (list(task.stats_channels) or True) if task.stats else False
        result = apply_plan(
            plan, sample, membership=task.membership, mfi=list(task.mfi) or None,
            stats=stats, sample_name=name, threads=task.threads, uncompensated=mode,
            evaluator=ev,
        )
        skipped += [f"{name}: {why}" for why in result.uncompensated]
        if watcher is not None and k == 0:
            _watch(watcher, GatedSample(path=path, name=name, plan=plan, sample=sample,
                                        evaluation=ev))
        extra: dict[str, Any] = {**task.metadata, "file": path, "dataset": k}
        if mode == "allow":
            extra["uncompensated"] = bool(result.uncompensated)
        frames.append((result.counts, extra))
        n_events += sample.n_events
        if result.membership is not None:
            member_dir = out / "membership"
            member_dir.mkdir(exist_ok=True)
            _write_parquet(
                pa.Table.from_pandas(result.membership, preserve_index=False),
                member_dir / f"{safe_name(name)}.parquet",
            )
        if result.mfi is not None:
            medians.append(result.mfi)
        if result.stats is not None:
            row = result.stats
            for j, (column, value) in enumerate(task.metadata.items()):
                row.insert(1 + j, column, value)
            stat_rows.append(row)
        if task.events:
            event_dir = out / "events"
            event_dir.mkdir(exist_ok=True)
            write_events(result, event_dir / f"{safe_name(name)}.{task.events}",
                         format=task.events, evaluator=ev)  # type: ignore[arg-type]
        del ev
    # hashed through the mapping gating read (its pages already in): mapped once per file
    digest = file_fingerprint(path, sample=first)
    meta = {"path": path, "sample": task.name, "stat": list(task.stat), "xxh3_128": digest,
            "n_datasets": first.n_datasets, "n_events": n_events,
            "seconds": time.perf_counter() - start, "uncompensated": skipped,
            # what the reader repaired (instrument quirks): recorded, not only warned
            "reader_notes": list(first.warnings)}
    return _Gated(
        counts=_counts_table(frames), meta=meta,
        mfi=pd.concat(medians, ignore_index=True) if medians else None,
        stats=pd.concat(stat_rows, ignore_index=True) if stat_rows else None, n_events=n_events,
    )


def _counts_table(frames: list[tuple[pd.DataFrame, dict[str, Any]]]) -> pa.Table:
    """The counts of a file's data sets with the extra columns (metadata, file, data set) set
    on each: the table ``pa.Table.from_pandas`` gives of the frames so extended and
    concatenated, without its schema metadata.

    For one data set (the usual file) the table is built column by column with the very
    conversion ``from_pandas`` applies to each column (``pa.array(column, from_pandas=True)``;
    each extra column as pandas stores a scalar set on the frame), skipping the frame's
    copies and the pandas metadata: a third of the cost.
    """
    if len(frames) == 1:
        counts, extra = frames[0]
        n = len(counts)
        arrays = [pa.array(counts[c].to_numpy(), from_pandas=True) for c in counts.columns]
        for value in extra.values():  # as `counts[column] = value` stores it
            arrays.append(pa.array([value] * n) if n and _plain(value) else pa.array(
                pd.Series(value, index=counts.index), from_pandas=True))
        return pa.Table.from_arrays(arrays, names=[*counts.columns, *extra])
    extended = []
    for counts, extra in frames:
        for column, value in extra.items():
            counts[column] = value
        extended.append(counts)
    table = pa.Table.from_pandas(pd.concat(extended, ignore_index=True), preserve_index=False)
    return table.replace_schema_metadata(None)


def _plain(value: Any) -> bool:
    """Whether pandas stores ``counts[column] = value`` as a column that Arrow converts to the
    type of ``pa.array([value] * n)`` with the same values: a string (string), a bool (bool)
    or an int within int64 (int64). Not floats (all-NaN lists become Arrow's null type, a
    NaN column double) nor anything else (numpy scalars, ``None``, timestamps...)."""
    kind = type(value)
    return kind is str or kind is bool or (kind is int and -(1 << 63) <= value < (1 << 63))


def _failure(task: BatchTask, exc: Exception, start: float) -> TaskOutcome:
    """Record why ``task``'s file failed (``parts/<key>.error.json``)."""
    seconds = time.perf_counter() - start
    log.warning("%s failed: %s: %s", task.path, type(exc).__name__, exc)
    log.debug("%s", traceback.format_exc())
    error = ErrorRecord.from_exception(exc, path=task.path, sample=task.name, stat=task.stat,
                                       seconds=seconds)
    _write_error(error, Path(task.out_dir) / "parts", task.key)
    return TaskOutcome(key=task.key, path=task.path, sample=task.name, seconds=seconds, error=error)


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def gate_task(
    task: BatchTask, *, watcher: Callable[[GatedSample], None] | None = None,
) -> TaskOutcome:
    """Gate one file and write its part file; never raises for a bad file.

    Parameters
    ----------
    task
        The file, its strategy (``task.strategy``, JSON text), options and output folder.
    watcher
        In-process only: called with the first data set's :class:`GatedSample` (plan,
        sample and the evaluation the counts come from) before the part file is written.
        A watcher that raises is logged; the file's result does not depend on it.

    Returns
    -------
    TaskOutcome
        Events gated and time taken, or the file's :class:`ErrorRecord` when it failed (also
        written to ``parts/<key>.error.json``).
    """
    start = time.perf_counter()
    parts = Path(task.out_dir) / "parts"
    try:
        gated = _gate_file(task, start=start, watcher=watcher)
        if gated.mfi is not None:
            _write_parquet(_table(gated.mfi), parts / f"{task.key}.mfi.parquet")
        if gated.stats is not None:
            _write_parquet(_table(gated.stats), parts / f"{task.key}.stats.parquet")
        table = gated.counts.replace_schema_metadata({b"phenoflow": json.dumps(gated.meta).encode()})
        _write_parquet(table, parts / f"{task.key}.parquet")  # written last: "done"
        return TaskOutcome(key=task.key, path=task.path, sample=task.name,
                           n_events=gated.n_events, seconds=gated.meta["seconds"])
    except Exception as exc:  # a batch never dies for one bad file: record it
        return _failure(task, exc, start)


def gate_chunk(chunk: Sequence[BatchTask]) -> list[TaskOutcome]:
    """Gate a chunk of files and write one part for all of them; never raises for a bad file.

    A chunk of one file is :func:`gate_task`. Otherwise each file that fails gets its
    ``parts/<key>.error.json`` at once, and the others' counts, MFIs and statistics go into one
    ``parts/chunk-<hash>.parquet`` (plus ``.mfi.parquet`` / ``.stats.parquet``) written when
    the chunk is done. Its schema metadata lists each file (key, size and mtime, hash, rows):
    a run killed inside a chunk redoes the chunk's files, never only some of their rows.

    Parameters
    ----------
    chunk
        The files, in input order, with their strategy text attached.

    Returns
    -------
    list of TaskOutcome
        One per file, in the chunk's order.
    """
    if len(chunk) == 1:
        return [gate_task(chunk[0])]
    outcomes: list[TaskOutcome] = []
    done: list[tuple[BatchTask, _Gated]] = []
    for task in chunk:
        start = time.perf_counter()
        try:
            gated = _gate_file(task, start=start)
        except Exception as exc:  # a batch never dies for one bad file: record it
            outcomes.append(_failure(task, exc, start))
            continue
        done.append((task, gated))
        outcomes.append(TaskOutcome(key=task.key, path=task.path, sample=task.name,
                                    n_events=gated.n_events, seconds=gated.meta["seconds"]))
    if done:
        _write_chunk(done, Path(chunk[0].out_dir) / "parts")
    return outcomes


def _write_chunk(done: list[tuple[BatchTask, _Gated]], parts: Path) -> None:
    """One part for a chunk's gated files: side tables first, the counts part last ("done")."""
    stem = "chunk-" + hashlib.sha1("".join(t.key for t, _ in done).encode()).hexdigest()[:24]
    files = []
    for task, gated in done:
        files.append({**gated.meta, "key": task.key, "rows": gated.counts.num_rows,
                      "mfi_rows": 0 if gated.mfi is None else len(gated.mfi),
                      "stats_rows": 0 if gated.stats is None else len(gated.stats),
                      "stats_columns": [] if gated.stats is None else list(gated.stats.columns)})
    medians = [g.mfi for _, g in done if g.mfi is not None]
    if medians:
        _write_parquet(_table(pd.concat(medians, ignore_index=True)), parts / f"{stem}.mfi.parquet")
    stat_rows = [g.stats for _, g in done if g.stats is not None]
    if stat_rows:
        _write_parquet(_table(pd.concat(stat_rows, ignore_index=True, sort=False)),
                       parts / f"{stem}.stats.parquet")
    table = pa.concat_tables([g.counts for _, g in done], promote_options="default")
    table = table.replace_schema_metadata({b"phenoflow": json.dumps({"files": files}).encode()})
    _write_parquet(table, parts / f"{stem}.parquet")


def _watch(watcher: Callable[[GatedSample], None], gated: GatedSample) -> None:
    """Show ``gated`` to a watcher; its failure is the watcher's, not the file's."""
    try:
        watcher(gated)
    except Exception as exc:
        log.warning("%s: watcher failed: %s: %s", gated.path, type(exc).__name__, exc)
        log.debug("%s", traceback.format_exc())


# ---- driver side --------------------------------------------------------------------------
def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _load(strategy: StrategyLike) -> Strategy | FlowJoWorkspace:
    """A loaded strategy as is; a path or preset name read once."""
    from gating import FlowJoWorkspace, Strategy, load_strategy

    return strategy if isinstance(strategy, Strategy | FlowJoWorkspace) else load_strategy(strategy)


def _check_group(loaded: Strategy | FlowJoWorkspace, group: str | None) -> None:
    """Refuse a FlowJo group the workspace does not have, or a group for a plain strategy."""
    import difflib

    from gating import FlowJoWorkspace, StrategyError

    if group is None:
        return
    if not isinstance(loaded, FlowJoWorkspace):
        raise StrategyError(
            f"a group ({group!r}) applies to FlowJo workspaces only, and this strategy is not "
            "one; drop the group", source=loaded.source,
        )
    groups = list(loaded.groups)
    if group not in groups:
        close = difflib.get_close_matches(group, groups, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise StrategyError(
            f"the workspace has no group {group!r}{hint} (groups: {', '.join(map(repr, groups))})",
            source=loaded.source,
        )


def check_mfi_channels(inputs: Sequence[InputFile], channels: Sequence[str]) -> None:
    """Refuse MFI channels that no input file has, reading FCS TEXT segments only.

    The first readable file is read; only when a channel is missing there are the others read
    too (a typo therefore costs one pass over the TEXT segments, a correct name one file).

    Parameters
    ----------
    inputs
        The batch's files.
    channels
        ``$PnN`` names or ``$PnS`` markers, as :meth:`gating.FCSData.channel_index` takes them.

    Raises
    ------
    InputError
        A channel is in no readable file; the message names it, the closest channel name and
        the file whose channels were listed.
    """
    import difflib

    from gating import FCSError, read_fcs

    missing = list(dict.fromkeys(channels))
    first_names: list[str] = []
    first_path = ""
    for item in inputs:
        if not missing:
            return
        try:
            sample = read_fcs(item.path)
        except (FCSError, OSError):
            continue  # the file's own error is recorded by its task
        if not first_path:
            first_path = item.path
            first_names = [str(n) for n in sample.names] + [
                str(m) for m in sample.channels["marker"] if str(m)]
        still = []
        for channel in missing:
            try:
                sample.channel_index(channel)
            except KeyError:
                still.append(channel)
        missing = still
    if missing and first_path:
        close = difflib.get_close_matches(missing[0], first_names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(
            f"MFI channel {missing[0]!r} is in none of the {len(inputs)} files{hint} "
            f"(channels of {first_path}: {', '.join(first_names)})"
        )


def prepare_batch(
    strategy: StrategyLike, inputs: Sequence[InputFile], *, out_dir: Path,
    options: BatchOptions,
) -> tuple[list[BatchTask], dict[str, str]]:
    """One task per input file, and each distinct strategy's JSON text by its hash.

    Tasks hold only the hash; the text is attached when a task is submitted, so the driver's
    memory does not grow with the archive times the strategy size.

    A FlowJo workspace gives each file the strategy of its own sample (or of ``group``); a
    file the workspace does not know becomes a task whose ``problem`` says why, and which
    fails without a worker.

    Parameters
    ----------
    strategy
        Strategy file (Gating-ML, FlowJo, YAML/JSON) or preset name, or an already loaded
        :class:`gating.Strategy` or :class:`gating.FlowJoWorkspace` (not read again).
    inputs
        From :func:`engine.resolve_inputs`.
    out_dir
        The batch's output folder.
    options
        Membership, MFI channels, FlowJo group, compensation rule.

    Returns
    -------
    tasks : list of BatchTask
        In input order, without the strategy text.
    texts : dict
        Strategy hash -> the strategy's JSON text.

    Raises
    ------
    StrategyError
        The strategy cannot be read, or ``options.group`` is not a group of the workspace (or
        is given for a strategy that is not a workspace).
    """
    from gating import Strategy, resolve_strategy, strategy_hash

    loaded = _load(strategy)
    _check_group(loaded, options.group)
    texts: dict[str, str] = {}  # strategy hash -> JSON text
    resolved: dict[str, str] = {}  # which strategy a file gets -> its hash
    tasks = []
    for item in inputs:
        # a plain strategy is the same for every file, a workspace group too; a workspace
        # without a group gives each file its own sample's strategy
        which = "" if isinstance(loaded, Strategy) else (
            f"group:{options.group}" if options.group is not None else f"file:{Path(item.path).name}"
        )
        stat = _stat(item.path)
        problem: ErrorRecord | None = None
        digest = resolved.get(which, "")
        if which not in resolved:
            try:
                chosen = resolve_strategy(loaded, Path(item.path).name, group=options.group)
            except Exception as exc:  # recorded for this file only
                problem = ErrorRecord.from_exception(exc, path=item.path, sample=item.name, stat=stat)
            else:
                digest = strategy_hash(chosen)
                texts.setdefault(digest, json.dumps(chosen.to_dict(), default=repr))
                resolved[which] = digest
        signed: list[Any] = [os.path.abspath(item.path), digest, options.membership,
                             list(options.mfi), item.name, sorted(item.metadata.items())]
        if options.uncompensated != "error":  # keys of default runs stay as they were
            signed.append(f"uncompensated={options.uncompensated}")
        if options.events:
            signed.append(f"events={options.events}")
        if options.stats:
            signed.append(f"stats={','.join(options.stats_channels) or 'plan'}")
        signature = json.dumps(signed)
        tasks.append(
            BatchTask(
                key=hashlib.sha1(signature.encode()).hexdigest()[:24], path=item.path,
                name=item.name, metadata=dict(item.metadata), stat=stat, out_dir=str(out_dir),
                strategy_hash=digest, membership=options.membership, mfi=tuple(options.mfi),
                uncompensated=options.uncompensated, events=options.events or "",
                stats=options.stats, stats_channels=tuple(options.stats_channels), problem=problem,
            )
        )
    return tasks, texts


@dataclasses.dataclass(frozen=True)
class FinishedFile:
    """Where a file's result lies: its own part, a slice of a chunk's part, or its error."""

    part: Path | None = None  # the counts part (per file or per chunk)
    meta: Mapping[str, Any] | None = None  # the file's entry (its own part's metadata)
    rows: tuple[int, int] | None = None  # (offset, length) in a chunk's part; None: all
    mfi: tuple[int, int] | None = None
    stats: tuple[int, int] | None = None
    stats_columns: tuple[str, ...] = ()
    error: ErrorRecord | None = None


def _chunk_entries(path: Path) -> list[dict[str, Any]]:
    """The files a chunk part holds; none when the part is damaged (its files are redone)."""
    try:
        return list(json.loads(pq.read_schema(path).metadata[b"phenoflow"])["files"])
    except Exception:
        return []


def finished_files(tasks: Sequence[BatchTask], parts: Path) -> dict[str, FinishedFile]:
    """Each file an earlier run finished (same key, same size and mtime) -> its result.

    One listing of ``parts/``; a chunk part's metadata lists its files, a per-file part's or
    error file's name is the file's key. A result beats an error for the same file, and of
    two results the newer part wins (a file changed and gated again).
    """
    want = {t.key: t for t in tasks}
    try:
        names = [e.name for e in os.scandir(parts) if not e.name.startswith(".")]
    except FileNotFoundError:
        return {}
    found: dict[str, FinishedFile] = {}
    chunks = [parts / n for n in names if n.startswith("chunk-") and n.count(".") == 1
              and n.endswith(".parquet")]
    for path in sorted(chunks, key=lambda q: q.stat().st_mtime_ns):
        at = [0, 0, 0]  # offsets of counts, MFI and statistics rows
        for entry in _chunk_entries(path):
            spans = [(at[i], int(entry[k])) for i, k in enumerate(("rows", "mfi_rows", "stats_rows"))]
            at = [o + n for o, n in spans]
            task = want.get(entry["key"])
            if task is not None and entry["stat"] == list(task.stat):
                found[task.key] = FinishedFile(part=path, meta=entry, rows=spans[0], mfi=spans[1],
                                        stats=spans[2], stats_columns=tuple(entry["stats_columns"]))
    for name in names:
        key, _, ext = name.partition(".")
        task = want.get(key)
        if task is None or key in found or ext != "parquet":
            continue
        try:
            meta = json.loads(pq.read_schema(parts / name).metadata[b"phenoflow"])
        except Exception:  # a damaged part is redone
            continue
        if meta["stat"] == list(task.stat):
            found[key] = FinishedFile(part=parts / name, meta=meta)
    for name in names:
        key, _, ext = name.partition(".")
        task = want.get(key)
        if task is None or key in found or ext != "error.json":
            continue
        try:
            error = ErrorRecord.from_dict(json.loads((parts / name).read_text()))
        except Exception:
            continue
        if error.stat == task.stat:
            found[key] = FinishedFile(error=error)
    return found


_CHUNK_FILES = 64  # at most per task: a kill loses at most this many files' work
_CHUNK_BYTES = 256 << 20  # at most this much FCS data per task (about 0.5 s of gating)
_CHUNKS_PER_SLOT = 4  # at least this many tasks per worker thread: the last ones balance


def _chunked(tasks: Sequence[BatchTask], slots: int) -> list[tuple[BatchTask, ...]]:
    """Consecutive files grouped into tasks; ``slots`` 0: one file per task.

    One task per file costs a scheduler round trip, a task record and a Parquet part per
    file; grouping amortises them while keeping enough tasks to keep every worker busy.
    """
    if slots <= 0:
        return [(t,) for t in tasks]
    target = max(1, min(_CHUNK_FILES, -(-len(tasks) // (slots * _CHUNKS_PER_SLOT))))
    chunks: list[tuple[BatchTask, ...]] = []
    current: list[BatchTask] = []
    size = 0
    for task in tasks:
        nbytes = max(task.stat[0], 0)
        if current and (len(current) >= target or size + nbytes > _CHUNK_BYTES):
            chunks.append(tuple(current))
            current, size = [], 0
        current.append(task)
        size += nbytes
    if current:
        chunks.append(tuple(current))
    return chunks


def _failing_task(task: BatchTask, problem: ErrorRecord) -> TaskOutcome:
    """A task whose strategy could not be resolved fails without touching a worker."""
    _write_error(problem, Path(task.out_dir) / "parts", task.key)
    return TaskOutcome(key=task.key, path=task.path, sample=task.name, error=problem)


def run_batch(
    strategy: StrategyLike,
    inputs: Sequence[InputFile],
    *,
    out_dir: str | os.PathLike[str],
    executor: ExecutorSpec | None = None,
    options: BatchOptions | None = None,
    on_result: Callable[[TaskOutcome], None] | None = None,
    watch: Mapping[str, Callable[[GatedSample], None]] | None = None,
) -> BatchRun:
    """Gate every input file, resuming from part files left by an earlier run.

    Before any file is gated, the run checks what it can cheaply: the output folder can be
    created or written to, the strategy reads, the FlowJo group exists, each MFI channel is in
    some file. It then holds the output folder's lock (:func:`engine.runtime.output_lock`)
    until it is done, and removes temporary files that killed runs left there.

    Parameters
    ----------
    strategy
        Strategy file (Gating-ML, FlowJo, YAML/JSON) or preset name, or an already loaded
        :class:`gating.Strategy` or :class:`gating.FlowJoWorkspace` (not read again).
    inputs
        From :func:`engine.resolve_inputs`.
    out_dir
        Output folder; ``parts/`` inside it holds the per-file results.
    executor
        Where to run (default: Dask's local threaded scheduler on the job's share of the
        machine).
    options
        Membership, MFI channels, FlowJo group, AnnData output, compensation rule.
    on_result
        Called with each finished task's :class:`TaskOutcome` (progress reporting).
    watch
        Input path -> a watcher. Those files (when not already done) are gated in this
        process before the others are submitted, and their watcher sees the
        :class:`GatedSample`: plan, sample and the very evaluation the counts come from,
        for figures drawn without evaluating the file again. Resumed files are not shown.

    Returns
    -------
    BatchRun
        The final tables.

    Raises
    ------
    OutputDirError
        The output folder cannot be created or written to.
    OutputLockedError
        Another run is writing into the output folder.
    StrategyError
        The strategy cannot be read, or the group is not one of the workspace.
    InputError
        An MFI channel is in none of the files.
    """
    options = options or BatchOptions()
    out = Path(out_dir)
    check_output_dir(out)
    loaded = _load(strategy)
    _check_group(loaded, options.group)
    if options.mfi:
        check_mfi_channels(inputs, options.mfi)
    if options.stats_channels:
        check_mfi_channels(inputs, options.stats_channels)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        remove_stale_partials(out, out / "parts", out / "membership", out / "events")
        return _run_locked(loaded, inputs, out=out, executor=executor, options=options,
                           on_result=on_result, watch=watch or {})


def _run_locked(
    loaded: Strategy | FlowJoWorkspace, inputs: Sequence[InputFile], *, out: Path,
    executor: ExecutorSpec | None, options: BatchOptions,
    on_result: Callable[[TaskOutcome], None] | None,
    watch: Mapping[str, Callable[[GatedSample], None]],
) -> BatchRun:
    """:func:`run_batch` once the folder is checked and locked."""
    tasks, hashes = prepare_batch(loaded, inputs, out_dir=out, options=options)
    earlier = finished_files(tasks, out / "parts")
    todo = [t for t in tasks if t.key not in earlier]
    resumed = len(tasks) - len(todo)
    if resumed:
        log.info("resuming: %d of %d files already done", resumed, len(tasks))
    description = "nothing to do"
    runnable = [t for t in todo if t.problem is None]
    for t in todo:
        if t.problem is not None:
            outcome = _failing_task(t, t.problem)
            if on_result:
                on_result(outcome)
    # watched files: gated here, their evaluation shown to the caller (figures), then done
    watched = [t for t in runnable if t.path in watch]
    for t in watched:
        outcome = gate_task(dataclasses.replace(t, strategy=hashes[t.strategy_hash],
                                                threads=default_threads()),
                            watcher=watch[t.path])
        if on_result:
            on_result(outcome)
    runnable = [t for t in runnable if t.path not in watch]
    if watched:
        description = f"in-process ({len(watched)} watched files)"
    if runnable:
        ex = open_executor(executor or ExecutorSpec())
        description = ex.description + (f"; {len(watched)} watched in the driver" if watched else "")
        try:
            submitted = (tuple(dataclasses.replace(t, strategy=hashes[t.strategy_hash]) for t in chunk)
                         for chunk in _chunked(runnable, ex.slots))
            for outcomes in ex.run(gate_chunk, submitted):
                for outcome in outcomes:
                    if on_result:
                        on_result(outcome)
        finally:
            ex.close()
    return _finalize(tasks, out, options=options, hashes=sorted(hashes),
                     notes=_strategy_notes(hashes), resumed=resumed,
                     description=description)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (missing manifest columns become nulls)."""
    if table.schema.equals(schema):
        return table
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


_ROW_GROUP = 65_536  # parts are small; writing them one by one would make tiny row groups


def _strategy_notes(texts: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each strategy's notes (hash -> gate path -> note): its own descriptions and how a foreign
    strategy was read (e.g. FlowJo 9 gates evaluated on FlowJo's display bins), recorded with
    the counts they explain."""
    notes = {h: json.loads(text).get("notes") or {} for h, text in sorted(texts.items())}
    return {h: n for h, n in notes.items() if n}


def _finalize(
    tasks: list[BatchTask], out: Path, *, options: BatchOptions, hashes: list[str],
    notes: dict[str, dict[str, str]], resumed: int, description: str,
) -> BatchRun:
    """Stream the parts, in input order, into the final tables (memory independent of N)."""
    from engine import __version__

    parts = out / "parts"
    done = finished_files(tasks, parts)
    missing = [t.path for t in tasks if t.key not in done]
    if missing:  # every task writes a result or an error; a file without either is a bug
        raise RuntimeError(f"{len(missing)} files have no result and no error record, e.g. {missing[0]}")
    failed = sum(done[t.key].error is not None for t in tasks)
    run_meta: dict[str, Any] = {"phenoflow_version": __version__, "strategy_hashes": hashes,
                                "files": len(tasks), "failed": failed}
    if notes:  # what each strategy says of its gates, and how a foreign one was read
        run_meta["strategy_notes"] = notes
    meta_bytes = {b"phenoflow": json.dumps(run_meta).encode()}
    metadata_keys = list(dict.fromkeys(k for t in tasks for k in t.metadata))
    with atomic_path(out / "populations.csv") as tmp_csv, \
            atomic_path(out / "populations.parquet") as tmp_pop:  # parquet is renamed first
        files, errors, mfi_tables, stat_tables, wrote = _stream_parts(
            tasks, done, pop_path=tmp_pop, csv_path=tmp_csv, metadata_keys=metadata_keys,
            meta_bytes=meta_bytes,
        )
    error_table = pd.DataFrame(errors, columns=ERROR_COLUMNS)
    _write_parquet(pa.Table.from_pandas(error_table, preserve_index=False), out / "errors.parquet")
    if mfi_tables:
        _write_parquet(pa.concat_tables(mfi_tables), out / "mfi.parquet")
    if options.stats:
        _write_stats(stat_tables, out)
    record: dict[str, Any] = {**run_meta, "executor": description,
                              "uncompensated": options.uncompensated}
    if options.events:
        record["events"] = options.events
    if options.stats:
        record["stats_channels"] = list(options.stats_channels) or "the plan's channels"
    if options.uncompensated != "error":  # which files were gated uncompensated, and why
        record["uncompensated_files"] = {
            str(f["path"]): list(f["uncompensated_why"]) for f in files if f["uncompensated_why"]}
    for f in files:
        f.pop("uncompensated_why", None)
    file_table = pd.DataFrame(files, columns=FILE_COLUMNS)
    _write_parquet(pa.Table.from_pandas(file_table, preserve_index=False), out / "files.parquet")
    atomic_write_bytes(out / "run.json", json.dumps(record, indent=2).encode())
    if options.h5ad and wrote:
        _write_h5ad(pd.read_parquet(out / "populations.parquet"), out / "populations.h5ad", run_meta)
    return BatchRun(out_dir=out, errors=error_table, files=file_table, resumed=resumed,
                    executor=description)


class _Parts:
    """Part tables read once while the parts are streamed in input order (a chunk's files are
    consecutive, so a few recent chunks are all that is held)."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.tables: dict[Path, Any] = {}

    def get(self, path: Path, read: Callable[[Path], Any]) -> Any:
        if path not in self.tables:
            if len(self.tables) >= self.keep:
                self.tables.pop(next(iter(self.tables)))
            self.tables[path] = read(path)
        return self.tables[path]


def _side(path: Path) -> tuple[Path, Path]:
    stem = path.name.removesuffix(".parquet")
    return path.with_name(f"{stem}.mfi.parquet"), path.with_name(f"{stem}.stats.parquet")


def _stream_parts(
    tasks: list[BatchTask], done: Mapping[str, FinishedFile], *, pop_path: Path, csv_path: Path,
    metadata_keys: list[str], meta_bytes: dict[bytes, bytes],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[pa.Table], list[pd.DataFrame], bool]:
    """Stream the parts into the populations Parquet and CSV files; return the rows of the
    files and errors tables, the MFI tables, the statistics rows and whether any file
    succeeded."""
    files: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    mfi_tables: list[pa.Table] = []
    stat_tables: list[pd.DataFrame] = []
    writer: pq.ParquetWriter | None = None
    csv_writer: pacsv.CSVWriter | None = None
    schema: pa.Schema | None = None
    buffer: list[pa.Table] = []
    buffered = [0]  # rows in the buffer (summing their lengths per file was quadratic)
    counts_cache, mfi_cache, stats_cache = _Parts(), _Parts(), _Parts()

    def flush() -> None:
        if buffer and writer is not None and csv_writer is not None:
            table = pa.concat_tables(buffer)
            writer.write_table(table)
            csv_writer.write_table(table)
            buffer.clear()
            buffered[0] = 0

    try:
        for task in tasks:
            record = done[task.key]
            if record.error is not None:
                err = record.error
                errors.append({"path": err.path, "error_type": err.error_type, "message": err.message})
                files.append({"path": task.path, "sample": task.name, "size": err.stat[0],
                              "xxh3_128": None, "n_datasets": 0, "n_events": 0, "status": "error",
                              "seconds": err.seconds, "uncompensated": False, "uncompensated_why": [],
                              "reader_notes": ""})
                continue
            assert record.part is not None and record.meta is not None
            meta = record.meta
            mfi_path, stats_path = _side(record.part)
            if record.rows is None:  # the file's own part
                table = pq.read_table(record.part).replace_schema_metadata(None)
                mfi = pq.read_table(mfi_path) if mfi_path.exists() else None
                stat = pd.read_parquet(stats_path) if stats_path.exists() else None
            else:  # the file's rows of its chunk's part
                table = counts_cache.get(record.part, pq.read_table).slice(*record.rows)
                table = table.replace_schema_metadata(None)
                mfi = (mfi_cache.get(mfi_path, pq.read_table).slice(*record.mfi)
                       if record.mfi and record.mfi[1] else None)
                stat = None
                if record.stats and record.stats[1]:
                    offset, length = record.stats
                    whole = stats_cache.get(stats_path, pd.read_parquet)
                    stat = whole.iloc[offset:offset + length][list(record.stats_columns)]
                    stat = stat.reset_index(drop=True)
            if schema is None:
                fields = list(table.schema)
                fields += [pa.field(k, pa.string()) for k in metadata_keys if k not in table.column_names]
                schema = pa.schema(fields)
                writer = pq.ParquetWriter(pop_path, schema.with_metadata(meta_bytes))
                csv_writer = pacsv.CSVWriter(csv_path, schema)
            buffer.append(_conform(table, schema))
            buffered[0] += len(table)
            if buffered[0] >= _ROW_GROUP:
                flush()
            files.append({"path": task.path, "sample": task.name, "size": meta["stat"][0],
                          "xxh3_128": meta.get("xxh3_128"), "n_datasets": meta["n_datasets"],
                          "n_events": meta["n_events"], "status": "ok", "seconds": meta["seconds"],
                          "uncompensated": bool(meta.get("uncompensated")),
                          "uncompensated_why": meta.get("uncompensated", []),
                          "reader_notes": "; ".join(meta.get("reader_notes", []))})
            if mfi is not None:
                mfi_tables.append(mfi)
            if stat is not None:
                stat_tables.append(stat)
        flush()
    finally:
        for w in (writer, csv_writer):
            if w is not None:
                w.close()
    if writer is None:  # nothing succeeded: an empty table with the documented columns
        from gating import COUNT_COLUMNS

        empty = pa.Table.from_pandas(pd.DataFrame(columns=COUNT_COLUMNS), preserve_index=False)
        pq.write_table(empty.replace_schema_metadata(meta_bytes), pop_path)
        pacsv.write_csv(empty, csv_path)
    return files, errors, mfi_tables, stat_tables, writer is not None


def _write_stats(rows: list[pd.DataFrame], out: Path) -> None:
    """``stats.parquet`` and ``stats.csv``: one row per sample, in input order; columns in
    first-seen order (files gated with different strategies leave the others' empty)."""
    table = pd.concat(rows, ignore_index=True, sort=False) if rows else pd.DataFrame({"sample": []})
    _write_parquet(pa.Table.from_pandas(table, preserve_index=False), out / "stats.parquet")
    with atomic_path(out / "stats.csv") as tmp:
        table.to_csv(tmp, index=False)


def _write_h5ad(populations: pd.DataFrame, path: Path, meta: dict[str, Any]) -> None:
    import anndata

    order = list(dict.fromkeys(populations["population"]))
    wide = {
        col: populations.pivot_table(index="sample", columns="population", values=col, aggfunc="first",
                                     sort=False).reindex(columns=order)
        for col in ("count", "percent_of_parent", "percent_of_total")
    }
    samples = list(dict.fromkeys(populations["sample"]))
    counts = wide["count"].reindex(samples)
    extra = [c for c in populations.columns if c not in (
        "population", "parent", "count", "parent_count", "percent_of_parent", "percent_of_total", "id")]
    obs = populations.drop_duplicates("sample").set_index("sample").reindex(samples)[
        [c for c in extra if c != "sample"]].astype(str)
    parents = populations.drop_duplicates("population").set_index("population").reindex(order)["parent"]
    var = pd.DataFrame({"parent": parents.fillna("").astype(str)}, index=pd.Index(order, name="population"))
    adata = anndata.AnnData(
        X=counts.to_numpy(dtype="float64"), obs=obs, var=var,
        layers={k: wide[k].reindex(samples).to_numpy(dtype="float64") for k in ("percent_of_parent", "percent_of_total")},
        uns={"phenoflow": {k: (v if not isinstance(v, list) else [str(x) for x in v]) for k, v in meta.items()}},
    )
    with atomic_path(path, suffix=".h5ad") as tmp:  # anndata checks the extension
        adata.write_h5ad(tmp)
