"""Gating-ML 2.0 XML: namespaces, :class:`GatingMLError`, safe parsing and element access.

Shared by the reader (:mod:`gating._gatingml._read`) and the writer
(:mod:`gating._gatingml._write`). :func:`parse` reads untrusted bytes with :mod:`defusedxml`
(no DTD, no entity expansion, no XInclude, nothing fetched); :class:`XmlReader` holds the
checked access to attributes, numbers, booleans, children and ``custom_info`` notes that the
reader's document and gate parts build on, each error naming the file, the element and the
gate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from xml.etree.ElementTree import Element, ParseError, tostring

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException, DTDForbidden

from gating._strategy import StrategyError

__all__ = [
    "DATATYPE_NS",
    "GATING_NS",
    "GML",
    "PHENOFLOW_NS",
    "TRANSFORMS_NS",
    "XINCLUDE_NS",
    "GatingMLError",
    "XmlReader",
    "inner_xml",
    "is_element",
    "parse",
    "qname",
    "split_tag",
    "xinclude",
    "xml_attribute",
    "xml_escape",
]

GATING_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"
TRANSFORMS_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/transformations"
DATATYPE_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes"
#: phenoflow's extension namespace (a URN: nothing to fetch).
PHENOFLOW_NS = "urn:phenoflow:gating-ml:1"

_PREFIX = {GATING_NS: "gating", TRANSFORMS_NS: "transforms", DATATYPE_NS: "data-type"}
GML = frozenset(_PREFIX)
_DOUBLE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BOOL = {"true": True, "1": True, "false": False, "0": False}


class GatingMLError(StrategyError):
    """A Gating-ML document is hostile, malformed, or cannot be mapped (or written).

    Parameters
    ----------
    message
        What is wrong.
    source
        The file (or the ``source`` given for bytes).
    gate
        The gate id concerned, when there is one.
    element
        The element concerned, e.g. ``gating:RectangleGate/gating:dimension[2]``.
    """

    def __init__(
        self, message: str, *, source: str = "", gate: str = "", element: str = ""
    ) -> None:
        super().__init__(message, source=source, gate=gate)
        self.element = element
        where = " ".join(
            x
            for x in (source, f"gate {gate!r}" if gate else "", f"<{element}>" if element else "")
            if x
        )
        self.args = (f"{where}: {message}" if where else message,)

    def __reduce__(self):  # keep the keyword arguments across process boundaries
        return (_rebuild, (type(self), self.detail, self.source, self.gate, self.element))


def _rebuild(
    cls: type[GatingMLError], message: str, source: str, gate: str, element: str
) -> GatingMLError:
    return cls(message, source=source, gate=gate, element=element)


def split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, local = tag[1:].split("}", 1)
        return ns, local
    return "", tag


def qname(tag: str) -> str:
    ns, local = split_tag(tag)
    prefix = _PREFIX.get(ns, "phenoflow" if ns == PHENOFLOW_NS else ns)
    return f"{prefix}:{local}" if prefix else local


def is_element(el: Element, ns: str, *names: str) -> bool:
    el_ns, local = split_tag(el.tag)
    return el_ns == ns and local in names


def xml_escape(text: str) -> str:
    """``text`` as XML character data: ``&``, ``<`` and ``>`` written as entities.

    (Here rather than :mod:`xml.sax.saxutils`, whose import pulls in ``urllib.request`` and
    ``http.client``: ~25 ms of every command that reads a strategy.)

    Examples
    --------
    >>> xml_escape("CD4+ & <CD8>")
    'CD4+ &amp; &lt;CD8&gt;'
    """
    return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def xml_attribute(text: str) -> str:
    """``text`` as a quoted XML attribute value: escaped (:func:`xml_escape`), tabs and line
    ends as character references (an attribute's whitespace is normalised on reading), in
    double quotes; in single quotes when it holds a double quote and no single one, else with
    ``&quot;``.

    Examples
    --------
    >>> xml_attribute('a "b"\tc')
    '\'a "b"&#9;c\''
    """
    text = xml_escape(text).replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return '"' + text.replace('"', "&quot;") + '"'


def inner_xml(el: Element, *, skip: Callable[[Element], bool] = lambda _: False) -> str:
    """Content of ``el`` as a string: its text when it holds no element, else its inner XML."""
    kids = [k for k in el if not skip(k)]
    if not kids:
        return ((el.text or "") + "".join(k.tail or "" for k in el)).strip()
    parts = [xml_escape(el.text or "")]
    for k in el:
        parts.append(xml_escape(k.tail or "") if skip(k) else tostring(k, encoding="unicode"))
    return "".join(parts).strip()


#: XInclude's namespace: ElementTree never processes it, but an include is refused outright so
#: that no later step (or a user's tool re-reading the document) could fetch it.
XINCLUDE_NS = "http://www.w3.org/2001/XInclude"


def xinclude(root: Element) -> str | None:
    """The first XInclude element's ``href`` (or ``""``), or ``None`` when there is none."""
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{" + XINCLUDE_NS + "}"):
            return el.get("href", "")
    return None


def parse(data: bytes, source: str) -> Element:
    try:
        root = safe_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden as exc:
        ext = exc.sysid or exc.pubid
        what = f"; its external reference {ext!r} was not fetched" if ext else ""
        raise GatingMLError(
            "refused a document type declaration (DTD): DTDs, entity expansion and external "
            f"references are forbidden in Gating-ML input{what}",
            source=source,
            element=f"!DOCTYPE {exc.name}",
        ) from exc
    except DefusedXmlException as exc:
        raise GatingMLError(f"refused hostile XML: {exc}", source=source) from exc
    except ParseError as exc:
        raise GatingMLError(f"not well-formed XML: {exc}", source=source) from exc
    href = xinclude(root)
    if href is not None:
        raise GatingMLError(
            f"refused an XInclude element (href {href!r} was not fetched): XInclude is forbidden "
            "in Gating-ML input",
            source=source,
        )
    return root


class XmlReader:
    """Checked access to one document's elements; ``fail`` builds a located error."""

    source: str  # the file (or the source given for bytes)
    notes: dict[str, str]  # the ``custom_info`` notes collected so far, by id

    # -- errors and attributes --------------------------------------------------------------
    def fail(self, message: str, where: str, gate: str = "") -> GatingMLError:
        return GatingMLError(message, source=self.source, gate=gate, element=where)

    def attr(
        self, el: Element, name: str, where: str, gate: str = "", *, required: bool = True
    ) -> str | None:
        for key, value in el.attrib.items():
            ns, local = split_tag(key)
            if local == name and (ns in GML or not ns):
                return value
        if required:
            raise self.fail(f"missing required attribute {name!r}", where, gate)
        return None

    def number(self, text: str | None, what: str, where: str, gate: str = "") -> float:
        s = (text or "").strip()
        value = float(s) if _DOUBLE.fullmatch(s) else math.nan
        if not math.isfinite(value):
            raise self.fail(
                f"malformed number {text!r} for {what} (a finite decimal is required)", where, gate
            )
        return value

    def num_attr(self, el: Element, name: str, where: str, gate: str = "") -> float:
        text = self.attr(el, name, where, gate)
        return self.number(text, name, where, gate)

    def opt_num(self, el: Element, name: str, where: str, gate: str = "") -> float | None:
        text = self.attr(el, name, where, gate, required=False)
        return None if text is None else self.number(text, name, where, gate)

    def flag(self, el: Element, name: str, where: str, gate: str = "") -> bool:
        text = self.attr(el, name, where, gate, required=False)
        if text is None:
            return False
        if text.strip() not in _BOOL:
            raise self.fail(f"malformed boolean {text!r} for {name}", where, gate)
        return _BOOL[text.strip()]

    def children(
        self, el: Element, where: str, gate: str, allowed: Mapping[str, tuple[str, ...]]
    ) -> dict[str, list[Element]]:
        """Group children by local name; anything not in ``allowed`` (ns -> names) raises."""
        out: dict[str, list[Element]] = {}
        for child in el:
            ns, local = split_tag(child.tag)
            if local not in allowed.get(ns, ()):
                raise self.fail(f"unexpected element <{qname(child.tag)}>", where, gate)
            out.setdefault(local, []).append(child)
        return out

    def note(self, key: str, text: str, where: str, gate: str = "") -> None:
        if not text:
            return
        if key in self.notes:
            raise self.fail(f"a second custom_info for id {key!r}", where, gate)
        self.notes[key] = text

    def custom_info(self, el: Element, key: str, where: str, gate: str = "") -> list[Element]:
        """Record the note of a ``custom_info``; return its phenoflow extension elements."""
        ext = [k for k in el if split_tag(k.tag)[0] == PHENOFLOW_NS]
        self.note(key, inner_xml(el, skip=lambda k: split_tag(k.tag)[0] == PHENOFLOW_NS), where, gate)
        return ext
