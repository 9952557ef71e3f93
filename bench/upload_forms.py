"""The same clip through the REST front end's three request forms: Paddle Serving's JSON form
(base64 inside JSON), the file itself as the body (`video/mp4`, options in the query) and
multipart/form-data. The difference between the JSON row and the others is what base64 and
JSON cost on both sides: a third more bytes to send, an encode in the client, a JSON parse and
a base64 decode in the service.

Requests of the three forms take turns (one of each, then again), one at a time, so that a
machine busy with something else slows all three alike.
"""
from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import requests  # noqa: E402

from bench.report import Table  # noqa: E402
from bench.serving_load import HTTP_TIMEOUT_S, json_body  # noqa: E402
from serving.core.spread import Spread  # noqa: E402

MULTIPART_BOUNDARY = "pptsm-bench-boundary"


@dataclass(frozen=True)
class UploadForm:
    """One request form of a clip: its body, built once, and how it is posted."""

    form: str
    clip: str
    content_type: str
    body: bytes
    query: str = ""


@dataclass(frozen=True)
class UploadTiming:
    form: str
    clip: str
    request_mb: float
    latency_ms: Spread
    failed: int
    first_error: str


def upload_forms(clip_label: str, video: bytes) -> list[UploadForm]:
    """The clip as JSON, as the body, and as a multipart file."""
    multipart = (f"--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name=\"video\"; "
                 f"filename=\"clip.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").encode() + video + \
        f"\r\n--{MULTIPART_BOUNDARY}--\r\n".encode()
    return [
        UploadForm("json (base64)", clip_label, "application/json",
                   json_body({"video": base64.b64encode(video).decode("ascii")})),
        UploadForm("video/mp4 body", clip_label, "video/mp4", video),
        UploadForm("multipart", clip_label,
                   f"multipart/form-data; boundary={MULTIPART_BOUNDARY}", multipart),
    ]


def _post(session: requests.Session, url: str, form: UploadForm) -> tuple[float, str]:
    """(milliseconds, error text or '') for one request of `form`."""
    started = time.perf_counter()
    try:
        response = session.post(url + form.query, data=form.body, timeout=HTTP_TIMEOUT_S,
                                headers={"Content-Type": form.content_type})
        answer = response.json()
        error = "" if answer.get("err_no") == 0 else f"{answer.get('err_no')}: {answer.get('err_msg')}"
    except (requests.RequestException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return (time.perf_counter() - started) * 1000.0, error


def time_forms(url: str, forms: Sequence[UploadForm], *, rounds: int,
               warmup: int = 1) -> list[UploadTiming]:
    """`rounds` requests of each form, taking turns, after `warmup` rounds not counted."""
    latencies: dict[str, list[float]] = {form.form: [] for form in forms}
    errors: dict[str, list[str]] = {form.form: [] for form in forms}
    with requests.Session() as session:
        for round_index in range(warmup + rounds):
            for form in forms:
                milliseconds, error = _post(session, url, form)
                if round_index < warmup:
                    continue
                latencies[form.form].append(milliseconds)
                if error:
                    errors[form.form].append(error)
    return [UploadTiming(form.form, form.clip, round(len(form.body) / 1e6, 2),
                         Spread.of(latencies[form.form]), len(errors[form.form]),
                         errors[form.form][0][:200] if errors[form.form] else "")
            for form in forms]


def uploads_table(timings: Sequence[UploadTiming], note: str) -> Table:
    return Table("REST request forms: JSON/base64 against plain uploads",
                 ("form", "clip", "request MB", "p50 ms (min-max)", "failed"),
                 [(t.form, t.clip, t.request_mb, t.latency_ms, t.failed) for t in timings], note)


def plot_uploads(timings: Sequence[UploadTiming], path: Path) -> None:
    labels = [f"{t.clip}\n{t.form}" for t in timings]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(labels)), 4))
    ax.bar(range(len(labels)), [t.latency_ms.median for t in timings])
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("p50 latency, ms (concurrency 1)")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
