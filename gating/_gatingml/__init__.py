"""Gating-ML 2.0: reading (with hostile-XML guards) and writing strategies."""

from gating._gatingml._api import (
    DATATYPE_NS,
    GATING_NS,
    PHENOFLOW_NS,
    TRANSFORMS_NS,
    GatingMLError,
    read_gatingml,
    write_gatingml,
)
from gating._gatingml._xml import xinclude, xml_attribute, xml_escape

__all__ = ["DATATYPE_NS", "GATING_NS", "PHENOFLOW_NS", "TRANSFORMS_NS", "GatingMLError", "read_gatingml", "write_gatingml", "xinclude",
           "xml_attribute", "xml_escape"]
