"""``phenoflow convert``: a strategy from any format phenoflow reads into Gating-ML, FlowJo or YAML.

Reads what ``phenoflow gate --strategy`` reads (Gating-ML 2.0, a FlowJo workspace with
``--group`` or ``--sample``, phenoflow YAML/JSON, a preset name) and writes:

* ``--to gatingml`` (``.xml``): valid Gating-ML 2.0 (the official schema; ids made NCNames,
  phenoflow's ids kept in an extension so phenoflow reads back the same strategy);
* ``--to flowjo`` (``.wsp``): a FlowJo 10 workspace whose samples are the ``--fcs`` files
  (required), checked by reading it back and gating every file;
* ``--to yaml`` (``.yaml``/``.yml``): phenoflow's own format.

With ``--fcs`` the channel names are first bound to the files' ``$PnN`` names (markers such as
``CD3`` become ``APC-H7-A``), as other programs find channels only by ``$PnN``. Anything the
target format cannot hold (FlowJo's ``min < x <= max`` rectangles or FlowJo transforms in
Gating-ML, ratios in FlowJo, ...) stops with one line naming the gate and the construct, exit
code 2, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli._errors import UsageProblem, check_output_file, load_strategy_option

__all__ = ["convert"]

_SUFFIXES = {"gatingml": (".xml",), "flowjo": (".wsp",), "yaml": (".yaml", ".yml")}


@click.command()
@click.argument("strategy")
@click.option("--to", "target", required=True, type=click.Choice(sorted(_SUFFIXES)),
              help="The format to write.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The file to write (.xml, .wsp, .yaml).")
@click.option("--fcs", "fcs", multiple=True,
              help="FCS file, folder, glob or @list (repeat): the FlowJo workspace's samples; "
                   "channel names are bound to their $PnN names.")
@click.option("--group", default=None, help="FlowJo workspace input: the group whose gates to take.")
@click.option("--sample", default=None,
              help="FlowJo workspace input: the sample (FCS file name or sample name) whose gates "
                   "to take.")
def convert(strategy: str, target: str, out: Path, fcs: tuple[str, ...], group: str | None,
            sample: str | None) -> None:
    """Convert STRATEGY (Gating-ML, FlowJo workspace, YAML or a preset) to another format.

    \b
    phenoflow convert gates.wsp --group Panel --to gatingml --out gates.xml --fcs data/
    phenoflow convert study_panel --to flowjo --out panel.wsp --fcs data/*.fcs
    phenoflow convert gates.xml --to yaml --out gates.yaml
    """
    check_output_file(out, suffixes=_SUFFIXES[target])
    files = _files(fcs)
    if target == "flowjo" and not files:
        raise UsageProblem("--to flowjo needs the FCS files its samples are (--fcs FILE...)")
    loaded = load_strategy_option(strategy, option="STRATEGY")
    chosen = _one_strategy(loaded, strategy, group=group, sample=sample)

    import gating

    try:
        if target == "flowjo":
            gating.write_flowjo(chosen, out, fcs=files)
        else:
            if files:
                chosen = gating.bind_channels(chosen, [gating.read_fcs(f) for f in files])
            text = (gating.write_gatingml(chosen) if target == "gatingml"
                    else gating.write_strategy_yaml(chosen))
            from engine.runtime import atomic_write_text

            atomic_write_text(out, text)
    except gating.StrategyError as exc:
        raise UsageProblem(f"{strategy} cannot be written as {target}: {exc}") from None
    click.echo(str(out))


def _files(items: tuple[str, ...]) -> list[Path]:
    if not items:
        return []
    from engine._batch import InputError, expand_inputs

    try:
        found = list(expand_inputs(list(items)))
    except InputError as exc:
        raise UsageProblem(str(exc)) from None
    if not found:
        raise UsageProblem(f"--fcs {' '.join(items)}: no FCS files found")
    return found


def _one_strategy(loaded: object, spec: str, *, group: str | None, sample: str | None) -> object:
    """The strategy to convert: the file's, or one workspace sample's or group's."""
    import gating

    if isinstance(loaded, gating.Strategy):
        if group or sample:
            raise UsageProblem(f"--group and --sample choose gates of a FlowJo workspace; {spec} "
                               "is a single strategy")
        return loaded
    ws = loaded
    assert isinstance(ws, gating.FlowJoWorkspace)
    if group and sample:
        raise UsageProblem("give --group or --sample, not both")
    try:
        if group is not None:
            return ws.group_strategy(group)
        if sample is not None:
            return ws.strategy_for(sample)
    except KeyError as exc:
        raise UsageProblem(str(exc).strip("\"'")) from None
    if len(ws.samples) == 1:
        return ws.strategy_for(ws.samples[0].sample_id)
    raise UsageProblem(
        f"{spec} is a FlowJo workspace with {len(ws.samples)} samples; choose the gates with "
        f"--group ({', '.join(ws.groups) or 'none'}) or --sample FILE"
    )
