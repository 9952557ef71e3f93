"""What a batch run's rows add up to: how many failed, and, for videos whose expected label is
known (class folders, list files), top-1 accuracy and the confusion matrix.

Computed from the rows of the whole results file, so a resumed run reports on all of it.
"""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.tools.batch_rows import Row

# A confusion matrix of more classes than this is written to its CSV file only.
MAX_PRINTED_CLASSES = 20


@dataclass(frozen=True)
class Summary:
    videos: int
    failed: int
    scored: int  # classified videos with an expected label
    correct: int
    classes: tuple[str, ...]  # the model's labels, the matrix's row and column order
    confusion: Counter[tuple[str, str]]  # (expected, predicted) -> videos

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None

    def matrix(self) -> list[list[int]]:
        """Rows: expected class; columns: predicted class; both in the model's label order."""
        return [[self.confusion[(expected, predicted)] for predicted in self.classes]
                for expected in self.classes]


def summarize(rows: Sequence[Row], classes: Sequence[str]) -> Summary:
    confusion: Counter[tuple[str, str]] = Counter(
        (row["expected"], row["label"]) for row in rows
        if row.get("expected") is not None and row.get("label") is not None)
    return Summary(videos=len(rows), failed=sum(row.get("error") is not None for row in rows),
                   scored=sum(confusion.values()),
                   correct=sum(count for (expected, predicted), count in confusion.items()
                               if expected == predicted),
                   classes=tuple(classes), confusion=confusion)


def describe(summary: Summary) -> str:
    """Counts, accuracy and (for a few classes) the confusion matrix, as text."""
    lines = [f"{summary.videos} video{'' if summary.videos == 1 else 's'}, {summary.failed} failed"]
    if summary.accuracy is None:
        return "\n".join(lines)
    lines.append(f"top-1 accuracy {summary.accuracy:.1%} ({summary.correct}/{summary.scored} "
                 "videos with an expected label)")
    if len(summary.classes) <= MAX_PRINTED_CLASSES:
        width = max(len(label) for label in summary.classes)
        cell = max(5, len(str(max(summary.confusion.values()))) + 1)
        lines.append("confusion matrix (rows: expected, columns: predicted, in label order):")
        lines += [f"{label:>{width}} " + "".join(f"{count:>{cell}}" for count in counts)
                  for label, counts in zip(summary.classes, summary.matrix())]
    return "\n".join(lines)


def write_confusion_csv(summary: Summary, path: Path) -> None:
    """The confusion matrix with a header row and column of labels."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["expected \\ predicted", *summary.classes])
        writer.writerows([label, *counts] for label, counts in zip(summary.classes, summary.matrix()))
