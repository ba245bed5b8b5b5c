"""Typed errors and warnings for FCS input.

Every error names the file, the segment (HEADER, TEXT, STEXT, DATA, ANALYSIS) and the byte
offset where the problem was found, so a batch log line is enough to find the fault.
"""

from __future__ import annotations

__all__ = [
    "FCSDataLengthError",
    "FCSDatatypeError",
    "FCSError",
    "FCSFormatError",
    "FCSKeywordError",
    "FCSOffsetError",
    "FCSTruncatedError",
    "FCSWarning",
]


class FCSError(ValueError):
    """Base class of every FCS reading error.

    Parameters
    ----------
    message
        What is wrong.
    path
        The file.
    segment
        The FCS segment (``"HEADER"``, ``"TEXT"``, ``"STEXT"``, ``"DATA"``, ``"ANALYSIS"``).
    offset
        Byte offset in the file where the problem lies, when known.
    """

    def __init__(
        self, message: str, *, path: str = "<unknown>", segment: str = "", offset: int | None = None
    ) -> None:
        self.path = str(path)
        self.segment = segment
        self.offset = offset
        self.detail = message
        where = f" [{segment}" + (f" @ byte {offset}" if offset is not None else "") + "]"
        super().__init__(f"{self.path}{where if segment else ''}: {message}")

    def __reduce__(self):  # keep errors intact across process boundaries (Dask workers)
        return (
            _rebuild_error,
            (type(self), self.detail, self.path, self.segment, self.offset),
        )


def _rebuild_error(
    cls: type[FCSError], message: str, path: str, segment: str, offset: int | None
) -> FCSError:
    return cls(message, path=path, segment=segment, offset=offset)


class FCSFormatError(FCSError):
    """The file is not a well-formed FCS file (bad HEADER, bad TEXT, loops in ``$NEXTDATA``)."""


class FCSTruncatedError(FCSError):
    """A segment reaches past the end of the file."""


class FCSOffsetError(FCSError):
    """HEADER and TEXT disagree about where a segment lies."""


class FCSDataLengthError(FCSError):
    """The DATA segment length does not match ``$TOT`` x the event width."""


class FCSDatatypeError(FCSError):
    """Unknown or unsupported ``$DATATYPE``, ``$MODE``, ``$BYTEORD`` or ``$PnB``."""


class FCSKeywordError(FCSError):
    """A required keyword is missing or its value cannot be interpreted."""


class FCSWarning(UserWarning):
    """A known real-world quirk was tolerated (for example an off-by-one DATA end offset)."""
