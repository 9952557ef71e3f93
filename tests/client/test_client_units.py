"""The clients' own logic, without a service: the retry policy's bounds and counting, the
recursive folder walk with class-folder labels, the timeline lines, the plain-upload form."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from pptsm_client import http_client
from pptsm_client.protocol import TRANSPORT_ERROR, Answer, Upload, as_fields, build_upload
from pptsm_client.report import clock, result_lines
from pptsm_client.retry import RetryingSender, RetryPolicy
from pptsm_client.videos import collect_videos


def test_backoff_is_jittered_exponential_and_bounded() -> None:
    policy = RetryPolicy(retries=8, base_s=0.5, cap_s=4.0)
    rng = random.Random(0)
    for attempt in range(8):
        bound = min(4.0, 0.5 * 2 ** attempt)
        delays = [policy.delay_s(attempt, None, rng) for _ in range(200)]
        assert all(0.0 <= delay <= bound for delay in delays)
        assert len(set(delays)) > 100  # jittered, not one fixed wait
    # The service's Retry-After is the least wait, still under the cap.
    assert policy.delay_s(0, 3.0, rng) >= 3.0
    assert policy.delay_s(0, 60.0, rng) <= 4.0
    with pytest.raises(ValueError, match="retries must be >= 0"):
        RetryPolicy(retries=-1)


@pytest.mark.parametrize("answers, retries, sent, final", [
    ([Answer(503, "busy", {}), Answer(55, "slow", {}), Answer(0, "", {"label": "x"})], 3, 3, 0),
    ([Answer(54, "bug", {}), Answer(54, "bug", {}), Answer(54, "bug", {})], 2, 3, 54),
    ([Answer(TRANSPORT_ERROR, "refused", {}, connection_failed=True), Answer(0, "", {})], 1, 2, 0),
    ([Answer(52, "not a video", {})], 5, 1, 52),  # the sender's to fix: never retried
    ([Answer(TRANSPORT_ERROR, "timed out", {})], 5, 1, TRANSPORT_ERROR),
    ([Answer(503, "busy", {})], 0, 1, 503),
])
def test_retries_only_what_may_succeed_later(answers: list[Answer], retries: int, sent: int,
                                              final: int) -> None:
    queue, waits = list(answers), []

    def send(request: object) -> Answer:
        return queue.pop(0)

    sender = RetryingSender(send, RetryPolicy(retries=retries), sleep=waits.append)
    assert sender({"video": "x"}).err_no == final
    assert len(answers) - len(queue) == sent
    assert sender.retries == len(waits) == sent - 1


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_folder_walk_finds_class_folders_at_any_depth(tmp_path: Path) -> None:
    loose = _touch(tmp_path / "loose.mp4")
    waving = _touch(tmp_path / "test" / "waving" / "a.mp4")
    clapping = _touch(tmp_path / "test" / "Clapping_Hands" / "b.AVI")
    other = _touch(tmp_path / "misc" / "c.webm")
    _touch(tmp_path / "test" / "waving" / "notes.txt")
    _touch(tmp_path / "test" / "waving" / "._a.mp4")
    _touch(tmp_path / ".cache" / "d.mp4")
    found = {video.path: video.expected for video in collect_videos(tmp_path)}
    assert found == {loose: None, waving: "waving", clapping: "Clapping_Hands", other: "misc"}
    # With the model's labels, a folder is matched like Kinetics folders are named (case,
    # underscores), and a folder that names no label is not scored.
    labelled = {video.path: video.expected
                for video in collect_videos(tmp_path, ["waving", "clapping hands"])}
    assert labelled == {loose: None, waving: "waving", clapping: "clapping hands", other: None}
    assert [video.path for video in collect_videos(waving)] == [waving]
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        collect_videos(tmp_path / "absent")


def test_timeline_answer_prints_one_line_per_segment() -> None:
    record = {"file": "long.mp4", "err_no": 0,
              "timeline": [{"start_s": 0.0, "end_s": 10.0, "topk": []}] * 5,
              "segments": [{"start_s": 12.0, "end_s": 31.46, "class_id": 2, "label": "jumping",
                            "score": 0.934},
                           {"start_s": 65.0, "end_s": 3700.0, "class_id": 0, "label": "waving",
                            "score": 0.5}]}
    assert result_lines(record) == ["long.mp4: timeline of 5 windows, 2 segments",
                                    "  00:12.0-00:31.5  jumping  0.93",
                                    "  01:05.0-61:40.0  waving  0.50"]
    assert clock(59.96) == "01:00.0"


def test_plain_upload_form() -> None:
    upload = build_upload(b"\x00\x01", {"topk": "3"}, "clip.MP4")
    assert upload == Upload(b"\x00\x01", "video/mp4", {"topk": "3"})
    assert build_upload(b"x", {}, "clip.unknownext").content_type == "application/octet-stream"
    assert build_upload(b"x", {}).content_type == "application/octet-stream"
    assert as_fields(upload) == {"video": "AAE=", "topk": "3"}


@pytest.mark.parametrize("args, message", [
    (["--window-s", "5"], "error: --window-s needs --mode timeline"),
    (["--retries", "-1"], "error: --retries must be >= 0"),
    (["--binary", "--frames"], "--binary sends the file, --frames its decoded frames"),
])
def test_contradictory_options_are_usage_errors(args: list[str], message: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    video = _touch(tmp_path / "clip.mp4")
    try:
        status = http_client.main([str(video), *args])
    except SystemExit as exit_:  # argparse's own refusals
        status = exit_.code
    assert status == 2 and message in capsys.readouterr().err
