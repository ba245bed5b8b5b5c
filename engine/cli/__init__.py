"""The command line: one module per command group, a thin layer over the public APIs.

It owns what only a terminal needs: progress bars, exit codes and one-line error messages.
"""

from engine.cli._main import main

__all__ = ["main"]
