"""Pairing the populations of two strategies, and their per-event agreement.

Populations pair up by an explicit mapping (:func:`parse_mapping`, :func:`read_mapping` read
one from the command line or a CSV file), then by unique full path, then by unique name; a
matched pair's counts and ``F1``/``Jaccard`` come from the two membership vectors.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from engine._compare._tables import percent
from gating import GatingResult, Strategy

__all__ = ["Matching", "match_populations", "parse_mapping", "population_agreement", "read_mapping"]


@dataclasses.dataclass(frozen=True)
class _Pair:
    id_a: str
    id_b: str
    path_a: str
    path_b: str
    match: str


@dataclasses.dataclass(frozen=True)
class Matching:
    pairs: tuple[_Pair, ...]
    unmatched_a: tuple[tuple[str, str], ...]  # (id, path)
    unmatched_b: tuple[tuple[str, str], ...]


def _unique(values: Mapping[str, str]) -> dict[str, str]:
    """Invert ``{id: value}`` for the values held by exactly one id."""
    seen = Counter(values.values())
    return {v: k for k, v in values.items() if seen[v] == 1}


def _lookup(key: str, paths: Mapping[str, str], *, side: str) -> str:
    """The population id that ``key`` names: a unique full path, else an id."""
    by_path = _unique(paths)
    if key in by_path:
        return by_path[key]
    if key in paths:
        return key
    raise ValueError(f"mapping: {key!r} is neither a population path nor an id in strategy {side}")


def match_populations(
    a: Strategy, b: Strategy, mapping: Mapping[str, str], labels: Sequence[str]
) -> Matching:
    """Pair populations: the explicit mapping, then unique full paths, then unique names."""
    order_a, order_b = a.population_order(), b.population_order()
    path_a = {p: a.path(p) for p in order_a}
    path_b = {p: b.path(p) for p in order_b}
    found: dict[str, tuple[str, str]] = {}  # id in A -> (id in B, how)
    for key, value in mapping.items():
        partner = _lookup(value, path_b, side=labels[1])
        found[_lookup(key, path_a, side=labels[0])] = (partner, "mapping")
    used_b = {pid for pid, _ in found.values()}
    for how, names_a, names_b in (
        ("path", path_a, path_b),
        ("name", {p: a.display_name(p) for p in order_a}, {p: b.display_name(p) for p in order_b}),
    ):
        unique_a, unique_b = _unique(names_a), _unique(names_b)
        for name, pid in unique_a.items():
            partner = unique_b.get(name)
            if pid not in found and partner is not None and partner not in used_b:
                found[pid] = (partner, how)
                used_b.add(partner)
    pairs = tuple(
        _Pair(pid, found[pid][0], path_a[pid], path_b[found[pid][0]], found[pid][1])
        for pid in order_a
        if pid in found
    )
    return Matching(
        pairs=pairs,
        unmatched_a=tuple((p, path_a[p]) for p in order_a if p not in found),
        unmatched_b=tuple((p, path_b[p]) for p in order_b if p not in used_b),
    )


def population_agreement(found: Matching, ra: GatingResult, rb: GatingResult) -> list[dict[str, object]]:
    """Counts (from the counts tables) and per-event agreement of every matched pair."""
    assert ra.membership is not None and rb.membership is not None
    counts_a = dict(zip(ra.counts["id"], ra.counts["count"], strict=True))
    counts_b = dict(zip(rb.counts["id"], rb.counts["count"], strict=True))
    about = {"sample": ra.sample, "n_events": ra.n_events}
    return [
        {**about, **_pair_agreement(pair, ra.membership, rb.membership, counts_a, counts_b)}
        for pair in found.pairs
    ]


def _pair_agreement(
    pair: _Pair, members_a: pd.DataFrame, members_b: pd.DataFrame,
    counts_a: Mapping[str, int], counts_b: Mapping[str, int],
) -> dict[str, object]:
    in_a = members_a[pair.id_a].to_numpy(dtype=bool)
    in_b = members_b[pair.id_b].to_numpy(dtype=bool)
    both = int(np.count_nonzero(in_a & in_b))
    n_a, n_b = int(np.count_nonzero(in_a)), int(np.count_nonzero(in_b))
    union = n_a + n_b - both
    count_a, count_b = int(counts_a[pair.id_a]), int(counts_b[pair.id_b])
    diff = count_b - count_a
    return {
        "population_a": pair.path_a,
        "population_b": pair.path_b,
        "match": pair.match,
        "count_a": count_a,
        "count_b": count_b,
        "difference": diff,
        "percent_difference": percent(diff, count_a),
        "in_both": both,
        "only_a": n_a - both,
        "only_b": n_b - both,
        "f1": 2.0 * both / (n_a + n_b) if n_a + n_b else 1.0,
        "jaccard": both / union if union else 1.0,
    }


# ---- mappings from the command line ----------------------------------------------------------
def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``A_POP=B_POP`` strings as a mapping.

    Parameters
    ----------
    items
        Each ``A=B``; where ``=`` occurs several times, the split is at the one ``=/``
        (B given as a full path), else the item is ambiguous.

    Returns
    -------
    dict
        ``{A: B}``.

    Raises
    ------
    ValueError
        An item without ``=``, with an empty side, or ambiguous.
    """
    out: dict[str, str] = {}
    for item in items:
        if item.count("=") == 1:
            a, b = item.split("=")
        elif item.count("=/") == 1:
            a, b = item.split("=/")
            b = "/" + b
        else:
            raise ValueError(
                f"--map {item!r}: expected A_POP=B_POP (use --map-file for names with '=')"
            )
        if not a or not b:
            raise ValueError(f"--map {item!r}: both populations must be given")
        out[a] = b
    return out


def read_mapping(path: str | os.PathLike[str]) -> dict[str, str]:
    """A mapping from a CSV file: a header row, then one A population, B population per row.

    Parameters
    ----------
    path
        The CSV file (UTF-8); blank rows are skipped, further columns ignored.

    Returns
    -------
    dict
        ``{A: B}``.

    Raises
    ------
    ValueError
        A row with fewer than two non-empty cells.
    """
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        rows = ((reader.line_num, r) for r in reader if any(c.strip() for c in r))
        next(rows, None)  # the header
        for line, row in rows:
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path}: line {line} needs an A and a B population")
            out[row[0].strip()] = row[1].strip()
    return out
