"""What the command lines print for one answer: a JSON-ready record, or text lines for a person
(one line per video; a timeline answer adds one line per segment)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .protocol import Answer, decode_fields


def result_record(path: Path, answer: Answer) -> dict[str, object]:
    """One video's outcome as a JSON-ready dict; JSON-valued fields are decoded."""
    record: dict[str, object] = {"file": str(path), "err_no": answer.err_no}
    if answer.err_no != 0:
        record["err_msg"] = answer.err_msg
        return record
    record.update(decode_fields(answer.fields))
    return record


def clock(seconds: float) -> str:
    """A video time as `mm:ss.s` (minutes go past 59 rather than adding hours: the service takes
    videos of minutes, not hours)."""
    tenths = round(seconds * 10)
    minutes, tenths = divmod(tenths, 600)
    return f"{minutes:02d}:{tenths // 10:02d}.{tenths % 10}"


def segment_line(segment: Mapping[str, object]) -> str:
    """`00:12.0-00:31.5  label  0.93`."""
    return (f"{clock(float(segment['start_s']))}-{clock(float(segment['end_s']))}  "
            f"{segment['label']}  {float(segment['score']):.2f}")


def result_lines(record: Mapping[str, object]) -> list[str]:
    """'<file>: <label> (score 0.912); next: ...' or '<file>: error <n>: <message>'; a timeline
    answer: '<file>: timeline of N windows, M segments' and an indented line per segment."""
    if record["err_no"] != 0:
        return [f"{record['file']}: error {record['err_no']}: {record['err_msg']}"]
    if "segments" in record:
        segments = record["segments"]
        windows = len(record.get("timeline", []))
        return ([f"{record['file']}: timeline of {windows} windows, {len(segments)} segments"]
                + ["  " + segment_line(segment) for segment in segments])
    line = f"{record['file']}: {record['label']} (score {float(record['score']):.3f})"
    others = record.get("topk", [])[1:]
    if others:
        line += "; next: " + ", ".join(f"{c['label']} {c['score']:.3f}" for c in others)
    return [line]
