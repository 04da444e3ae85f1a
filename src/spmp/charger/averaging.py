"""Averaging windows of the Port Status object (26242): mean voltage and current over Length seconds.

Time is the device's (simulated) time. A window covers ``[start, start + length)``; a sample taken at
``t`` belongs to the window that contains ``t``. The first sample at or after the window's end
closes it: :meth:`AveragingWindow.add` then returns the finished window (its end, the arithmetic
means of its samples and how many there were) and the sample opens the next window. Windows stay
aligned on ``start + k × length``: after a gap longer than a window (a device that was busy, a
controller that did not answer), the empty windows in between are skipped, not reported.

The mean is the plain mean of the samples, not a time-weighted integral: the sampler takes samples
at a fixed period of device time, for which the two are the same, and it is what an operator can
recompute from the samples by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["AveragingWindow", "WindowResult"]


@dataclass(frozen=True, slots=True)
class WindowResult:
    """A finished window: when it ended, the means (None when no sample had that value) and the count."""

    start: datetime
    end: datetime
    voltage_v: float | None
    current_a: float | None
    samples: int


class AveragingWindow:
    """The running window of one port; ``length_s`` is the Port Status Length resource (seconds)."""

    def __init__(self, length_s: int, start: datetime) -> None:
        if length_s < 1:
            raise ValueError(f"window length must be at least 1 s, got {length_s}")
        self.length_s = length_s
        self.start = start
        self._sum_v = 0.0
        self._n_v = 0
        self._sum_i = 0.0
        self._n_i = 0
        self._samples = 0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.length_s)

    @property
    def samples(self) -> int:
        """Samples in the running (unfinished) window."""
        return self._samples

    def restart(self, start: datetime, length_s: int | None = None) -> None:
        """Drop the running window's samples and start a new one at ``start`` (Length was written)."""
        if length_s is not None:
            if length_s < 1:
                raise ValueError(f"window length must be at least 1 s, got {length_s}")
            self.length_s = length_s
        self.start = start
        self._clear()

    def _clear(self) -> None:
        self._sum_v = self._sum_i = 0.0
        self._n_v = self._n_i = self._samples = 0

    def close_due(self, now: datetime) -> WindowResult | None:
        """Finish the running window if ``now`` is at or past its end (and move to the window of ``now``)."""
        end = self.end
        if now < end:
            return None
        result = WindowResult(
            self.start,
            end,
            self._sum_v / self._n_v if self._n_v else None,
            self._sum_i / self._n_i if self._n_i else None,
            self._samples,
        )
        skipped = math.floor((now - end).total_seconds() / self.length_s)
        self.start = end + timedelta(seconds=skipped * self.length_s)
        self._clear()
        return result

    def add(self, when: datetime, voltage_v: float | None, current_a: float | None) -> WindowResult | None:
        """Add a sample taken at ``when``; returns the window it closed, if any."""
        if when < self.start:
            return None  # older than the running window (a clock that stepped back): ignored
        result = self.close_due(when)
        self._samples += 1
        if voltage_v is not None:
            self._sum_v += voltage_v
            self._n_v += 1
        if current_a is not None:
            self._sum_i += current_a
            self._n_i += 1
        return result
