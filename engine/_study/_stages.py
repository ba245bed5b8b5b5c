"""What each stage of a study run hands to the next: small frozen records, no loose dicts.

:func:`engine._study._run.run_study` runs the stages in order (gating, clinical, flow,
expression, statistics, figures and report); each returns one of these records, and the
report (:func:`engine._study._report.build_report`) reads them by attribute.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ClinicalResult", "CorrelationResult", "ExpressionResult", "FlowResult", "ReportFiles"]


@dataclasses.dataclass(frozen=True)
class ClinicalResult:
    """The clinical stage.

    Attributes
    ----------
    table
        The clinical table restricted to the study's subjects (subject and time as text).
    tests
        Paired tests of the outcomes (:func:`engine.paired_tests`).
    """

    table: pd.DataFrame
    tests: pd.DataFrame


@dataclasses.dataclass(frozen=True)
class FlowResult:
    """The flow stage: population frequencies and their paired tests.

    Attributes
    ----------
    frequencies
        :func:`engine._study._run.population_frequencies` of the batch's counts.
    tests
        Paired tests of every population x denominator ``variable``.
    """

    frequencies: pd.DataFrame
    tests: pd.DataFrame


@dataclasses.dataclass(frozen=True)
class ExpressionResult:
    """The skin RNA stage: size factors, differential expression and gene-set scores.

    Attributes
    ----------
    size_factors
        One row per biopsy sample: ``sample``, subject, time, ``size_factor``.
    de
        The differential-expression table (one row per gene, ``gene`` a column).
    de_params
        The DE fit's parameters (for the run record).
    scores
        Gene-set scores, long: ``sample``, subject, time, ``gene_set``, ``n_genes``,
        ``method``, ``score``.
    tests
        Paired tests of the gene-set scores.
    sets
        Gene-set name to its genes, as read.
    layer, layer_note
        The AnnData layer the scores were computed on, and what it is.
    adata
        The AnnData (counts, ``normalized``, ``log2p1`` and the score layer), for figures.
    n_samples, n_genes
        Its shape.
    """

    size_factors: pd.DataFrame
    de: pd.DataFrame
    de_params: Mapping[str, Any]
    scores: pd.DataFrame
    tests: pd.DataFrame
    sets: Mapping[str, list[str]]
    layer: str
    layer_note: str
    adata: Any
    n_samples: int
    n_genes: int


@dataclasses.dataclass(frozen=True)
class CorrelationResult:
    """The manifest's correlations and the points behind each panel.

    Attributes
    ----------
    table
        One row per correlation (empty when the manifest asks for none).
    points
        One row per point of each correlation: ``panel``, subject, time, ``x``, ``y``,
        ``x_value``, ``y_value``.
    """

    table: pd.DataFrame
    points: pd.DataFrame


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """What the report stage wrote.

    Attributes
    ----------
    html, markdown
        ``report.html`` and ``report.md``.
    figures
        Every PNG written (an SVG lies beside each), in report order.
    """

    html: Path
    markdown: Path
    figures: tuple[Path, ...]
