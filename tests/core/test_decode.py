"""Video decoding on real files written by OpenCV and PyAV encoders.

Every test frame shows its own index as six vertical stripes (bright = bit set), big enough to
survive any codec, plus a red band at the bottom that catches a BGR/RGB mix-up. A test can so
check that the frames returned are the frames asked for, and compare them pixel for pixel
with a plain sequential decode of the same file.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from serving.core.errors import DecodeError, LimitExceededError
from serving.core.preprocess.decode import (
    BACKENDS,
    DecodeLimits,
    ShortVideoError,
    backend_order,
    decode_all,
    open_video,
    read_sampled,
)
from serving.core.preprocess import decode_pyav
from serving.core.preprocess.sampling import uniform_indices
from serving.core.preprocess.video_probe import probe_video

NUM_FRAMES = 48
FPS = 25
BITS = 6
DARK, BRIGHT = 16, 235


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame: stripe b is bright when bit b of `index` is set; a red band at the bottom."""
    frame = np.full((height, width, 3), DARK, dtype=np.uint8)
    stripe = width // BITS
    for bit in range(BITS):
        if index >> bit & 1:
            frame[: height * 3 // 4, bit * stripe:(bit + 1) * stripe] = BRIGHT
    frame[height * 7 // 8:] = (200, 30, 30)
    return frame


def frame_number(frame: np.ndarray) -> int:
    """The index a decoded frame shows (reads the middle of each stripe, away from ringing)."""
    height, width = frame.shape[:2]
    stripe = width // BITS
    top = frame[: height * 3 // 4].mean(axis=2)
    return sum(1 << bit for bit in range(BITS)
               if top[:, bit * stripe + stripe // 4:(bit + 1) * stripe - stripe // 4].mean() > 125)


def _encode_opencv(tmp: Path, name: str, fourcc: str, width: int = 128,
                   height: int = 96) -> bytes:
    path = tmp / name
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (width, height),
                             [cv2.VIDEOWRITER_PROP_KEY_INTERVAL, 12])
    if not writer.isOpened():
        pytest.skip(f"OpenCV has no {fourcc} encoder")
    for index in range(NUM_FRAMES):
        writer.write(np.ascontiguousarray(index_pattern(index, width, height)[:, :, ::-1]))
    writer.release()
    return path.read_bytes()


def _encode_pyav(container: str, codec: str, width: int = 128, height: int = 96,
                 pix_fmt: str = "yuv420p", options: dict[str, str] | None = None,
                 num_frames: int = NUM_FRAMES) -> bytes:
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV has no {codec} encoder")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = 12
        stream.options = {"sc_threshold": "1000000000", **(options or {})}  # keyframes every 12
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_pattern(index, width, height), format="rgb24")
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return buffer.getvalue()


VP_FAST = {"deadline": "realtime", "cpu-used": "8"}
VIDEO_CASES: dict[str, Callable[[Path], bytes]] = {
    "mp4v.mp4": lambda tmp: _encode_opencv(tmp, "a.mp4", "mp4v"),
    "mjpg.avi": lambda tmp: _encode_opencv(tmp, "a.avi", "MJPG"),
    "xvid.avi": lambda tmp: _encode_opencv(tmp, "b.avi", "XVID"),
    "h264-bframes.mp4": lambda tmp: _encode_pyav("mp4", "libx264"),
    "vp8.webm": lambda tmp: _encode_pyav("webm", "libvpx", options=VP_FAST),
    "vp9.webm": lambda tmp: _encode_pyav("webm", "libvpx-vp9", options=VP_FAST),
    "mpeg4.mkv": lambda tmp: _encode_pyav("matroska", "mpeg4"),
    "portrait-h264.mp4": lambda tmp: _encode_pyav("mp4", "libx264", width=96, height=128),
    "gray-odd-ffv1.mkv": lambda tmp: _encode_pyav("matroska", "ffv1", width=97, height=61,
                                                  pix_fmt="gray"),
}
SIZES = {"portrait-h264.mp4": (96, 128), "gray-odd-ffv1.mkv": (97, 61)}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    """Encodes each test video once per module, on first use."""
    tmp = tmp_path_factory.mktemp("videos")
    cache: dict[str, bytes] = {}

    def get(name: str) -> bytes:
        if name not in cache:
            cache[name] = VIDEO_CASES[name](tmp)
        return cache[name]
    return get


@pytest.fixture()
def temp_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "decode-tmp"
    folder.mkdir()
    return folder


def sequential_decode(data: bytes) -> np.ndarray:
    """The ground truth: every frame, decoded in order by libavcodec without any seeking."""
    with av.open(io.BytesIO(data)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def assert_frames_are(frames: np.ndarray, indices: list[int], reference: np.ndarray) -> None:
    assert [frame_number(frame) for frame in frames] == indices
    for row, index in enumerate(indices):
        np.testing.assert_array_equal(frames[row], reference[index], err_msg=f"frame {index}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(VIDEO_CASES))
def test_read_returns_the_requested_frames_in_the_requested_order(videos, temp_dir, case,
                                                                  backend):
    data = videos(case)
    width, height = SIZES.get(case, (128, 96))
    indices = [5, 30, 3, 3, NUM_FRAMES - 1, 0, 13]
    with open_video(data, backend=backend, temp_dir=temp_dir) as video:
        assert video.backend == backend
        assert (video.num_frames, video.fps, video.width, video.height) == \
            (NUM_FRAMES, FPS, width, height)
        assert video.duration_s == pytest.approx(NUM_FRAMES / FPS)
        frames = video.read(indices)
    assert frames.shape == (len(indices), height, width, 3) and frames.dtype == np.uint8
    assert_frames_are(frames, indices, sequential_decode(data))
    band = frames[:, -2:, :].reshape(-1, 3).mean(axis=0)
    if case.startswith("gray"):
        assert band[0] == band[1] == band[2]  # grey source -> R = G = B
    else:
        assert band[0] > 150 and band[2] < 60  # red stays red: channels are RGB, not BGR


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["mp4v.mp4", "h264-bframes.mp4"])
@pytest.mark.parametrize("num_seg", [8, 16])
def test_sparse_sampling_equals_a_full_sequential_decode(videos, temp_dir, case, backend,
                                                         num_seg):
    data = videos(case)
    with open_video(data, backend=backend, temp_dir=temp_dir) as video:
        indices, frames = read_sampled(video, lambda n: uniform_indices(n, num_seg))
    assert indices == uniform_indices(NUM_FRAMES, num_seg)
    assert_frames_are(frames, indices, sequential_decode(data))


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_all_equals_the_sequential_decode(videos, temp_dir, backend):
    data = videos("h264-bframes.mp4")
    frames = decode_all(data, backend=backend, temp_dir=temp_dir)
    assert_frames_are(frames, list(range(NUM_FRAMES)), sequential_decode(data))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_source_can_read_backwards_after_reading_forwards(videos, temp_dir, backend):
    data = videos("mpeg4.mkv")
    reference = sequential_decode(data)
    with open_video(data, backend=backend, temp_dir=temp_dir) as video:
        assert_frames_are(video.read([40, 44]), [40, 44], reference)
        assert_frames_are(video.read([2, 1]), [2, 1], reference)


def test_auto_prefers_pyav(videos):
    with open_video(videos("mp4v.mp4")) as video:
        assert video.backend == "pyav"


@pytest.mark.parametrize("backend, message", [
    ("ffmpeg", "got 'ffmpeg'"), ("pyav,pyav", "without repeats"), ("", "got ''"),
])
def test_a_bad_backend_order_is_refused_with_its_value(backend, message):
    with pytest.raises(ValueError, match=message):
        backend_order(backend)


def test_a_backend_order_is_tried_in_the_order_given():
    assert backend_order("auto") == ("pyav", "opencv")  # decord only when named: not for uploads
    assert backend_order("decord, opencv") == ("decord", "opencv")


def test_an_order_falls_back_to_pyav_when_decord_cannot_open_the_stream(temp_dir):
    """decord 0.6 has no AV1 decoder; PyAV's FFmpeg has one."""
    data = _encode_pyav("mp4", "libsvtav1", width=64, height=64, num_frames=12,
                        options={"preset": "12"})
    with open_video(data, backend="decord,pyav", temp_dir=temp_dir) as video:
        assert video.backend == "pyav"
        assert_frames_are(video.read([0, 6, 11]), [0, 6, 11], sequential_decode(data))
    with pytest.raises(DecodeError, match="no available decoder can read its 'av1' video"):
        open_video(data, backend="decord", temp_dir=temp_dir)
    assert list(temp_dir.iterdir()) == []


@pytest.mark.parametrize("backend", ["decord", "opencv"])
def test_temporary_files_never_outlive_the_open_call(videos, temp_dir, backend):
    with open_video(videos("mjpg.avi"), backend=backend, temp_dir=temp_dir) as video:
        assert list(temp_dir.iterdir()) == []  # deleted as soon as the decoder opened it
        assert frame_number(video.read([20])[0]) == 20
    assert list(temp_dir.iterdir()) == []


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", index_pattern(3, 64, 48))[1].tobytes()


def _png() -> bytes:
    return cv2.imencode(".png", index_pattern(3, 64, 48))[1].tobytes()


def _gif() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="gif") as output:
        stream = output.add_stream("gif", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb8"
        for index in range(4):
            frame = av.VideoFrame.from_ndarray(index_pattern(index, 32, 32), format="rgb24")
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return buffer.getvalue()


def _audio_only_m4a() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("aac", rate=16000)
        for block in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, block * 1024
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return buffer.getvalue()


NOT_VIDEOS: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "empty payload"),
    "random bytes": (lambda: np.random.RandomState(0).bytes(50_000),
                     "not a decodable video container"),
    "text": (lambda: b"this is not a video, just some text\n" * 200,
             "not a decodable video container"),
    "jpeg": (_jpeg, "not a decodable video container"),
    "png": (_png, "not a decodable video container"),
    "gif": (_gif, "not a decodable video container"),
    "audio-only m4a": (_audio_only_m4a, "no video stream"),
}


@pytest.mark.parametrize("name", sorted(NOT_VIDEOS))
def test_non_videos_are_refused_with_a_decode_error(name, temp_dir):
    make, message = NOT_VIDEOS[name]
    with pytest.raises(DecodeError, match=message) as caught:
        open_video(make(), temp_dir=temp_dir)
    assert caught.value.code == 52 and caught.value.message.startswith("video: ")


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 6 // 10]


@pytest.mark.parametrize("case", ["mp4v.mp4", "h264-bframes.mp4"])
def test_an_mp4_cut_short_is_refused(videos, temp_dir, case):
    """An MP4 keeps its frame index at the end; without it no decoder can locate a frame."""
    with pytest.raises(DecodeError, match="not a decodable video container"):
        open_video(_cut(videos(case)), temp_dir=temp_dir)


@pytest.mark.parametrize("case", ["vp9.webm", "mpeg4.mkv"])
def test_a_matroska_file_cut_short_keeps_the_frames_before_the_cut(videos, temp_dir, case):
    with open_video(_cut(videos(case)), temp_dir=temp_dir) as video:
        assert 0 < video.num_frames < NUM_FRAMES
        indices, frames = read_sampled(video, lambda n: uniform_indices(n, 8))
    assert [frame_number(frame) for frame in frames] == indices


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_truncated_avi_counts_the_frames_it_holds_not_its_header(videos, temp_dir, backend):
    data = _cut(videos("xvid.avi"))
    with open_video(data, backend=backend, temp_dir=temp_dir) as video:
        assert video.probe.declared_frames == NUM_FRAMES  # the AVI header still says 48
        assert 10 < video.num_frames < NUM_FRAMES
        indices, frames = read_sampled(video, lambda n: uniform_indices(n, 8))
    assert indices == uniform_indices(video.num_frames, 8)
    assert [frame_number(frame) for frame in frames] == indices


def _with_damaged_packets(data: bytes, first: int, count: int) -> bytes:
    """Zeroes the payload of `count` video packets from packet `first` on (negative: from the
    end): still indexed by the container, but undecodable."""
    with av.open(io.BytesIO(data)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    damaged_data = bytearray(data)
    for position, size in packets[first:][:count]:
        damaged_data[position:position + size] = bytes(size)
    return bytes(damaged_data)


def _with_damaged_tail(data: bytes, damaged: int) -> bytes:
    return _with_damaged_packets(data, -damaged, damaged)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_seeking_backends_decode_only_from_the_wanted_frames_keyframe(videos, temp_dir,
                                                                      backend):
    """Every MJPEG frame is a keyframe, so frame 30 decodes alone. Damaged frames 2-9 are never
    decoded, or frame 30 would be numbered wrongly or the read would fail."""
    data = _with_damaged_packets(videos("mjpg.avi"), first=2, count=8)
    with open_video(data, backend=backend, temp_dir=temp_dir) as video:
        frames = video.read([30, 40])
    assert [frame_number(frame) for frame in frames] == [30, 40]


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_frames_that_do_not_decode_shorten_the_video_and_sampling_is_redone(videos, temp_dir,
                                                                           backend):
    data = _with_damaged_tail(videos("mjpg.avi"), damaged=6)
    with open_video(data, backend=backend, temp_dir=temp_dir) as video:
        assert video.num_frames == NUM_FRAMES  # what the container indexes
        with pytest.raises(ShortVideoError, match="only 42 of the 48 frames in the container"):
            video.read([45])
        assert video.num_frames == NUM_FRAMES - 6  # what actually decodes
        assert frame_number(video.read([NUM_FRAMES - 7])[0]) == NUM_FRAMES - 7
    with open_video(data, backend=backend, temp_dir=temp_dir) as video:
        indices, frames = read_sampled(video, lambda n: uniform_indices(n, 8))
        assert video.num_frames == NUM_FRAMES - 6
    assert indices == uniform_indices(NUM_FRAMES - 6, 8)
    assert [frame_number(frame) for frame in frames] == indices


def _decord_rejects_72_pixel_wide_frames() -> bytes:
    """decord 0.6 opens this video but fails to copy out its frames (a stride bug)."""
    return _encode_pyav("mp4", "libx264", width=72, height=128, num_frames=12)


@pytest.mark.parametrize("make_data", [
    lambda videos: _with_damaged_tail(videos("mjpg.avi"), damaged=6),
    lambda videos: _decord_rejects_72_pixel_wide_frames(),
], ids=["damaged packets", "72 px wide"])
def test_an_order_hands_over_to_pyav_when_decord_fails_to_decode(videos, temp_dir, make_data):
    data = make_data(videos)
    with open_video(data, backend="decord", temp_dir=temp_dir) as video:
        with pytest.raises(DecodeError, match="damaged"):
            video.read([video.num_frames - 5])
    with open_video(data, backend="decord,pyav,opencv", temp_dir=temp_dir) as video:
        assert video.backend == "decord"
        indices, frames = read_sampled(video, lambda n: uniform_indices(n, 8))
        assert video.backend == "pyav"
    assert [frame_number(frame) for frame in frames] == indices
    assert list(temp_dir.iterdir()) == []


def test_byte_limit(videos):
    data = videos("mp4v.mp4")
    with pytest.raises(LimitExceededError, match=r"video: \d+ bytes exceeds the limit of 1000 "
                                                 r"\(max_bytes\)") as caught:
        open_video(data, limits=DecodeLimits(max_bytes=1000))
    assert (caught.value.code, caught.value.limit_name, caught.value.limit) == (53, "max_bytes",
                                                                                 1000)


def test_frame_size_limit_is_checked_before_decoding(videos):
    limits = DecodeLimits(max_pixels_per_frame=10_000)
    with pytest.raises(LimitExceededError, match=r"video: 128x96 frames \(12288 pixels\) exceed "
                                                 r"the limit of 10000 pixels per frame"):
        open_video(videos("h264-bframes.mp4"), limits=limits)


def test_frame_size_guard_also_stops_decoders_that_must_decode_to_learn_the_size(videos):
    """MPEG-4 part 2 in MP4 only reveals its size by decoding a frame, which libavcodec's
    max_pixels guard refuses: the size stays unknown and the upload is refused."""
    limits = DecodeLimits(max_pixels_per_frame=10_000)
    with pytest.raises(DecodeError, match="limit of 10000 pixels per frame"):
        open_video(videos("mp4v.mp4"), limits=limits)


@pytest.mark.parametrize("case,message", [
    ("mp4v.mp4", r"video: 48 frames exceeds the limit of 30 \(max_frames\)"),  # header count
    ("mpeg4.mkv", r"video: at least 31 frames exceeds the limit of 30 \(max_frames\)"),  # no header
])
def test_frame_count_limit(videos, case, message):
    with pytest.raises(LimitExceededError, match=message):
        open_video(videos(case), limits=DecodeLimits(max_frames=30))


def test_duration_limit(videos):
    with pytest.raises(LimitExceededError, match=r"video: 1.9 s exceeds the limit of 1 s "
                                                 r"\(max_duration_s\)"):
        open_video(videos("vp8.webm"), limits=DecodeLimits(max_duration_s=1.0))


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_frames: must be a number > 0"):
        DecodeLimits(max_frames=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reads_are_checked(videos, temp_dir, backend):
    video = open_video(videos("mjpg.avi"), backend=backend, temp_dir=temp_dir)
    assert video.read([]).shape == (0, 96, 128, 3)
    with pytest.raises(ValueError, match=r"frame indices must lie in \[0, 48\)"):
        video.read([3, 48])
    video.close()
    video.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        video.read([0])


def test_unknown_backend_is_a_configuration_error(videos):
    with pytest.raises(ValueError, match="decode backend"):
        open_video(videos("mjpg.avi"), backend="ffmpeg-cli")


@pytest.mark.parametrize("case", ["mp4v.mp4", "h264-bframes.mp4", "mpeg4.mkv", "vp9.webm"])
@pytest.mark.parametrize("num_seg", [3, 8, 16])
def test_two_decoders_side_by_side_give_the_frames_of_a_sequential_decode(
        videos, monkeypatch, case, num_seg):
    """The split path normally starts at 640x360; with the threshold at one pixel the small test
    videos take it too."""
    monkeypatch.setattr(decode_pyav, "PARALLEL_MIN_PIXELS", 1)
    data = videos(case)
    with open_video(data, backend="pyav") as video:
        indices, frames = read_sampled(video, lambda n: uniform_indices(n, num_seg))
    assert_frames_are(frames, indices, sequential_decode(data))


@pytest.mark.parametrize("num_seg", [2, 8, 16, 48])
def test_the_split_cuts_at_a_keyframe_into_two_halves_of_the_decoding_work(videos, num_seg):
    probe = probe_video(videos("mp4v.mp4"), DecodeLimits())  # keyframes every 12 frames
    indices = sorted(set(uniform_indices(probe.num_frames, num_seg)))
    first, second = decode_pyav.split_at_keyframe(indices, probe)
    assert first + second == indices and first and second
    assert probe.keyframe_at_or_before(first[-1]) < probe.keyframe_at_or_before(second[0])
    decoded = [set(range(probe.keyframe_at_or_before(i), i + 1)) for i in indices]
    work = [len(set().union(*decoded[:len(first)])), len(set().union(*decoded[len(first):]))]
    assert abs(work[0] - work[1]) <= 12  # within one GOP of an even split


def test_frames_of_one_keyframe_are_not_split(videos):
    probe = probe_video(videos("mp4v.mp4"), DecodeLimits())
    assert decode_pyav.split_at_keyframe([1, 5, 9], probe) == ([1, 5, 9], [])


def test_damaged_packets_shorten_the_video_on_the_split_path_too(videos, monkeypatch):
    monkeypatch.setattr(decode_pyav, "PARALLEL_MIN_PIXELS", 1)
    data = _with_damaged_tail(videos("mjpg.avi"), damaged=6)
    with open_video(data, backend="pyav") as video:
        indices, frames = read_sampled(video, lambda n: uniform_indices(n, 8))
        assert video.num_frames == NUM_FRAMES - 6
    assert [frame_number(frame) for frame in frames] == indices
