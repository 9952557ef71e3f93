"""The results file of a batch run: one row per video, as JSON Lines or CSV, appendable and
resumable.

Every row has the same fields (ROW_FIELDS); a field that does not apply is null (JSON) or empty
(CSV), and the nested ones (top-k, timeline segments and stats) are JSON text in a CSV cell.
Scores are rounded to 6 decimals as the service rounds them, so a row compares with the
service's answer field by field. Rows are written one at a time and flushed, so an interrupted
run leaves whole rows and at most one cut-off last line, which `read_rows` drops (and
`RowWriter` truncates) before a resumed run appends.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import IO, Any

from serving.core.errors import PPTSMError
from serving.core.stages import INFER, PREPROCESS_STAGES
from serving.core.timeline import RankedClass, TimelineResult
from serving.tools.corpus import CorpusVideo
from serving.tools.offline import Prediction

FORMATS = ("jsonl", "csv")
ROW_FIELDS = ("path", "expected", "label", "class_id", "score", "topk", "segments",
              "timeline_stats", "preprocess_ms", "infer_ms", "total_ms", "error")
TIMING_FIELDS = ("preprocess_ms", "infer_ms", "total_ms")
_NESTED = ("topk", "segments", "timeline_stats")
_NUMBERS = {"class_id": int, "score": float, **{name: float for name in TIMING_FIELDS}}

Row = dict[str, Any]


class RowsFileError(PPTSMError):
    """An existing results file cannot be resumed (another format, foreign columns)."""


def format_of(path: Path, asked: str | None) -> str:
    """The asked format, else the file's suffix decides (.csv: CSV, anything else: JSON Lines)."""
    if asked is not None:
        return asked
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def _ranked_json(ranked: RankedClass) -> dict[str, Any]:
    return {"class_id": ranked.class_id, "label": ranked.label, "score": round(ranked.score, 6)}


def _row(video: CorpusVideo, stage_ms: dict[str, float], total_ms: float, **fields: Any) -> Row:
    row: Row = dict.fromkeys(ROW_FIELDS)
    row.update(path=video.key, expected=video.expected,
               preprocess_ms=round(sum(stage_ms.get(s, 0.0) for s in PREPROCESS_STAGES), 1),
               infer_ms=round(stage_ms.get(INFER, 0.0), 1), total_ms=round(total_ms, 1), **fields)
    return row


def classification_row(video: CorpusVideo, prediction: Prediction, total_ms: float) -> Row:
    best = prediction.ranked[0]
    return _row(video, prediction.stage_ms, total_ms, label=best.label, class_id=best.class_id,
                score=round(best.score, 6), topk=[_ranked_json(c) for c in prediction.ranked])


def timeline_row(video: CorpusVideo, result: TimelineResult, total_ms: float) -> Row:
    """A timeline has no single label: the row carries its segments and stats (the service's
    `segments` and `timeline_stats` values)."""
    answer = result.to_json()
    return _row(video, result.stage_ms, total_ms, segments=answer["segments"],
                timeline_stats=answer["timeline_stats"])


def error_row(video: CorpusVideo, message: str, total_ms: float) -> Row:
    return _row(video, {}, total_ms, error=message)


def _csv_line(row: Row) -> str:
    buffer = io.StringIO()
    cells = [json.dumps(row[name]) if name in _NESTED and row[name] is not None
             else ("" if row[name] is None else row[name]) for name in ROW_FIELDS]
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _from_csv(record: dict[str, str]) -> Row:
    row: Row = {}
    for name in ROW_FIELDS:
        text = record[name]
        if text == "":
            row[name] = None
        elif name in _NESTED:
            row[name] = json.loads(text)
        else:
            row[name] = _NUMBERS.get(name, str)(text)
    return row


def _complete_text(path: Path) -> str:
    """The file's text up to its last newline: a cut-off last row is not a row."""
    text = path.read_text(encoding="utf-8")
    return text[: text.rfind("\n") + 1]


def read_rows(path: Path, fmt: str) -> list[Row]:
    """The whole rows of a results file (none if it does not exist)."""
    if not path.is_file():
        return []
    text = _complete_text(path)
    try:
        if fmt == "jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            reader = csv.DictReader(io.StringIO(text))
            if reader.fieldnames is not None and tuple(reader.fieldnames) != ROW_FIELDS:
                raise RowsFileError(f"{path}: its columns are not a batch run's "
                                    f"({', '.join(ROW_FIELDS)})")
            rows = [_from_csv(record) for record in reader]
    except (ValueError, KeyError) as exc:
        raise RowsFileError(f"{path}: not a {fmt} results file of a batch run ({exc}); "
                            "choose another --out or --format") from None
    if any(not isinstance(row, dict) or "path" not in row for row in rows):
        raise RowsFileError(f"{path}: rows without a 'path'; not a batch run's {fmt} file")
    return rows


class RowWriter:
    """Appends rows to a results file, each flushed at once. `fresh` starts the file over;
    otherwise a cut-off last line is cut off for good (the file is truncated in place, never
    rewritten, so the rows already there cannot be lost) before the first new row."""

    def __init__(self, path: Path, fmt: str, *, fresh: bool) -> None:
        self.fmt = fmt
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = 0 if fresh or not path.is_file() else path.read_bytes().rfind(b"\n") + 1
        if kept:
            os.truncate(path, kept)
        else:
            path.write_text(",".join(ROW_FIELDS) + "\n" if fmt == "csv" else "", encoding="utf-8")
        self._file: IO[str] = path.open("a", encoding="utf-8", newline="")

    def write(self, row: Row) -> None:
        line = json.dumps(row) + "\n" if self.fmt == "jsonl" else _csv_line(row)
        self._file.write(line)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
