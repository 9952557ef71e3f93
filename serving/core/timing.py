"""The one stopwatch of the stage timings: what the service answers in `timing_ms`, what the
offline predictor and the precision check report, all measured the same way.

Wall time from `time.perf_counter()` (monotonic, the finest clock Python has), in milliseconds,
charged to the stage names of serving.core.stages. A stage that fails records nothing: its
request is answered with an error, not a timing.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageClock:
    """Charges elapsed wall time to named stages, in milliseconds (`stage_ms`).

    Two ways, for the two shapes of code that use it: `lap(stage)` charges the time since the
    previous lap (or the start) to `stage`, for a straight sequence of stages in one function;
    `measure(stage)` times one block alone, for stages run by different ops with queueing
    between them that must not be counted.
    """

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.stage_ms: dict[str, float] = {}

    def lap(self, stage: str) -> float:
        """Charges the time since the previous lap (or the start) to `stage`; returns it."""
        now = time.perf_counter()
        self.stage_ms[stage] = (now - self._last) * 1000.0
        self._last = now
        return self.stage_ms[stage]

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Charges the time the block takes to `stage`, if it completes."""
        started = time.perf_counter()
        yield
        self._last = time.perf_counter()
        self.stage_ms[stage] = (self._last - started) * 1000.0

    def total_ms(self) -> float:
        """Time since the clock was made."""
        return (time.perf_counter() - self.started) * 1000.0
