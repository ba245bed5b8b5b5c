"""Numba kernels that decode FCS DATA: arrays and scalars in, arrays out (house ``njit``)."""

from __future__ import annotations

import numba
import numpy as np

from engine.runtime import njit

__all__ = ["decode_packed_columns", "decode_uint_columns", "lookup_column", "rescale_column"]

@njit(parallel=True)
def decode_uint_columns(
    buf: np.ndarray,
    n_events: int,
    event_bytes: int,
    byte_offsets: np.ndarray,
    widths: np.ndarray,
    significance: np.ndarray,
    masks: np.ndarray,
    out: np.ndarray,
) -> None:
    """Decode byte-aligned unsigned integers of any width and byte order.

    Parameters
    ----------
    buf
        The DATA segment as ``uint8`` (``n_events * event_bytes`` bytes or more).
    n_events, event_bytes
        Number of events and bytes per event.
    byte_offsets
        ``int64[k]``: first byte of each wanted column inside an event.
    widths
        ``int64[k]``: bytes per value of each column (1 to 8).
    significance
        ``int64[k, 8]``: ``significance[c, j]`` is the byte position (within the value) that
        holds the ``j``-th least significant byte of column ``c``.
    masks
        ``uint64[k]``: bit mask applied to each decoded value.
    out
        ``(n_events, k)`` output, any numeric dtype (``uint64`` for raw values, ``float64``
        for events).
    """
    k = byte_offsets.shape[0]
    for e in numba.prange(n_events):
        base = e * event_bytes
        for c in range(k):
            start = base + byte_offsets[c]
            v = np.uint64(0)
            for j in range(widths[c]):
                v |= np.uint64(buf[start + significance[c, j]]) << np.uint64(8 * j)
            out[e, c] = v & masks[c]


@njit(parallel=True)
def decode_packed_columns(
    buf: np.ndarray,
    n_events: int,
    event_bits: int,
    bit_offsets: np.ndarray,
    bit_widths: np.ndarray,
    masks: np.ndarray,
    out: np.ndarray,
) -> None:
    """Decode bit-packed unsigned integers (FCS 2.0/3.0 ``$PnB`` not a multiple of 8).

    The DATA is one continuous bit stream, least significant bit first: bit ``p`` of the stream
    is bit ``p % 8`` (counting from the least significant) of byte ``p // 8``, and the first bit
    of a value is its least significant bit. This is how instruments wrote packed data (and how
    FlowJo reads it): on real 9-bit FCS 2.0 files only this order gives correlated scatter
    channels and reproduces FlowJo's rectangle counts; ``$BYTEORD`` does not apply to it.

    Parameters
    ----------
    buf
        The DATA segment as ``uint8``.
    n_events, event_bits
        Number of events and bits per event.
    bit_offsets, bit_widths
        ``int64[k]``: first bit and width in bits of each wanted column inside an event.
    masks
        ``uint64[k]``: bit mask applied to each decoded value.
    out
        ``(n_events, k)`` output.
    """
    k = bit_offsets.shape[0]
    for e in numba.prange(n_events):
        base = e * event_bits
        for c in range(k):
            pos = base + bit_offsets[c]
            v = np.uint64(0)
            for b in range(bit_widths[c]):
                p = pos + b
                bit = (np.uint64(buf[p >> 3]) >> np.uint64(p & 7)) & np.uint64(1)
                v |= bit << np.uint64(b)
            out[e, c] = v & masks[c]


@njit(parallel=True)
def rescale_column(
    out: np.ndarray, j: int, timestep: float, decades: float, full_range: float,
    log_zero: float, gain: float,
) -> None:
    """In place FCS preprocessing of column ``j``: timestep, log decoding, gain (float64 math).

    ``10**(decades * x / full_range) * log_zero`` uses the C library's ``pow`` per value, which
    is what the reference preprocessed arrays were made with (numpy's vectorised power can
    differ in the last ulp).
    """
    for i in numba.prange(out.shape[0]):
        x = np.float64(out[i, j])
        if timestep != 1.0:
            x = x * timestep
        if decades > 0:
            x = (10.0 ** (decades * x / full_range)) * log_zero
        if gain != 1.0 and gain != 0.0:
            x = x / gain
        out[i, j] = x


@njit(parallel=True)
def lookup_column(out: np.ndarray, j: int, table: np.ndarray) -> None:
    """In place ``out[:, j] = table[out[:, j]]`` for columns holding exact small integers."""
    for i in numba.prange(out.shape[0]):
        out[i, j] = table[np.int64(out[i, j])]
