"""The master's progress: one line that updates itself on a terminal, or a log
line now and then elsewhere (CI logs, nohup.out).

The line reads, for example::

    jobtree: 1,204 of ≥ 1,900 done · 8 running · 620 ready · 68 waiting · 0 failed
             · 151/s · 0:08 · about 0:05 left

(on one line).

The total is shown as "≥ N" while the tree runs, since running targets may
still add children; the estimate of what is left appears only once the total
has not changed for a while, and goes when it changes again.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Callable

#: seconds between redraws of the line on a terminal (at least)
DRAW_EVERY = 1.0
#: seconds between progress lines in a log that is not a terminal
LOG_EVERY = float(os.environ.get("JOBTREE_PROGRESS_SECONDS") or 60.0)
#: seconds the total must stay the same before an estimate is shown
SETTLED_AFTER = 10.0
#: weight of the newest rate in the running average of targets per second
_SMOOTHING = 0.3


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """What the master shows of its progress.

    Args:
        stream: where the line goes (the master's stderr).
        live: whether to keep one line up to date (a terminal), rather than
            logging a line every LOG_EVERY seconds.
        clock: the time source.
    """

    def __init__(self, stream: IO[str] | None = None, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(live) if live is not None else is_terminal(self.stream)
        self._clock = clock
        self.started = self._now()
        self._shown = ""  # the line on the terminal now ("" if none)
        self._last = -1e9  # when the line was last drawn or logged
        self._total = -1
        self._total_since = self.started
        self._rate: float | None = None
        self._sample: tuple[float, int] | None = None  # (time, done) of the last rate sample
        self.cost = 0.0  # seconds the last count of the index took

    def _now(self) -> float:
        return self._clock()

    def due(self) -> bool:
        """Whether it is time for a new line: the count it needs reads the index,
        so it waits at least 20 times as long as the last count took."""
        every = DRAW_EVERY if self.live else LOG_EVERY
        return self._now() - self._last >= max(every, 20 * self.cost)

    def update(self, done: int, running: int, ready: int, waiting: int, failed: int) -> str:
        """Shows the counts (a new line on a terminal, else a log line); returns the text."""
        now = self._now()
        self._last = now
        total = done + running + ready + waiting + failed
        if total != self._total:
            self._total, self._total_since = total, now
        if self._sample is not None and now > self._sample[0]:
            rate = (done - self._sample[1]) / (now - self._sample[0])
            self._rate = rate if self._rate is None else (
                _SMOOTHING * rate + (1 - _SMOOTHING) * self._rate)
        self._sample = (now, done)
        parts = [f"{done:,} of ≥ {total:,} done", f"{running:,} running", f"{ready:,} ready",
                 f"{waiting:,} waiting", f"{failed:,} failed"]
        if self._rate is not None:
            rate = self._rate
            parts.append(f"{rate:,.0f}/s" if rate >= 10 else
                         f"{rate:.1f}/s" if rate >= 1 else f"{rate:.2f}/s")
        parts.append(_clock(now - self.started))
        left = total - done - failed
        if (self._rate and self._rate > 0 and left > 0
                and now - self._total_since >= SETTLED_AFTER):
            parts.append(f"about {_clock(left / self._rate)} left")
        text = " · ".join(parts)
        if self.live:
            self._draw(text)
        else:
            logging.getLogger("jobtree.master").info("progress: %s", text)
        return text

    def _draw(self, text: str) -> None:
        line = f"jobtree: {text}"
        if line == self._shown:
            return  # nothing changed: no redraw, no flicker
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()
        self._shown = line

    def clear(self) -> None:
        """Takes the line off the terminal (before other output, and at the end)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def redraw(self) -> None:
        """Puts the line back after other output."""
        if self._shown:
            self.stream.write(f"\r{self._shown}\x1b[K")
            self.stream.flush()

    def finish(self) -> None:
        """Clears the line for good (the master's last log lines follow)."""
        self.clear()
        self._shown = ""


class ProgressHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A log handler that writes around the progress line: it clears the line,
    writes the record, and puts the line back."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(progress.stream)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.clear()
        super().emit(record)
        self.progress.redraw()


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal that understands carriage return and
    clear-to-end-of-line."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
