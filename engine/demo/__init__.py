"""Deterministic synthetic version of the scleromyxedema IVIG study, with known effects.

:func:`make_demo_study` writes PBMC FCS files (with spillover and a matching gating preset),
skin-biopsy RNA counts, the clinical table, a ``truth.json`` of everything planted and a
``study.yaml`` listing, so analysis code can be checked against what was planted.
"""

from engine.demo._study import DemoStudy, make_demo_study

__all__ = ["DemoStudy", "make_demo_study"]
