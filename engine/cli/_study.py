"""``phenoflow study``: run a study manifest end to end (gating, RNA, statistics, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.cli._gate import executor_from_options
from engine.cli._gate import gate as _gate_command
from engine.runtime import format_p

__all__ = ["executor_options", "executor_spec", "headline", "run_with_progress", "study"]

#: ``phenoflow gate``'s executor options, shared (the same click Option objects).
EXECUTOR_PARAMS = (
    "workers", "in_process", "scheduler", "scheduler_file", "slurm", "slurm_cores",
    "slurm_memory", "slurm_walltime", "slurm_jobs", "slurm_processes", "slurm_account",
    "slurm_queue", "slurm_extra", "log_format",
)


def executor_options(command: click.Command) -> click.Command:
    """Give ``command`` the executor options of ``phenoflow gate`` (same names, same help)."""
    command.params.extend(p for p in _gate_command.params if p.name in EXECUTOR_PARAMS)
    return command


def executor_spec(options: dict[str, Any], *, default: str = "local"):
    """The :class:`~engine._batch._executor.ExecutorSpec` chosen by the executor options.

    With ``default="inprocess"`` and no executor option given, the run stays in this process.
    """
    from engine._batch import ExecutorSpec

    chosen = any(options.get(k) for k in ("workers", "in_process", "scheduler", "scheduler_file",
                                          "slurm"))
    if default == "inprocess" and not chosen:
        return ExecutorSpec(kind="inprocess")
    slurm = {k.removeprefix("slurm_"): options[k] for k in EXECUTOR_PARAMS
             if k.startswith("slurm_")}
    slurm["extra"] = tuple(slurm["extra"])
    return executor_from_options(options["in_process"], options["workers"], options["scheduler"],
                     options["scheduler_file"], options["slurm"], slurm)


def run_with_progress(manifest: Path, out_dir: Path, spec, *, json_lines: bool):
    """Run the study with a progress bar (terminal) or progress lines (logs) for the gating."""
    from engine._study import load_study, run_study
    from engine.cli._progress import Progress

    study = load_study(manifest)
    progress = Progress(len(study.fcs), label="gating", json_lines=json_lines)
    try:
        return run_study(study, out_dir=out_dir, executor=spec, on_result=progress.update)
    finally:
        progress.close()


def headline(run) -> list[str]:
    """A few lines of results for the terminal: clinical, flow, gene-set tests, correlations."""
    lines = []
    study = run.study
    for name, label in (("clinical_tests", "clinical"), ("population_tests", "flow"),
                        ("geneset_tests", "skin RNA gene sets")):
        if name not in run.tables:
            continue
        t = run.table(name)
        if name == "population_tests":
            keys = {f"{p.name} (% of {p.parent})" for p in study.populations
                    if p.name in study.key_populations}
            t = t[t["variable"].isin(keys)]
        lines.append(f"{label}:")
        for r in t.itertuples(index=False):
            lines.append(f"  {r.variable}: {r.pre_mean:.3g} -> {r.post_mean:.3g} (mean, n = {r.n}), "
                         f"P = {format_p(r.pvalue)}, padj = {format_p(r.padj)}")
    if "correlations" in run.tables:
        lines.append("correlations:")
        for r in run.table("correlations").itertuples(index=False):
            lines.append(f"  {r.x} vs {r.y} ({r.method}, {r.timepoint}): r = {r.r:.2f} "
                         f"[{r.ci_low:.2f}, {r.ci_high:.2f}], P = {format_p(r.pvalue)}, n = {r.n}")
    return lines


@click.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (tables/, figures/, report.html, study.json, gating/).")
@click.option("--quiet", is_flag=True, help="Print only the report path.")
def study(manifest: Path, out_dir: Path, quiet: bool, **options: Any) -> None:
    """Run a study MANIFEST (YAML): gate, normalise, test, correlate, write the report.

    Re-running with the same inputs reuses the finished gating results in OUT/gating.
    """
    spec = executor_spec(options)
    # a StudyError (a manifest mistake, found before any gating) reaches PhenoflowGroup: one
    # line, exit 2
    run = run_with_progress(manifest, out_dir, spec, json_lines=options["log_format"] == "json")
    if not quiet:
        click.echo(f"gated {int((run.gating.files['status'] == 'ok').sum())} of "
                   f"{len(run.gating.files)} FCS files ({run.gating.resumed} from an earlier run)")
        for line in headline(run):
            click.echo(line)
    for row in run.gating.errors.itertuples():
        click.echo(f"FAILED {row.path}: {row.error_type}: {row.message}", err=True)
    click.echo(f"report: {run.report.resolve()}")
    if not run.ok:
        raise SystemExit(1)


executor_options(study)
