"""Gating-ML 2.0 input and output: :func:`read_gatingml` and :func:`write_gatingml`.

The reader covers the whole Gating-ML 2.0 specification (Spidlen et al., ISAC 2013) and maps
it onto the neutral :class:`~gating._strategy.Strategy` model:

* ``RectangleGate`` (``min``/``max`` optional per dimension), ``PolygonGate``,
  ``EllipsoidGate``, ``QuadrantGate`` (dividers with any number of split values, quadrants by
  ``position``/``location``) and ``BooleanGate`` (``and``/``or``/``not`` over gate
  references, each optionally ``use-as-complement``); ``parent_id`` on any gate;
* dimensions on an FCS channel (``fcs-dimension``), on a ratio (``new-dimension`` naming an
  ``fratio`` transformation), with a ``compensation-ref`` (``uncompensated``, ``FCS`` or a
  ``spectrumMatrix`` id) and an optional ``transformation-ref``; names are kept as written
  (a name may be a fluorochrome of the referenced matrix; :func:`gating.compile_plan`
  resolves that);
* ``transformation`` elements (``flin``, ``flog``, ``fasinh``, ``logicle``, ``hyperlog`` and
  ``fratio``) with their ``boundMin``/``boundMax``, and ``spectrumMatrix`` elements (square or
  not, ``matrix-inverted-already`` or not);
* ``custom_info`` on the document, a gate, a transformation or a matrix becomes
  :attr:`Strategy.notes` under ``""``, the gate id, the transformation id or the matrix id:
  its content as a string (plain text when it holds only text, else the inner XML), with
  surrounding white space stripped.

Gating-ML has no display names, so phenoflow keeps what it needs for exact round trips in its
own namespace (:data:`PHENOFLOW_NS`) inside ``custom_info`` elements, which the schema allows
to hold anything: ``<phenoflow:strategy name=...>`` and ``<phenoflow:note ref=...>`` (notes on
quadrants, which cannot carry ``custom_info``) in the document's ``custom_info``, and
``<phenoflow:name ref=...>`` (the gate's or a quadrant's display name) in a gate's. Other
readers ignore them.

Input is parsed with :mod:`defusedxml`: a document type declaration (and with it entity
expansion, external entities and external DTDs) is refused with :class:`GatingMLError`, and
nothing is ever fetched. Every error names the file, the element and, where there is one, the
gate id.
"""

from __future__ import annotations

import os
from pathlib import Path

from gating._gatingml._read import Reader
from gating._gatingml._xml import (
    DATATYPE_NS,
    GATING_NS,
    PHENOFLOW_NS,
    TRANSFORMS_NS,
    GatingMLError,
    parse,
)
from gating._gatingml._xml import inner_xml as inner_xml  # re-exported for gating._gatingml._write
from gating._strategy import Strategy

__all__ = [
    "DATATYPE_NS",
    "GATING_NS",
    "PHENOFLOW_NS",
    "TRANSFORMS_NS",
    "GatingMLError",
    "read_gatingml",
    "write_gatingml",
]


def read_gatingml(
    path_or_bytes: str | os.PathLike[str] | bytes, *, source: str | None = None
) -> Strategy:
    """Read a Gating-ML 2.0 document into a :class:`~gating._strategy.Strategy`.

    Parameters
    ----------
    path_or_bytes
        A file path, or the document itself as ``bytes``.
    source
        The name used in errors and as :attr:`Strategy.source`; defaults to the path, or
        ``"<bytes>"``.

    Returns
    -------
    Strategy
        The validated strategy, gates in document order.

    Raises
    ------
    GatingMLError
        Hostile input (any DTD: entity expansion, external entities, external DTDs), XML that
        is not well formed, malformed numbers or booleans, missing required attributes,
        unknown references, unknown gate types, unexpected elements inside a gate, or a
        strategy that fails validation. The message names the file, element and gate.
    """
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        data = bytes(path_or_bytes)
        src = source if source is not None else "<bytes>"
    else:
        data = Path(path_or_bytes).read_bytes()
        src = source if source is not None else str(path_or_bytes)
    return Reader(src).read(parse(data, src))


def write_gatingml(strategy: Strategy, path: str | os.PathLike[str] | None = None) -> str:
    """Write a strategy as a Gating-ML 2.0 document.

    Numbers are written with ``repr`` so they read back exactly; display names, the strategy
    name and notes without a Gating-ML home go into phenoflow ``custom_info`` extensions, so
    ``read_gatingml(write_gatingml(s))`` reproduces ``s`` (notes up to surrounding white
    space; ``source`` comes from the reader's argument).

    Parameters
    ----------
    strategy
        The strategy.
    path
        Also write the document (UTF-8) to this file when given.

    Returns
    -------
    str
        The document.

    Raises
    ------
    GatingMLError
        A transform Gating-ML 2.0 cannot express (FlowJo ``biex``/``log``/``linear``), a
        one-dimensional ellipsoid, a quadrant without positions, a ratio and a transform
        sharing an id, a non-finite number, or text with characters XML 1.0 cannot hold.
    """
    from gating._gatingml._write import render

    text = render(strategy)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
