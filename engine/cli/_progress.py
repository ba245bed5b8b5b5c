"""Progress of the CLI's loops: a bar on a terminal, plain (or JSON) log lines in HPC job logs.

:class:`Progress` is the one progress display of the command line: ``phenoflow gate``,
``study`` and ``demo`` report gated files through it, and :func:`track` wraps the short loops
(``phenoflow info``) in a transient bar that stays silent off a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from engine._batch import TaskOutcome

__all__ = ["Progress", "track"]

T = TypeVar("T")


class Progress:
    """Files done, failures, events/s and ETA.

    Parameters
    ----------
    total
        Files to process.
    label
        What is being done ("gating").
    json_lines
        Off a terminal, write JSON objects instead of text lines.
    every
        Seconds between log lines off a terminal.
    stream
        Where to write (standard error by default).
    quiet
        A bare bar that disappears when done on a terminal, nothing off one (for short loops
        whose results are printed anyway).
    """

    def __init__(
        self, total: int, *, label: str, json_lines: bool = False, every: float = 5.0,
        stream: IO[str] | None = None, quiet: bool = False,
    ) -> None:
        self.total = total
        self.label = label
        self.json_lines = json_lines
        self.every = every
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.done = self.failed = self.events = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="file", file=self.stream,
                             leave=not quiet)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rates(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.events / elapsed
        left = self.total - self.done
        eta = elapsed / self.done * left if self.done else float("nan")
        return rate, eta

    def update(self, outcome: TaskOutcome) -> None:
        """Record one finished file.

        Parameters
        ----------
        outcome
            The batch task's outcome (``ok`` and ``n_events`` are used).
        """
        self.step(ok=outcome.ok, events=outcome.n_events)

    def step(self, *, ok: bool = True, events: int = 0) -> None:
        """Record one finished item.

        Parameters
        ----------
        ok
            Whether it succeeded.
        events
            Events it processed.
        """
        self.done += 1
        self.failed += 0 if ok else 1
        self.events += int(events)
        rate, eta = self._rates()
        if self._bar is not None:
            if not self.quiet:
                self._bar.set_postfix(events_per_s=f"{rate:.3g}", failed=self.failed, refresh=False)
            self._bar.update(1)
            return
        if self.quiet:
            return
        now = time.monotonic()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            self._line(rate, eta)

    def _line(self, rate: float, eta: float) -> None:
        if self.json_lines:
            record = {"event": "progress", "task": self.label, "done": self.done, "total": self.total,
                      "failed": self.failed, "events_per_s": round(rate, 1),
                      "eta_s": None if eta != eta else round(eta, 1)}
            self.stream.write(json.dumps(record) + "\n")
        else:
            eta_text = "?" if eta != eta else time.strftime("%H:%M:%S", time.gmtime(eta))
            self.stream.write(
                f"phenoflow {self.label}: {self.done}/{self.total} files, {self.failed} failed, "
                f"{rate:,.0f} events/s, ETA {eta_text}\n"
            )
        self.stream.flush()

    def close(self) -> None:
        """Finish the bar (or nothing off a terminal)."""
        if self._bar is not None:
            self._bar.close()


def track(items: Sequence[T], *, label: str, stream: IO[str] | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a quiet :class:`Progress` (a bar on a terminal only).

    Parameters
    ----------
    items
        What to iterate over (its length is the bar's total).
    label
        The bar's label.
    stream
        Where the bar goes (standard error by default).

    Yields
    ------
    object
        The items, in order.
    """
    with Progress(len(items), label=label, stream=stream, quiet=True) as progress:
        for item in items:
            yield item
            progress.step()
