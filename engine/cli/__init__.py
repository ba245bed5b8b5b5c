"""The command line: one module per command group, a thin layer over the public APIs.

It owns what only a terminal needs: progress bars, exit codes and one-line error messages.
"""

from engine.cli._main import main

__all__ = ["main", "run"]


def run() -> None:
    """The program's entry point (the ``phenoflow`` script, ``python -m engine.cli``): run the
    command line from ``sys.argv`` and end the process with its exit status.

    Unlike calling :func:`main` (a click group: it raises :class:`SystemExit` for its caller
    to handle), this ends the process as soon as the command is done, without the
    interpreter's teardown (:func:`engine.cli._process.leave_now`: about 0.1-0.2 s of freeing
    the imported libraries one object at a time); while a thread or a child process still
    runs it exits normally instead.
    """
    from engine.cli._process import leave_now

    try:
        main()
    except SystemExit as done:
        leave_now(done.code)
        raise
