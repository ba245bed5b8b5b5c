"""phenoflow's own readable gating-strategy format (YAML or JSON), version 1.

A strategy file is a YAML (or JSON) mapping; :func:`read_strategy_yaml` parses it into a
:class:`~gating._strategy.Strategy`, :func:`write_strategy_yaml` writes any strategy the format
can express back, and :func:`preset` loads the files shipped in ``gating/presets/``. Gate
coordinates are in the *transformed* space of each dimension (after compensation and the
dimension's transform). Example (``gating/presets/study_panel.yaml`` is a complete one)::

    phenoflow-strategy: 1            # required; the format version
    name: my-panel                   # optional display name
    description: free text           # optional (kept as the strategy's notes)
    compensation: spillover          # default for every dimension: none | spillover | <matrix>
    matrices:                        # optional named compensation / spectrum matrices
      lab: {fluorochromes: [FITC, PE], detectors: [FITC-A, PE-A],
            values: [[1, 0.2], [0.01, 1]], inverted: false}
    transforms:
      scatter: {type: linear, T: 262144, A: 0}
      fluor: {type: logicle, T: 262144, W: 0.5, M: 4.5, A: 0, bound_min: -0.1}
    dimensions:
      FSC-A: {transform: scatter, compensation: none}
      CD3: {transform: fluor}                       # a $PnN name or a unique $PnS marker
      CD4: {transform: fluor, channel: BV605-A}     # key is a label, channel the $PnN
      CD4/CD8: {ratio: [BV605-A, PerCP-Cy5.5-A], A: 1, B: 0, C: 0}
    gates:
      - name: Lymphocytes
        polygon: {dims: [FSC-A, SSC-A], vertices: [[0.1, 0], [0.5, 0], [0.5, 0.2]]}
      - {name: CD3+, parent: Lymphocytes, range: {dim: CD3, min: 0.45}}
      - {name: Tc17, parent: CD8+, boolean: "CCR6+ and CXCR3+ and not CCR4+"}

Top level
---------
Keys: ``phenoflow-strategy`` (required, must be ``1``), ``name``, ``description``,
``compensation``, ``matrices``, ``transforms``, ``dimensions`` and ``gates``; anything else is an
error. ``compensation`` is ``none`` (raw values), ``spillover`` (the file's ``$SPILLOVER``) or the
name of a matrix; it defaults to ``none`` and applies to every dimension that does not set its
own, so scatter and time dimensions of a compensated strategy say ``compensation: none``.

``matrices``: name -> ``{fluorochromes, detectors, values, inverted}``; ``values`` is
fluorochromes x detectors (the spillover of each fluorochrome into each detector; a non-square
spectrum matrix is unmixed by least squares), or detectors x fluorochromes when ``inverted:
true`` (the values are already the compensation matrix). Names ``none``, ``spillover``,
``uncompensated`` and ``FCS`` are reserved.

``transforms``: name -> ``{type, parameters..., bound_min, bound_max}`` with the parameters
users know: ``linear`` (Gating-ML ``flin``: ``T``, ``A``), ``log`` (``flog``: ``T``, ``M``),
``asinh`` (``T``, ``M``, ``A``), ``logicle`` and ``hyperlog`` (``T``, ``W``, ``M``, ``A``),
``flowjo-linear`` (``minRange``, ``maxRange``), ``flowjo-log`` (``offset``, ``decades``),
``flowjo-biex`` (``maxRange``, ``width``, ``pos``, ``neg``, optional ``channels`` and
``interpolate``). ``A`` defaults to 0; every other parameter is required. ``bound_min`` /
``bound_max`` clamp the transformed value.

``dimensions``: name -> ``{transform, compensation, channel}`` (all optional; an empty entry
means raw, default-compensated values of the channel named by the key). ``channel`` gives the
``$PnN`` when the key is a label. A ratio dimension (Gating-ML ``fratio``,
``A * (numerator - B) / (denominator - C)``) is ``{ratio: [numerator, denominator], A, B, C,
bound_min, bound_max, transform, compensation}`` whose inputs are channel names (not dimension
keys). Gates may only use declared dimensions.

Gates
-----
``gates`` is a list; each entry has a ``name``, an optional ``parent``, an optional
``description`` and exactly one shape:

* ``range: {dim, min, max}``: ``min <= x < max``; either side may be left out.
* ``rectangle: {<dim>: [min, max], ...}``: the same per dimension; ``null`` leaves a side open.
* ``polygon: {dims: [x, y], vertices: [[x, y], ...]}``: at least 3 vertices; points on an edge
  are inside.
* ``ellipse: {dims: [...], center: [...], covariance: [[...]], distance_square: 1.0}``:
  Mahalanobis distance ``<= distance_square`` in any number of dimensions (``covariance``
  symmetric positive definite). For 2-D, ``radii: [a, b]`` and ``angle`` (degrees,
  counter-clockwise from the x axis to the first radius) may replace ``covariance`` and
  ``distance_square``.
* ``quadrant: {x, y, x_split, y_split, names: {"+,+": ..., "-,+": ..., "-,-": ..., "+,-": ...}}``
  (``"x sign,y sign"``; ``+`` is ``>= split``); or the general form ``quadrant: {dividers:
  {<dim>: [split, ...]}, cells: {<name>: {<dim>: k, ...}}}`` where ``k`` counts the splits at or
  below the cell (``0`` = below the first split; ``-``/``+`` for a single split) and a
  dimension left out of a cell is unconstrained. Each named cell is a population, a child of
  the quadrant gate's ``parent``; the quadrant gate's own name is not a population.
* ``boolean: "CCR6+ and CXCR3+ and not CCR4+"``: ``and``, ``or``, ``not`` (any case) and
  parentheses over population references; quote names that contain spaces, parentheses or
  keywords (``"CD4 T" and not 'or'``). A lone reference (``boolean: CD3+``) copies a population.

References: a ``parent`` is a population name when that name is unique in the file, else a path
suffix such as ``CD3+/CD8+`` or a full path ``/Lymphocytes/.../CD8+``; gates may be listed in
any order. A Boolean reference is first a sibling (same parent as the Boolean gate), then a
full path, then a unique path suffix or name.

Populations get their full path as id (``/Lymphocytes/Singlets/Live/CD3+/CD8+/Tc17``) and their
name as display name, so one name may repeat under different parents (never under one parent).
A Boolean expression becomes one :class:`~gating._strategy.BooleanGate` when it is a single
``and``/``or`` of (possibly negated) references after ``not`` is pushed inwards (De Morgan);
each nested group becomes an extra Boolean population named ``<name> [term k]`` beside the
gate, marked in :attr:`Strategy.notes` (the model has no hidden gates, so these appear in
counts). The writer folds them back into the expression.

Errors are :class:`StrategyFormatError` naming the file, the gate (``gates[i]`` and its name)
and the field. Files are read with PyYAML's safe loader (JSON with :mod:`json`); duplicate keys
are errors, and so are documents whose anchors and aliases expand past a million nodes,
recursive aliases and very deep nesting (:mod:`engine.runtime`). Numbers may be written as
strings (YAML 1.1 reads ``1e5`` as text) but must be finite.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from engine.runtime import load_yaml_bounded
from gating._strategy import Strategy
from gating._yaml._format import VERSION as VERSION  # re-exported: the format version
from gating._yaml._format import StrategyFormatError
from gating._yaml._read import Reader
from gating._yaml._write import StrategyDumper, Writer

__all__ = [
    "StrategyFormatError",
    "preset",
    "preset_path",
    "presets",
    "read_strategy_yaml",
    "write_strategy_yaml",
]

logger = logging.getLogger(__name__)

_SUFFIXES = (".yaml", ".yml", ".json")


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _is_path(value: str) -> bool:
    if "\n" in value or not value.strip():
        return False
    if value.lower().endswith(_SUFFIXES):
        return True
    try:
        return Path(value).is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def _check_yaml_keys(node: yaml.Node | None, source: str) -> None:
    """Reject duplicate mapping keys (``safe_load`` silently keeps the last one)."""
    stack, seen = [node], set()
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            keys: set[tuple[str, str]] = set()
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    if (key.tag, key.value) in keys:
                        raise StrategyFormatError(
                            f"duplicate key {key.value!r} at line {key.start_mark.line + 1}",
                            source=source)
                    keys.add((key.tag, key.value))
                stack += [key, value]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value


def _load(text: str, source: str, as_json: bool | None) -> Any:
    if as_json or (as_json is None and text.lstrip().startswith("{")):

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in items:
                if key in out:
                    raise StrategyFormatError(f"duplicate key {key!r}", source=source)
                out[key] = value
            return out

        try:
            return json.loads(text, object_pairs_hook=pairs, parse_constant=lambda c: c)
        except RecursionError:
            raise StrategyFormatError("refused: the JSON is nested too deeply",
                                      source=source) from None
        except json.JSONDecodeError as exc:
            if as_json:
                raise StrategyFormatError(
                    f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                    source=source) from None
    return load_yaml_bounded(
        text, lambda message: StrategyFormatError(message, source=source),
        check=lambda node: _check_yaml_keys(node, source))


def read_strategy_yaml(path_or_text: str | os.PathLike[str], *,
                       source: str | None = None) -> Strategy:
    """Read a phenoflow strategy file (YAML or JSON, format version 1).

    Parameters
    ----------
    path_or_text
        A path (a :class:`~pathlib.Path`, or a one-line string ending in ``.yaml``, ``.yml``
        or ``.json`` or naming an existing file) or the document text itself.
    source
        Name used in errors and as :attr:`Strategy.source` (default: the path, or
        ``<text>``).

    Returns
    -------
    Strategy
        The validated strategy; population ids are full paths.

    Raises
    ------
    StrategyFormatError
        The document is malformed or inconsistent (the message names file, gate and field).
    OSError
        The file cannot be read.
    """
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and _is_path(path_or_text)
    ):
        path = Path(path_or_text)
        text = path.read_text(encoding="utf-8")
        name, as_json = source or str(path), (path.suffix.lower() == ".json") or None
    elif isinstance(path_or_text, str):
        text, name, as_json = path_or_text, source or "<text>", None
    else:
        raise TypeError(f"expected a path or text, got {type(path_or_text).__name__}")
    strategy = Reader(name).strategy(_load(text, name, as_json))
    logger.debug("read strategy %r from %s: %d gates", strategy.name, name, len(strategy.gates))
    return strategy


def write_strategy_yaml(strategy: Strategy) -> str:
    """Write a strategy as a phenoflow YAML document (format version 1).

    Reading the text back with :func:`read_strategy_yaml` (``source=strategy.source``) gives a
    strategy equal to one read from this format. A strategy from another format comes back
    with full paths as ids, dimension names as dimension keys and canonical quadrant
    locations: the same populations and gates.

    Parameters
    ----------
    strategy
        Any strategy the format can express.

    Returns
    -------
    str
        The YAML text.

    Raises
    ------
    StrategyFormatError
        The strategy uses something the format cannot express (population names with ``/``,
        two populations with one name under one parent, non-finite numbers, notes on quadrant
        cells, a ratio used with two compensations...). The text is re-read before it is
        returned, so anything the reader would reject is reported here.
    """
    data = Writer(strategy).document()
    text = "# phenoflow gating strategy, format version 1 (documented in gating/_yaml.py)\n"
    text += yaml.dump(data, Dumper=StrategyDumper, sort_keys=False, default_flow_style=None,
                      allow_unicode=True, width=100)
    try:
        read_strategy_yaml(text, source=strategy.source or "<written>")
    except StrategyFormatError as exc:
        raise StrategyFormatError(f"cannot be written in the phenoflow format: {exc.detail}",
                                  source=strategy.source, gate=exc.gate,
                                  field=exc.field) from exc
    return text


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------


def _preset_dir() -> Any:
    return importlib.resources.files("gating").joinpath("presets")


def presets() -> list[str]:
    """Names of the strategies shipped in ``gating/presets/`` (file names without suffix).

    Returns
    -------
    list of str
        Sorted preset names, e.g. ``["study_panel"]``.
    """
    return sorted(p.name.rsplit(".", 1)[0] for p in _preset_dir().iterdir()
                  if p.name.lower().endswith(_SUFFIXES))


def preset_path(name: str) -> Path:
    """Path of a shipped preset.

    Parameters
    ----------
    name
        A name from :func:`presets` (a ``.yaml``/``.yml``/``.json`` suffix is allowed).

    Returns
    -------
    Path
        The file (inside the installed ``gating`` package).

    Raises
    ------
    ValueError
        No preset of that name.
    """
    stem = name[: -len(Path(name).suffix)] if name.lower().endswith(_SUFFIXES) else name
    if stem in presets():
        for suffix in _SUFFIXES:
            entry = _preset_dir().joinpath(stem + suffix)
            if entry.is_file():
                return Path(str(entry))
    raise ValueError(f"unknown preset {name!r}; available: {', '.join(presets()) or 'none'}")


def preset(name: str) -> Strategy:
    """Read a shipped preset, e.g. ``preset("study_panel")``.

    Parameters
    ----------
    name
        A name from :func:`presets`.

    Returns
    -------
    Strategy
        The parsed strategy.
    """
    return read_strategy_yaml(preset_path(name))
