"""Usage mistakes: one line on stderr and exit code 2, before any heavy work.

Every command checks its arguments first (strategy readable, output writable, channels present)
and reports a mistake as :class:`UsageProblem`: ``Error: <what is wrong>; <the fix>``, exit 2,
no traceback. Typed phenoflow errors about the inputs (a strategy, an FCS file, a manifest, a
count matrix, a locked or unwritable output folder) that reach the command line are reported
the same way by :class:`PhenoflowGroup`; ``phenoflow --debug`` shows their full traceback
instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

__all__ = [
    "PhenoflowGroup",
    "UsageProblem",
    "check_output_file",
    "check_output_folder",
    "debugging",
    "load_strategy_option",
    "one_line",
    "usage_error_types",
]


class UsageProblem(click.ClickException):
    """A usage mistake: ``Error: <message>`` on one line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(message: object) -> str:
    """``message`` with its lines joined by ``"; "`` (a log line or terminal line each)."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


def debugging() -> bool:
    """Whether ``phenoflow --debug`` was given (full tracebacks instead of one line)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().params.get("debug"))


def usage_error_types() -> tuple[type[BaseException], ...]:
    """The typed phenoflow errors that mean the inputs or arguments are wrong.

    Only packages already imported are asked (an error of a package never imported cannot
    have been raised), so the command line's start-up stays cheap.
    """
    found: list[type[BaseException]] = []
    wanted = (
        ("gating", ("StrategyError", "FCSError")),
        ("expression", ("CountsError", "TrendFitError")),
        ("engine._batch", ("InputError",)),
        ("engine._study", ("StudyError",)),
        ("engine.runtime", ("OutputDirError", "OutputLockedError")),
    )
    for module, names in wanted:
        mod = sys.modules.get(module)
        for name in names:
            cls = getattr(mod, name, None) if mod is not None else None
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    return tuple(found)


class PhenoflowGroup(click.Group):
    """A click group that reports typed input errors of its commands as :class:`UsageProblem`.

    It also notes whether it runs as the process's own command line (arguments from
    ``sys.argv``: ``phenoflow ...``, ``python -m engine.cli ...``) or is invoked by a caller
    with explicit arguments (tests, scripts): only the former may change process-wide
    interpreter settings (:mod:`engine.cli._process`).
    """

    whole_process: bool = False

    def main(self, args: Sequence[str] | None = None, *rest: Any, **options: Any) -> Any:
        self.whole_process = args is None
        return super().main(args, *rest, **options)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:
            if ctx.params.get("debug") or not isinstance(exc, usage_error_types()):
                raise
            raise UsageProblem(str(exc)) from None


def load_strategy_option(spec: str, *, option: str = "--strategy") -> Any:
    """Read a strategy given on the command line, or stop with one line naming the mistake.

    Parameters
    ----------
    spec
        A strategy file or a preset name.
    option
        The option's name, for messages.

    Returns
    -------
    Strategy or FlowJoWorkspace
        The loaded strategy.
    """
    from gating import load_strategy, presets

    path = Path(spec)
    if not path.exists() and spec not in presets():
        raise UsageProblem(
            f"{option} {spec}: no such file, and not a preset name; give a Gating-ML (.xml), "
            f"FlowJo (.wsp) or YAML strategy file, or one of the presets {', '.join(presets())}"
        )
    if path.is_dir():
        raise UsageProblem(f"{option} {spec} is a folder; give the strategy file itself")
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                head = fh.read(6)
        except OSError as exc:
            raise UsageProblem(f"{option} {spec} cannot be read ({exc.strerror})") from None
        if head.startswith(b"FCS") and head[3:6].replace(b".", b"").isdigit():
            raise UsageProblem(
                f"{option} {spec} is an FCS data file, not a gating strategy; give the FCS files "
                f"with --fcs and a Gating-ML (.xml), FlowJo (.wsp) or YAML strategy with {option}"
            )
    try:
        return load_strategy(spec)
    except (ValueError, OSError) as exc:  # StrategyError is a ValueError; so is a decode error
        if debugging():
            raise
        kind = "" if type(exc).__name__ in ("StrategyError",) else f"{type(exc).__name__}: "
        raise UsageProblem(f"{option} {spec} is not a readable strategy: {kind}{exc}") from None


def check_output_folder(path: Path, *, option: str = "--out") -> None:
    """Stop with one line when ``path`` cannot be created or written to (nothing is created)."""
    from engine.runtime import OutputDirError, check_output_dir

    try:
        check_output_dir(path, what=option)
    except OutputDirError as exc:
        if debugging():
            raise
        raise UsageProblem(str(exc)) from None


def check_output_file(path: Path, *, suffixes: Sequence[str], option: str = "--out") -> None:
    """Stop with one line when ``path`` has a suffix not in ``suffixes``, is a folder, is not
    writable, or its folder does not exist or cannot be written to (nothing is created)."""
    if path.suffix.lower() not in suffixes:
        raise UsageProblem(
            f"{option} {path}: unsupported output suffix {path.suffix or '(none)'!r}; use one of "
            f"{', '.join(suffixes)}"
        )
    if path.is_dir():
        raise UsageProblem(f"{option} {path} is a folder; give a file name ending in "
                           f"{', '.join(suffixes)}")
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as exc:
            raise UsageProblem(f"{option} {path} is not writable ({exc.strerror}); choose another "
                               "file") from None
    folder = path.parent
    if not folder.is_dir():
        raise UsageProblem(f"{option} {path}: the folder {folder} does not exist; create it first")
    check_output_folder(folder, option=f"{option} {path}: the folder")
