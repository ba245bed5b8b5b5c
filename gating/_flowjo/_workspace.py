"""FlowJo workspaces (10.x ``.wsp``, 7.x PC ``.wsp``, 8/9 Mac ``.xml``) as strategies.

:func:`read_flowjo` parses a workspace once (``defusedxml``: no entities, no network; a plain
``<!DOCTYPE Workspace>`` as FlowJo 9 writes is let through, any other DTD refused) into a
:class:`FlowJoWorkspace`: its samples (FlowJo sample id, name, FCS file and URI, the
compensation matrix, one scale transform per parameter, FlowJo's own recorded counts), its
groups, and the gate trees of samples and group templates. :meth:`FlowJoWorkspace.strategy_for`
and :meth:`FlowJoWorkspace.group_strategy` turn a tree into a strategy. Population ids are
FlowJo paths (``/Lymphocytes/Singlets/CD3+``), display names the FlowJo gate names, so
``Strategy.path(id) == id``.

Versions: FlowJo 10.1+ names gate axes ``<data-type:fcs-dimension>``, FlowJo 7 and 10.0
``<data-type:parameter>`` (both read). FlowJo 7 writes no ``<Transformations>``: the display
scales come from the FCS ``$PnE`` keywords it copied (see :func:`_keyword_scales`). FlowJo 8/9
Mac workspaces have their own layout, and FlowJo 9 gates on its 256-bin display rather than
on the events (both in :mod:`gating._flowjo._mac`). Strategies from a
workspace carry ``channel_matching="flowjo"``: FlowJo 10 writes ``v-450_50-B-A`` for the FCS
channel ``v-450/50-B-A``, and :func:`gating.compile_plan` maps such names explicitly
(reported in ``Plan.channel_map``, an error when two channels could be meant).

Where FlowJo stores coordinates (established against FlowJo's counts)
---------------------------------------------------------------------
* Rectangle bounds and polygon vertices are in **raw channel units**, compensated when the
  parameter is a compensated one (``Comp-CD4 PE-Cy7 FLR-A``), whatever the axis scale: the
  rectangles of the biex and asinh workspaces have bounds like ``127585.76`` on axes whose scale
  values run from 0 to 1 (or 0 to 256), and counting raw events gives FlowJo's counts exactly
  (50605, 50559 and 50699 of 200000; quadrants 49671/50596/50330/49403). FlowJo counts
  ``min < x <= max`` (the rectangles and quadrants of the real LabKey workspaces equal FlowJo
  only so, on integer channel data with events on the bounds), so FlowJo rectangles and
  quadrants carry ``inclusive="max"``; Gating-ML and YAML gates keep ``min <= x < max``.
  A rectangle is the same set whichever monotone scale it is drawn on, so rectangles (and the
  quadrant gates FlowJo writes as four open-sided rectangles) keep raw bounds and no transform.
* A polygon's edges are straight on the **display scale** (the parameter's transform), not in
  raw units, so its dimensions carry the parameter's transform and its vertices are mapped
  through it (identical sets for linear scales; different, and FlowJo's, for biex or log).
* Ellipses are the exception: foci and edge points are stored in **display pixels**, the
  transform's scale times its ``length`` (256 unless the transform says otherwise). The four
  edge points are FlowJo's handles: the two ends of the major axis, then the two ends of the
  minor axis. The ellipse is built from the four handles alone, in display space: centre
  their mean, semi-axes half of each pair's distance, the first pair's direction the major
  axis; covariance ``a^2 u u' + b^2 v v'`` with ``distance_square = 1``, rescaled from pixels
  to scale units (FlowJo derives the foci from the handles; they are not used). The 51-event
  workspace gives 51; the FlowJo 7.6.5 LabKey ellipses agree within 0.6%.
  FlowJo itself evaluates polygons and ellipses on 256-bin data, so their counts may differ
  from the exact geometry by events within a bin of an edge.

Compensation: the sample's ``transforms:spilloverMatrix`` becomes a :class:`Matrix` (rows the
spilling parameters, columns the detectors; non-square spectral matrices are unmixed by least
squares). A gate parameter named ``prefix + name + suffix`` (or a ``userProvidedCompInfix``) is
channel ``name`` compensated with that matrix; a ``Comp-`` parameter of a sample without a
matrix uses the file's own spillover (``"FCS"``); anything else is uncompensated.
Gates with ``eventsInside="0"`` are the complement of their shape: the shape becomes a helper
population ``<id>#inside`` and the FlowJo population a Boolean ``not`` of it.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException, DTDForbidden

from gating._flowjo._convert import Context, group_context, tree_strategy
from gating._flowjo._mac import is_mac_workspace, mac_workspace
from gating._flowjo._xml import (
    DISPLAY_LENGTH,
    FlowJoError,
    FlowJoSample,
    WsNode,
    attr_of,
    kid,
    kids,
    local,
    sample_node,
    workspace_tree,
)
from gating._gatingml import xinclude
from gating._strategy import Strategy
from gating._transforms import FlowJoLog, Transform

__all__ = ["FlowJoError", "FlowJoSample", "FlowJoWorkspace", "read_flowjo"]


@dataclasses.dataclass(frozen=True)
class FlowJoWorkspace:
    """A parsed FlowJo 10 workspace; see :func:`read_flowjo`.

    Attributes
    ----------
    source
        The workspace file (or the ``source`` given).
    version
        ``flowJoVersion`` of the writer.
    samples
        The samples, in document order.
    groups
        Group name to the names of its samples.
    group_nodes
        Internal: each group's parsed template tree.
    """

    source: str
    version: str
    samples: tuple[FlowJoSample, ...]
    groups: Mapping[str, tuple[str, ...]]
    group_nodes: Mapping[str, tuple[WsNode, ...]] = dataclasses.field(repr=False)

    def sample(self, name_or_fcs_file: str) -> FlowJoSample:
        """The sample whose FCS file (from its DataSet ``uri``) has this name, else the sample
        node with this name, else the sample with this id.

        The URI is where FlowJo (10.2 and later) records the sample's file; a node name is
        only a label the user may have changed, so the file name wins over it.

        Raises
        ------
        KeyError
            No sample (or several) match.
        """
        for field in ("fcs_file", "name", "sample_id"):
            hits = [s for s in self.samples if getattr(s, field) == name_or_fcs_file]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise KeyError(
                    f"{self.source}: {len(hits)} samples have {field} {name_or_fcs_file!r}"
                )
        raise KeyError(
            f"{self.source}: no sample {name_or_fcs_file!r}; samples: {[s.name for s in self.samples]}"
        )

    def strategy_for(self, sample_name_or_fcs_file: str) -> Strategy:
        """The gating strategy of one sample (its own gate tree, matrix and transforms).

        Parameters
        ----------
        sample_name_or_fcs_file
            Sample name, FCS file name, or FlowJo sample id.

        Returns
        -------
        Strategy
            Population ids are FlowJo paths.
        """
        s = self.sample(sample_name_or_fcs_file)
        ctx = Context(
            self.source,
            f"sample {s.name!r}",
            s.compensation,
            s.comp_names,
            s.transforms,
            s.lengths,
            s.bad_transforms,
        )
        return tree_strategy(s.nodes, ctx, name=s.name, version=self.version)

    def group_strategy(self, group_name: str) -> Strategy:
        """The template gate tree of a group, with its samples' common matrix and transforms.

        Parameters
        ----------
        group_name
            A key of :attr:`groups`.

        Returns
        -------
        Strategy
            The group's template; a parameter whose transform differs between the group's
            samples (or a compensated one whose matrix differs) fails where a gate needs it.
        """
        if group_name not in self.group_nodes:
            raise KeyError(f"{self.source}: no group {group_name!r}; groups: {list(self.groups)}")
        members = [self.sample(n) for n in self.groups.get(group_name, ())]
        ctx = group_context(self.source, group_name, members)
        return tree_strategy(self.group_nodes[group_name], ctx, name=group_name, version=self.version)


def read_flowjo(path: str | os.PathLike[str], *, source: str | None = None) -> FlowJoWorkspace:
    """Parse a FlowJo 10 workspace.

    Parameters
    ----------
    path
        The ``.wsp`` file.
    source
        Name used in errors and as :attr:`Strategy.source` (default: ``path``).

    Returns
    -------
    FlowJoWorkspace
        Samples, groups and gate trees.

    Raises
    ------
    FlowJoError
        Not well-formed or forbidden XML (DTDs, entities), an unsupported gate type (the error
        names its path), or a malformed gate, matrix or Boolean node.
    """
    src = str(path) if source is None else source
    try:
        parser = _PlainDoctypeParser(target=ET.TreeBuilder())
        root = SafeET.parse(os.fspath(path), parser=parser).getroot()
    except DTDForbidden as exc:
        ext = exc.sysid or exc.pubid
        raise FlowJoError(
            "not a readable workspace: refused a document type declaration with "
            + (f"an external reference {ext!r} (not fetched)" if ext else "an internal subset")
            + "; only a plain <!DOCTYPE Workspace> (FlowJo 9) is accepted",
            source=src,
        ) from None
    except (ET.ParseError, DefusedXmlException) as exc:
        raise FlowJoError(f"not a readable workspace: {exc}", source=src) from None
    href = xinclude(root)
    if href is not None:
        raise FlowJoError(
            f"refused an XInclude element (href {href!r} was not fetched): XInclude is forbidden "
            "in workspaces", source=src)
    if local(root.tag) != "Workspace":
        raise FlowJoError(f"root element is <{local(root.tag)}>, not <Workspace>", source=src)
    version = attr_of(root, "flowJoVersion") or ""
    if is_mac_workspace(root):
        mac_samples, mac_groups, mac_nodes = mac_workspace(root, src)
        return FlowJoWorkspace(src, version, mac_samples, mac_groups, mac_nodes)
    samples = tuple(sample_node(el, src) for el in kids(kid(root, "SampleList"), "Sample"))
    by_id = {s.sample_id: s.name for s in samples}
    groups: dict[str, tuple[str, ...]] = {}
    group_nodes: dict[str, tuple[WsNode, ...]] = {}
    for node in kids(kid(root, "Groups"), "GroupNode"):
        name = attr_of(node, "name") or ""
        refs = kids(kid(kid(node, "Group"), "SampleRefs"), "SampleRef")
        groups[name] = tuple(by_id[r] for i in refs if (r := attr_of(i, "sampleID") or "") in by_id)
        group_nodes[name] = tuple(workspace_tree(kid(node, "Subpopulations"), (), src))
    if _major(version) < 10:
        samples = tuple(_keyword_scales(s) for s in samples)
    return FlowJoWorkspace(src, version, samples, groups, group_nodes)


class _PlainDoctypeParser(SafeET.DefusedXMLParser):
    """defusedxml's parser (entities and external references forbidden) that lets through a
    plain ``<!DOCTYPE name>`` (FlowJo 9 writes ``<!DOCTYPE Workspace>``) and refuses any
    DOCTYPE with an external identifier or an internal subset."""

    def __init__(self, *, target: ET.TreeBuilder) -> None:
        super().__init__(target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True)

    def defused_start_doctype_decl(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool
    ) -> None:
        if sysid or pubid or has_internal_subset:
            raise DTDForbidden(name, sysid, pubid)


def _major(version: str) -> int:
    """The major version of a ``flowJoVersion`` (10 when it cannot be read)."""
    head = version.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else 10


def _keyword_scales(sample: FlowJoSample) -> FlowJoSample:
    """A FlowJo 7 sample with the display scales FlowJo 7 used, from the FCS keywords.

    FlowJo 7 writes no ``<Transformations>``: it shows a parameter the file says is
    log-amplified (``$PnE`` = ``decades, offset`` with ``decades > 0``) on that log scale, 256
    pixels for the ``decades``, which is FlowJo 10's ``transforms:log`` with the same offset
    and decades (FlowJo 10.0 writes exactly that for these files). Other parameters stay on a
    linear display: polygons on them are straight in raw units, and an ellipse on them is
    refused (its pixels cannot be placed).
    """
    if sample.transforms or sample.bad_transforms:
        return sample
    keywords = {k.upper(): v for k, v in sample.keywords.items()}
    transforms: dict[str, Transform] = {}
    lengths: dict[str, float] = {}
    for n in range(1, 1 + int(keywords.get("$PAR", "0").strip() or 0)):
        name = keywords.get(f"$P{n}N", "").strip()
        parts = [p.strip() for p in keywords.get(f"$P{n}E", "").split(",")]
        try:
            decades, offset = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            continue
        if name and decades > 0:
            transforms[name] = FlowJoLog(offset=offset if offset > 0 else 1.0, decades=decades)
            lengths[name] = DISPLAY_LENGTH
    return dataclasses.replace(sample, transforms=transforms, lengths=lengths)
