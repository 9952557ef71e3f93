"""Median and min-max of repeated timings: how `predict --benchmark` and the benchmarks report.

A median over repeats after warm-up resists the odd slow run on a shared machine; the min-max
range shows how much a figure moved, so a reader can tell a real difference from noise.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        if not values:
            raise ValueError("no values to summarise")
        return cls(statistics.median(values), min(values), max(values))

    def __str__(self) -> str:
        return f"{self.median:.1f} ({self.low:.1f}-{self.high:.1f})"
