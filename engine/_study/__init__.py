"""The study pipeline: manifest, run (gating, expression, statistics), tables, figures, report."""

from engine._study._manifest import (
    Correlation,
    ExpressionSettings,
    FcsSample,
    Population,
    Study,
    StudyError,
    load_study,
)
from engine._study._run import StudyRun, run_study

__all__ = ["Correlation", "ExpressionSettings", "FcsSample", "Population", "Study", "StudyError", "StudyRun", "load_study", "run_study"]
