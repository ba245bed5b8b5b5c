"""Gating: FCS input/output, compensation, transforms and compiled gating strategies."""

from gating._errors import (
    FCSDataLengthError,
    FCSDatatypeError,
    FCSError,
    FCSFormatError,
    FCSKeywordError,
    FCSOffsetError,
    FCSTruncatedError,
    FCSWarning,
)
from gating._fcs import FCSData, read_fcs
from gating._fcs_write import write_fcs

__all__ = [
    "FCSData",
    "FCSDataLengthError",
    "FCSDatatypeError",
    "FCSError",
    "FCSFormatError",
    "FCSKeywordError",
    "FCSOffsetError",
    "FCSTruncatedError",
    "FCSWarning",
    "read_fcs",
    "write_fcs",
]
