"""Engine: batch execution, statistics, the study pipeline and the command-line interface."""

__all__: list[str] = []
