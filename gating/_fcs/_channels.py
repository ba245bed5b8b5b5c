"""Finding a channel by ``$PnN`` name, ``$PnS`` marker or index: the one rule for every sample
type (FCS files, and DataFrame/AnnData/FlowKit samples through :mod:`gating._interop`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["channel_lookups", "find_channel"]


def _unique(labels: Sequence[str]) -> dict[str, int]:
    seen: dict[str, int] = {}
    repeated: set[str] = set()
    for i, label in enumerate(labels):
        if not label:
            continue
        if label in seen:
            repeated.add(label)
        seen.setdefault(label, i)
    return {k: v for k, v in seen.items() if k not in repeated}


def channel_lookups(names: Sequence[str], markers: Sequence[str]) -> tuple[dict[str, int], ...]:
    """Unique ``$PnN``, lower-cased ``$PnN``, ``$PnS`` and lower-cased ``$PnS`` -> column.

    A label shared by two channels is in no lookup (it is ambiguous, never guessed).

    Parameters
    ----------
    names, markers
        ``$PnN`` and ``$PnS`` per column (empty markers are skipped).

    Returns
    -------
    tuple of dict
        The four lookups, in the order :func:`find_channel` tries them.

    Examples
    --------
    >>> channel_lookups(["FSC-A", "FL1-A"], ["", "CD3"])[2]
    {'CD3': 1}
    """
    names = [str(n) for n in names]
    markers = [str(m) for m in markers]
    return (_unique(names), _unique([n.lower() for n in names]), _unique(markers),
            _unique([m.lower() for m in markers]))


def find_channel(
    channel: str | int, *, lookups: tuple[dict[str, int], ...], names: Sequence[str],
    markers: Sequence[str], where: object,
) -> int:
    """0-based column of ``channel``: an index, a ``$PnN`` name (exact, then case-insensitive)
    or a unique ``$PnS`` marker (exact, then case-insensitive).

    Parameters
    ----------
    channel
        What the user gave.
    lookups
        :func:`channel_lookups` of the sample.
    names, markers
        The sample's channels, listed in the error.
    where
        The sample (its file), for the error.

    Returns
    -------
    int
        The column.

    Raises
    ------
    KeyError
        No channel, or several, match; the message lists the channels.

    Examples
    --------
    >>> lookups = channel_lookups(["FSC-A", "FL1-A"], ["", "CD3"])
    >>> find_channel("cd3", lookups=lookups, names=["FSC-A", "FL1-A"], markers=["", "CD3"],
    ...              where="s.fcs")
    1
    """
    n_channels = len(names)
    if isinstance(channel, int | np.integer):
        if not 0 <= int(channel) < n_channels:
            raise KeyError(f"{where}: channel index {channel} out of range")
        return int(channel)
    key = str(channel)
    for lookup, probe in zip(lookups, (key, key.lower(), key, key.lower()), strict=True):
        hit = lookup.get(probe)
        if hit is not None:
            return hit
    raise KeyError(
        f"{where}: no unique channel {channel!r}; channels are "
        + ", ".join(f"{n} ({m})" if m else str(n) for n, m in zip(names, markers, strict=True))
    )
