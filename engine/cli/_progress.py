"""Progress of a batch: a bar on a terminal, plain (or JSON) log lines in HPC job logs."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

__all__ = ["Progress"]


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
    """

    def __init__(
        self, total: int, *, label: str, json_lines: bool = False, every: float = 5.0,
        stream: IO[str] | None = None,
    ) -> None:
        self.total = total
        self.label = label
        self.json_lines = json_lines
        self.every = every
        self.stream = stream or sys.stderr
        self.done = self.failed = self.events = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="file", file=self.stream)

    def _rates(self) -> tuple[float, float]:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.events / elapsed
        left = self.total - self.done
        eta = elapsed / self.done * left if self.done else float("nan")
        return rate, eta

    def update(self, summary: dict[str, Any]) -> None:
        """Record one finished file (a task summary with ``ok`` and ``n_events``)."""
        self.done += 1
        self.failed += 0 if summary.get("ok") else 1
        self.events += int(summary.get("n_events", 0))
        rate, eta = self._rates()
        if self._bar is not None:
            self._bar.set_postfix(events_per_s=f"{rate:.3g}", failed=self.failed, refresh=False)
            self._bar.update(1)
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
