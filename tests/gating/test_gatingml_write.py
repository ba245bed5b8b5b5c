"""The XML text helpers the Gating-ML and FlowJo writers use (our own, not xml.sax.saxutils)."""

from __future__ import annotations

import random
from xml.etree.ElementTree import fromstring
from xml.sax.saxutils import escape, quoteattr

from gating._gatingml import xml_attribute, xml_escape

_ALPHABET = "ab <>&\"'\t\n\r;#x1\u00b5"


def _strings(n: int) -> list[str]:
    rng = random.Random(7)
    return ["", '"', "'", "\"'", *("".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(12)))
                                   for _ in range(n))]


def test_escape_and_attribute_equal_the_standard_librarys_writing() -> None:
    whitespace = {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
    for text in _strings(2000):
        assert xml_escape(text) == escape(text)
        assert xml_attribute(text) == quoteattr(text, whitespace)


def test_values_read_back_unchanged() -> None:
    for text in _strings(500):
        element = fromstring(f"<e a={xml_attribute(text)}>{xml_escape(text)}</e>")
        assert element.get("a") == text
        assert (element.text or "") == text.replace("\r\n", "\n").replace("\r", "\n")
