"""``phenoflow gate``: gate an FCS archive on this machine, a Dask cluster or SLURM."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.cli._errors import UsageProblem, check_output_folder, load_strategy_option
from engine.cli._process import quiet_blas, settle_heap

if TYPE_CHECKING:
    from engine._batch import ExecutorSpec, InputFile
    from gating import FlowJoWorkspace, Strategy

__all__ = ["gate"]


def executor_from_options(in_process: bool, workers: int | None, scheduler: str | None,
                          scheduler_file: Path | None, slurm: bool,
                          slurm_options: dict[str, Any], processes: bool = False) -> ExecutorSpec:
    """The executor chosen by ``phenoflow gate``'s options (at most one of them)."""
    from engine._batch import ExecutorSpec, SlurmOptions

    chosen = [name for name, on in (("--in-process", in_process), ("--scheduler", scheduler),
                                    ("--scheduler-file", scheduler_file), ("--slurm", slurm)) if on]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one executor, not {' and '.join(chosen)}")
    if workers is not None and workers < 1:
        raise click.BadParameter("must be at least 1", param_hint="--workers")
    if in_process:
        return ExecutorSpec(kind="inprocess")
    if scheduler or scheduler_file:
        return ExecutorSpec(kind="scheduler", scheduler=scheduler,
                            scheduler_file=str(scheduler_file) if scheduler_file else None)
    if slurm:
        return ExecutorSpec(kind="slurm", slurm=SlurmOptions(**slurm_options))
    return ExecutorSpec(kind="local", workers=workers, processes=processes)


@click.command()
@click.option("--strategy", required=True, help="Gating-ML, FlowJo .wsp, YAML/JSON, or a preset name.")
@click.option("--fcs", "fcs", multiple=True, help="FCS file, directory, glob or @list file (repeat).")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with a 'path' column and sample metadata (patient, timepoint, ...).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--membership", is_flag=True, help="Also write membership/<sample>.parquet.")
@click.option("--group", default=None, help="FlowJo workspace group whose gates apply to every file.")
@click.option("--mfi", default=None, help="Comma-separated channels for per-population medians.")
@click.option("--h5ad", is_flag=True, help="Also write populations.h5ad (samples x populations).")
@click.option("--events", type=click.Choice(["parquet", "h5ad"]), default=None,
              help="Also write events/<sample>.<ext>: events x the plan's channels (raw, "
                   "compensated, transformed) with one boolean column per population.")
@click.option("--stats", is_flag=True,
              help="Also write stats.parquet/stats.csv: FlowJo table-editor statistics, one row "
                   "per sample (count, freq. of parent/grandparent/total; median, mean, "
                   "geometric mean, CV, robust SD per channel).")
@click.option("--stats-channels", default=None,
              help="Comma-separated channels for --stats (default: the channels the gates use).")
@click.option("--allow-uncompensated", is_flag=True,
              help="Gate files whose compensation cannot be applied (no spillover, $SPILLOVER "
                   "labels that are not channels, a singular matrix) uncompensated instead of "
                   "failing them; recorded in run.json and an 'uncompensated' column.")
@click.option("--workers", type=int, default=None,
              help="Local workers (default: the job's CPUs): threads of this process under "
                   "Dask's threaded scheduler.")
@click.option("--worker-processes", is_flag=True,
              help="Local workers as separate processes of a Dask LocalCluster (a memory limit "
                   "each) instead of threads of this process (no start-up cost).")
@click.option("--in-process", is_flag=True, help="Run in this process (debugging).")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler (tcp://host:port).")
@click.option("--scheduler-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Scheduler file of a running Dask scheduler.")
@click.option("--slurm", is_flag=True, help="Run on SLURM through dask-jobqueue.")
@click.option("--slurm-cores", type=int, default=4, show_default=True)
@click.option("--slurm-memory", default="16GB", show_default=True)
@click.option("--slurm-walltime", default="01:00:00", show_default=True)
@click.option("--slurm-jobs", type=int, default=1, show_default=True)
@click.option("--slurm-processes", type=int, default=1, show_default=True)
@click.option("--slurm-account", default=None)
@click.option("--slurm-queue", default=None)
@click.option("--slurm-extra", multiple=True, help="Extra #SBATCH directive (repeat).")
@click.option("--print-job-script", is_flag=True, help="Print the SLURM job script and exit.")
@click.option("--dry-run", is_flag=True, help="Print the resolved strategy and file list; gate nothing.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Progress lines off a terminal.")
def gate(strategy: str, fcs: tuple[str, ...], manifest: Path | None, out_dir: Path, membership: bool,
         group: str | None, mfi: str | None, h5ad: bool, events: str | None, stats: bool,
         stats_channels: str | None, allow_uncompensated: bool,
         workers: int | None, worker_processes: bool, in_process: bool,
         scheduler: str | None, scheduler_file: Path | None, slurm: bool, slurm_cores: int,
         slurm_memory: str, slurm_walltime: str, slurm_jobs: int, slurm_processes: int,
         slurm_account: str | None, slurm_queue: str | None, slurm_extra: tuple[str, ...],
         print_job_script: bool, dry_run: bool, log_format: str) -> None:
    """Gate FCS files with a strategy; write tidy populations.parquet (and more) to --out.

    Files that fail are recorded in errors.parquet and the others go on; running the same
    command again after an interruption gates only the files not yet done. The strategy, the
    output folder, the FlowJo group and the MFI channels are checked before any file is gated;
    a second run into the same --out stops at once while the first one holds it.
    """
    quiet_blas()  # before numpy loads: gating does no BLAS work worth spinning threads
    from engine._batch import (
        BatchOptions,
        InputError,
        check_mfi_channels,
        resolve_inputs,
        run_batch,
        slurm_job_script,
    )
    from engine.cli._progress import Progress

    slurm_options = {"cores": slurm_cores, "memory": slurm_memory, "walltime": slurm_walltime,
                     "jobs": slurm_jobs, "processes": slurm_processes, "account": slurm_account,
                     "queue": slurm_queue, "extra": tuple(slurm_extra)}
    if print_job_script:
        from engine._batch import SlurmOptions

        click.echo(slurm_job_script(SlurmOptions(**slurm_options)))
        return
    spec = executor_from_options(in_process, workers, scheduler, scheduler_file, slurm, slurm_options,
                                 processes=worker_processes)
    if not fcs and manifest is None:
        raise click.UsageError("give FCS input with --fcs (files, directories, globs, @lists) or --manifest")
    loaded = load_strategy_option(strategy)
    _check_group(loaded, group)
    check_output_folder(out_dir)
    try:
        inputs = resolve_inputs(fcs, manifest=manifest)
    except InputError as exc:
        raise UsageProblem(str(exc)) from None
    if dry_run:
        _dry_run(loaded, strategy, inputs, group, out_dir)
        return
    channels = tuple(c.strip() for c in mfi.split(",") if c.strip()) if mfi else ()
    try:
        check_mfi_channels(inputs, channels)
    except InputError as exc:
        raise UsageProblem(f"--mfi: {exc}") from None
    stat_channels = tuple(c.strip() for c in stats_channels.split(",") if c.strip()) if (
        stats_channels) else ()
    if stats_channels is not None and not stats:
        raise UsageProblem("--stats-channels: add --stats (the channels are for its table)")
    try:
        check_mfi_channels(inputs, stat_channels)
    except InputError as exc:
        raise UsageProblem(f"--stats-channels: {exc}") from None
    options = BatchOptions(membership=membership, group=group, h5ad=h5ad, mfi=channels,
                           uncompensated="allow" if allow_uncompensated else "error",
                           events=events, stats=stats,  # type: ignore[arg-type]
                           stats_channels=stat_channels)
    settle_heap()  # start-up objects out of the collector's way for the whole batch
    with Progress(len(inputs), label="gating", json_lines=log_format == "json") as progress:
        run = run_batch(loaded, inputs, out_dir=out_dir, executor=spec, options=options,
                        on_result=progress.update)
    if allow_uncompensated and bool(run.files["uncompensated"].any()):
        n = int(run.files["uncompensated"].sum())
        click.echo(f"WARNING: {n} file(s) gated UNCOMPENSATED (--allow-uncompensated); see "
                   f"{run.out_dir / 'run.json'}", err=True)
    ok = int((run.files["status"] == "ok").sum())
    click.echo(f"gated {ok} of {len(inputs)} files ({run.resumed} from an earlier run) on "
               f"{run.executor} -> {run.out_dir / 'populations.parquet'}")
    for row in run.errors.itertuples():
        click.echo(f"FAILED {row.path}: {row.error_type}: {row.message}", err=True)
    if not run.ok:
        raise SystemExit(1)


def _check_group(loaded: Strategy | FlowJoWorkspace, group: str | None) -> None:
    """``--group`` must name a group of a FlowJo workspace."""
    import difflib

    from gating import FlowJoWorkspace

    if group is None:
        return
    if not isinstance(loaded, FlowJoWorkspace):
        raise UsageProblem(f"--group {group!r}: groups belong to FlowJo workspaces, and the "
                           "strategy is not one; drop --group")
    groups = list(loaded.groups)
    if group not in groups:
        close = difflib.get_close_matches(group, groups, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageProblem(f"--group {group!r}: the workspace {loaded.source} has no such group"
                           f"{hint} (groups: {', '.join(map(repr, groups))})")


def _dry_run(loaded: Strategy | FlowJoWorkspace, strategy: str, inputs: Sequence[InputFile],
             group: str | None, out_dir: Path) -> None:
    """What a run would do: the same strategy resolution as the batch, nothing gated."""
    import json

    from engine._batch import BatchOptions, prepare_batch
    from gating import strategy_from_dict

    tasks, texts = prepare_batch(loaded, inputs, out_dir=out_dir, options=BatchOptions(group=group))
    for digest, text in texts.items():
        resolved = strategy_from_dict(json.loads(text))
        click.echo(f"strategy {resolved.name or strategy} (sha256 {digest[:16]}):")
        for pid in resolved.population_order():
            click.echo(f"  {resolved.path(pid)}")
    for task in tasks:
        if task.problem is not None:
            click.echo(f"{task.path}: no strategy ({task.problem.text})")
            continue
        meta = ", ".join(f"{k}={v}" for k, v in task.metadata.items())
        click.echo(f"file {task.path} -> sample {task.name}" + (f" [{meta}]" if meta else "")
                   + f" (strategy {task.strategy_hash[:16]})")
    click.echo(f"{len(inputs)} files")
