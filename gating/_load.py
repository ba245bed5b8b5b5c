"""One entry point for strategy files: Gating-ML 2.0, FlowJo 10 workspaces, phenoflow YAML/JSON."""

from __future__ import annotations

import os
import re
from pathlib import Path

from gating._flowjo import FlowJoWorkspace, read_flowjo
from gating._gatingml import read_gatingml
from gating._strategy import Strategy, StrategyError
from gating._yaml import preset_path, presets, read_strategy_yaml

__all__ = ["load_strategy", "resolve_strategy", "strategy_format"]

_SNIFF_BYTES = 4096


def strategy_format(path: str | os.PathLike[str]) -> str:
    """``"gatingml"``, ``"flowjo"`` or ``"yaml"`` (JSON included), from the file's content.

    Parameters
    ----------
    path
        A strategy file.

    Returns
    -------
    str
        The detected format.
    """
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<"):
        root = _ROOT.search(text)
        name = root.group(1).decode("ascii", "replace") if root else ""
        if name == "Gating-ML":
            return "gatingml"
        if name == "Workspace" or p.suffix.lower() in (".wsp", ".wspt"):
            return "flowjo"
        if re.search(rb"<!DOCTYPE", text, re.IGNORECASE):
            raise StrategyError(
                "refused a document type declaration (DTD): DTDs, entity expansion and external "
                "references are forbidden in strategy files (nothing was fetched)",
                source=str(p),
            )
        raise StrategyError(
            f"an XML file whose root element <{name}> is neither Gating-ML 2.0 nor a FlowJo "
            "workspace",
            source=str(p),
        )
    return "yaml"


# the first element that is not a declaration, processing instruction or comment
_ROOT = re.compile(rb"<(?![?!])(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")


def load_strategy(path: str | os.PathLike[str]) -> Strategy | FlowJoWorkspace:
    """Read a strategy file of any supported format (detected from its content).

    Parameters
    ----------
    path
        A Gating-ML 2.0 document, a FlowJo 10 workspace (``.wsp``), a phenoflow YAML/JSON
        strategy, or the name of a shipped preset (e.g. ``"study_panel"``).

    Returns
    -------
    Strategy or FlowJoWorkspace
        A workspace holds one strategy per sample and group; :func:`gating.compile_plan`
        picks the one of the sample's FCS file name.
    """
    p = Path(path)
    if not p.exists() and str(path) in presets():
        p = preset_path(str(path))
    fmt = strategy_format(p)
    if fmt == "gatingml":
        return read_gatingml(p)
    if fmt == "flowjo":
        return read_flowjo(p)
    return read_strategy_yaml(p)


def resolve_strategy(
    strategy: Strategy | FlowJoWorkspace, sample_file: str, *, group: str | None = None
) -> Strategy:
    """The strategy for one sample: itself, or a workspace's sample (or group) strategy.

    Parameters
    ----------
    strategy
        A strategy, or a FlowJo workspace.
    sample_file
        The sample's FCS file name (matched against the workspace's samples).
    group
        Use this workspace group's template instead of the sample's own gates.

    Returns
    -------
    Strategy
        The strategy to compile.
    """
    if isinstance(strategy, Strategy):
        return strategy
    if group is not None:
        return strategy.group_strategy(group)
    try:
        return strategy.strategy_for(sample_file)
    except KeyError as exc:
        raise StrategyError(
            f"the workspace has no sample for {sample_file!r}; pass a group ({exc})",
            source=strategy.source,
        ) from None
