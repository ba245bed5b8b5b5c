"""``python -m engine.cli``: the ``phenoflow`` command."""

from engine.cli import run

run()
