"""Hostile uploads at the decoding library's level (serving.core.preprocess), every file written here.

* Uploads that name other files, URLs or sockets (ffconcat, SDP, HLS, an MP4 data reference)
  open nothing: a canary file's access time does not move, no socket is created.
* A stream whose frame size grows mid-way is refused, within libavcodec's pixel limit.
* Each distinct frame is decoded and scaled once: a one-frame 4K video sampled densely costs
  about one 4K frame of memory (peak RSS measured in a subprocess), and the result equals
  scaling after sampling, bit for bit.
* The decoding work and the frames held are budgeted before decoding (max_decode_pixels,
  max_decoded_bytes), and a cancel token stops the work, the second decoder included.
* Through the real service: after a burst of requests that time out, its CPU time stops
  growing and an honest request is answered.
"""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from serving.core.errors import DecodeError, LimitExceededError
from serving.core.metadata import PreprocessSpec
from serving.core.preprocess import decode_pyav, video_probe
from serving.core.preprocess.cancel import Cancelled
from serving.core.preprocess.decode import DecodeLimits, open_video, read_sampled
from serving.core.preprocess.decode_opencv import open_capture
from serving.core.preprocess.pipeline import sample_indices
from serving.core.preprocess.video_probe import probe_video
from serving.core.preprocess.raw_frames import RawFrames
from serving.core.stages import model_resize, network_views, sample_frames
from tests.video_corpus import encode_video, moving_square_frames

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY_S = 86400


# --- files that point elsewhere ---------------------------------------------------------------

@pytest.fixture()
def canary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real clip in the working directory, its access time two days back, so that relatime
    updates it on any read."""
    monkeypatch.chdir(tmp_path)
    path = encode_video(tmp_path / "canary.mp4", num_frames=8)
    past = time.time() - 2 * DAY_S
    os.utime(path, (past, path.stat().st_mtime))
    return path


def _atime(path: Path) -> float:
    return path.stat().st_atime


def _socket_fds() -> int:
    """Sockets this process holds (the listing's own descriptor vanishes while it is read)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            continue
    return count


def _udp_ports() -> set[int]:
    ports = set()
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            ports.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    return ports


SDP_PORT = 47004


def _referencing_bodies(canary: Path) -> dict[str, bytes]:
    return {
        "ffconcat, relative": f"ffconcat version 1.0\nfile {canary.name}\n".encode(),
        "ffconcat, absolute": f"ffconcat version 1.0\nfile '{canary}'\n".encode(),
        "SDP": (f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
                f"m=video {SDP_PORT} RTP/AVP 96\na=rtpmap:96 H264/90000\n").encode(),
        "HLS playlist": (f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n{canary.name}\n"
                         f"#EXTINF:1,\nfile:{canary}\n#EXT-X-ENDLIST\n").encode(),
    }


def test_without_the_allow_list_libav_would_read_the_canary(canary):
    """The control: the ffconcat body really makes a plain av.open read the canary."""
    before = _atime(canary)
    with av.open(io.BytesIO(f"ffconcat version 1.0\nfile {canary.name}\n".encode())) as opened:
        packets = sum(1 for packet in opened.demux() if packet.size)
    assert packets == 8 and _atime(canary) > before


@pytest.mark.parametrize("name", ["ffconcat, relative", "ffconcat, absolute", "SDP",
                                  "HLS playlist"])
def test_bodies_that_name_files_urls_or_sockets_open_nothing(canary, name):
    body = _referencing_bodies(canary)[name]
    before, sockets = _atime(canary), _socket_fds()
    with pytest.raises(DecodeError, match="^video: not a decodable video container$"):
        open_video(body)
    assert _atime(canary) == before
    assert _socket_fds() == sockets and SDP_PORT not in _udp_ports()


@pytest.mark.parametrize("name", ["ffconcat, relative", "ffconcat, absolute", "SDP",
                                  "HLS playlist"])
def test_opencv_capture_opens_only_the_accepted_demuxers(canary, tmp_path, name):
    """OpenCV's capture gets the same demuxer allow-list: a file list never opens."""
    upload = tmp_path / "upload.video"
    upload.write_bytes(_referencing_bodies(canary)[name])
    before = _atime(canary)
    capture = open_capture(str(upload))
    try:
        assert not capture.isOpened()
    finally:
        capture.release()
    assert _atime(canary) == before and SDP_PORT not in _udp_ports()
    good = open_capture(str(encode_video(tmp_path / "good.mp4", num_frames=4)))
    assert good.isOpened() and good.grab()
    good.release()


def _boxes(data: bytes | bytearray, start: int, end: int):
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        yield position, size, kind
        position += size


def _alias_entry(path: str) -> bytes:
    """A `dref` entry of type 'alis' (a Mac alias record, as libavformat's mov demuxer reads
    it) that points at `path`: one level up and down, so the demuxer would open its name
    relative to the upload's (empty) URL, i.e. in the working directory."""
    name = os.path.basename(path).encode()
    body = (bytes(10) + bytes(28) + bytes(12) + bytes([len(name)]) + name.ljust(63, b"\0")
            + bytes(16) + struct.pack(">hh", 1, 1) + bytes(16))
    encoded = path.encode() + (b"\0" if len(path) % 2 else b"")
    body += struct.pack(">hh", 2, len(path)) + encoded + struct.pack(">hh", -1, 0)
    body = body.ljust(160, b"\0")
    return struct.pack(">I4sI", 12 + len(body), b"alis", 0) + body  # flags 0: external data


def with_external_data_reference(mp4: bytes, path: str) -> bytes:
    """`mp4` (moov after mdat) with its video track's data reference pointing at `path`."""
    data = bytearray(mp4)
    parents, low, high = [], 0, len(data)
    for kind in (b"moov", b"trak", b"mdia", b"minf", b"dinf", b"dref"):
        position, size = next((p, s) for p, s, k in _boxes(data, low, high) if k == kind)
        parents.append(position)
        low, high = position + (16 if kind == b"dref" else 8), position + size
    entry = parents[-1] + 16
    old_size = struct.unpack(">I", data[entry:entry + 4])[0]
    new = _alias_entry(path)
    data[entry:entry + old_size] = new
    for position in parents:
        struct.pack_into(">I", data, position, struct.unpack(">I", data[position:position + 4])[0]
                         + len(new) - old_size)
    return bytes(data)


def test_an_mp4_data_reference_to_another_file_is_never_opened(canary, monkeypatch):
    """libavformat's mov demuxer opens a track's external data reference only with
    `enable_drefs` (off by default). With it forced on, the nested open reaches the service's
    io_open hook, which refuses it; either way the canary is never read."""
    body = with_external_data_reference(canary.read_bytes(), str(canary))
    nested: list[str] = []
    refuse = video_probe.refuse_nested_open

    def recording_refusal(url: str, flags: int, options: dict) -> None:
        nested.append(url)
        refuse(url, flags, options)

    monkeypatch.setattr(video_probe, "refuse_nested_open", recording_refusal)
    before = _atime(canary)
    with pytest.raises(DecodeError):  # the track's data is elsewhere: no frame here
        open_video(body)
    assert nested == [] and _atime(canary) == before  # enable_drefs is off by default

    options = video_probe.container_options
    monkeypatch.setattr(video_probe, "container_options",
                        lambda limits: {**options(limits), "enable_drefs": "1"})
    with pytest.raises(DecodeError):
        open_video(body)
    assert nested == [canary.name] and _atime(canary) == before  # asked for, refused


# --- frame size changing mid-stream -----------------------------------------------------------

def _annex_b(width: int, height: int, frames: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="h264") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": "6", "bf": "0"}
        for picture in moving_square_frames(frames, width, height):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def growing_stream(small: tuple[int, int] = (128, 96), large: tuple[int, int] = (256, 192),
                   frames: int = 12) -> bytes:
    """A Matroska file whose H.264 stream switches from `small` to `large` frames halfway (a
    new SPS): its header, and so the probe, only know `small`."""
    source = av.open(io.BytesIO(_annex_b(*small, frames) + _annex_b(*large, frames)),
                     format="h264")
    buffer = io.BytesIO()
    with source, av.open(buffer, "w", format="matroska") as output:
        stream = output.add_stream_from_template(source.streams.video[0])
        for index, packet in enumerate(p for p in source.demux() if p.size):
            packet.stream, packet.time_base = stream, Fraction(1, 25)
            packet.pts = packet.dts = index
            output.mux(packet)
    return buffer.getvalue()


def test_the_probe_sees_only_the_first_frame_size():
    probe = probe_video(growing_stream(), DecodeLimits())
    assert (probe.width, probe.height, probe.num_frames) == (128, 96, 24)


@pytest.mark.parametrize("seeking", [True, False])
def test_a_frame_size_change_mid_stream_is_refused(seeking, monkeypatch):
    if not seeking:
        monkeypatch.setattr(decode_pyav.PyAVSource, "_decode_seeking",
                            lambda *args: (_ for _ in ()).throw(decode_pyav._LostTrack()))
    with open_video(growing_stream(), backend="pyav") as video:
        assert video.read([0, 11]).shape == (2, 96, 128, 3)  # the frames before the change
        with pytest.raises(DecodeError, match=r"^video: a frame of 256x192 follows 128x96 frames;"
                                              r" a frame size that changes mid-stream"):
            video.read([0, 20])


def test_a_frame_grown_over_the_pixel_limit_is_refused_by_libavcodec():
    """libavcodec's max_pixels on the decoder's own context: the grown frame is never
    allocated, and the answer names the limit."""
    limits = DecodeLimits(max_pixels_per_frame=128 * 96 * 2)
    with open_video(growing_stream(), limits=limits, backend="pyav") as video:
        with pytest.raises(LimitExceededError, match=r"256x192 frames \(49152 pixels\) exceed "
                                                     r"the limit of 24576 .*max_pixels_per_frame"):
            video.read([20])


# --- each distinct frame once; memory -----------------------------------------------------------

PP_TSM = PreprocessSpec(num_seg=8, scale_size=256, crop_size=224, dense_clips=10, dense_crops=3,
                        dense_span=64)


def _one_frame_video(path: Path, width: int, height: int) -> bytes:
    return encode_video(path, num_frames=1, width=width, height=height,
                        options={"preset": "ultrafast"}).read_bytes()


@pytest.mark.parametrize("size", [(1280, 720), (320, 240), (240, 320)])
@pytest.mark.parametrize("mode", ["uniform", "dense"])
def test_scaling_each_frame_as_it_is_decoded_equals_scaling_after_sampling(tmp_path, size, mode):
    """The old pipeline read full-size frames, one copy per index, and scaled them in
    network_views; the network input must stay bit for bit the same."""
    data = encode_video(tmp_path / "clip.mp4", num_frames=90, width=size[0], height=size[1]
                        ).read_bytes()
    for spec in (PP_TSM, PreprocessSpec(num_seg=8, scale_size=224, crop_size=224,
                                        fixed_ratio=False)):
        with open_video(data) as video:
            _, full = read_sampled(video, lambda count: sample_indices(count, spec, mode))
        with open_video(data) as video:
            scaled = sample_frames(video, spec, mode)
        assert scaled.shape[1:3] == model_resize(video, spec).size[::-1]
        np.testing.assert_array_equal(network_views(scaled, spec, mode),
                                      network_views(full, spec, mode))


def test_raw_frames_are_scaled_once_per_distinct_index():
    frames = np.stack(list(moving_square_frames(3, 320, 240)))
    with RawFrames(frames) as source:
        scaled = sample_frames(source, PP_TSM, "dense")
        expected = network_views(source.read(sample_indices(3, PP_TSM, "dense")), PP_TSM, "dense")
    assert scaled.shape == (80, 256, 341, 3)
    np.testing.assert_array_equal(network_views(scaled, PP_TSM, "dense"), expected)


PEAK_SCRIPT = """
import resource, sys
import numpy as np
from serving.core.metadata import PreprocessSpec
from serving.core.preprocess.decode import open_video
from serving.core.preprocess.raw_frames import RawFrames
from serving.core.stages import sample_frames
spec = PreprocessSpec(num_seg=16, scale_size=256, crop_size=224, dense_clips=10, dense_crops=3,
                      dense_span=64)
data = open(sys.argv[1], "rb").read()
if sys.argv[2] == "raw":
    source = RawFrames(np.zeros((1, 2160, 4096, 3), np.uint8) + 7)
else:
    source = open_video(data)
source.read([0])  # warm up the decoder's buffers
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
frames = sample_frames(source, spec, "dense")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(frames.shape[0], (after - before) // 1024)
"""


@pytest.mark.parametrize("kind", ["video", "raw"])
def test_one_frame_4k_dense_costs_about_one_frame_of_memory(tmp_path, kind):
    """160 sampled indices of a one-frame 4096x2160 video (a 16-frame model's dense mode): one
    4K frame (26 MB) is decoded and scaled once, then 160 rows of 0.26 MB are gathered. The
    old code held 160 full-size copies (4.2 GB)."""
    video = tmp_path / "one.mp4"
    video.write_bytes(_one_frame_video(tmp_path / "encode.mp4", 4096, 2160))
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(video), kind],
                            capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    rows, growth_mb = map(int, result.stdout.split()[-2:])
    assert rows == 160
    assert growth_mb < 150, f"peak RSS grew by {growth_mb} MB"


def test_holding_unscaled_frames_is_budgeted(tmp_path):
    """Without a resize every row is a full-size copy: 160 rows of a 4K frame are refused
    before decoding, naming max_decoded_bytes; raw frames the same."""
    data = _one_frame_video(tmp_path / "one.mp4", 4096, 2160)
    indices = [0] * 160
    message = (r"video: the sampled frames need 161 RGB frames of 4096x2160 at once "
               r"\(4273274880 bytes\), over the limit of 536870912 .*\(max_decoded_bytes\)")
    with open_video(data) as video, pytest.raises(LimitExceededError, match=message) as caught:
        video.read(indices)
    assert (caught.value.code, caught.value.limit_name) == (53, "max_decoded_bytes")
    with pytest.raises(LimitExceededError, match="max_decoded_bytes"):
        RawFrames(np.zeros((1, 2160, 4096, 3), np.uint8)).read(indices)
    tight = DecodeLimits(max_decoded_bytes=10 * 1024 * 1024)
    with open_video(data, limits=tight) as video, pytest.raises(
            LimitExceededError, match=r"1 RGB frames of 4096x2160 and 161 RGB frames of 341x256"):
        sample_frames(video, PreprocessSpec(num_seg=16, dense_clips=10), "dense")


# --- decoding budget and cancellation -----------------------------------------------------------

def sparse_keyframes(num_frames: int, keyframe_every: int, width: int, height: int) -> bytes:
    """An MP4 that is cheap to write and costly to decode: an MPEG-4 key frame every
    `keyframe_every` frames, the same tiny predicted frame between them (muxed, not encoded)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(num_frames)}
        picture = av.VideoFrame.from_ndarray(moving_square_frames(1, width, height)[0],
                                             format="rgb24")
        keyframe, predicted = [*stream.encode(picture), *stream.encode(picture),
                               *stream.encode()]
        step = predicted.pts - keyframe.pts
        for index in range(num_frames):
            copy = av.Packet(bytes(keyframe if index % keyframe_every == 0 else predicted))
            copy.pts = copy.dts = index * step
            copy.time_base, copy.stream = predicted.time_base, stream
            copy.is_keyframe = index % keyframe_every == 0
            output.mux(copy)
    return buffer.getvalue()


def test_the_decoding_work_is_estimated_from_the_keyframes_and_refused_over_the_budget():
    data = sparse_keyframes(600, 300, 64, 48)
    probe = probe_video(data, DecodeLimits())
    assert probe.keyframes == (0, 300)
    with open_video(data) as video:
        assert video.decode_cost([10, 299, 310]) == 300 + 11
    limits = DecodeLimits(max_decode_pixels=310 * 64 * 48)
    with open_video(data, limits=limits) as video:
        assert len(video.read([10, 299, 309])) == 3  # 310 frames: within the budget
        with pytest.raises(LimitExceededError, match=(
                r"^video: the sampled frames need 311 frames of 64x48 decoded \(955392 pixels\), "
                r"over the limit of 952320 \(max_decode_pixels\)")) as caught:
            video.read([10, 299, 310])
    assert caught.value.limit_name == "max_decode_pixels"


def test_in_order_decoding_is_costed_up_to_the_last_frame(monkeypatch):
    """Without usable timestamps (or with OpenCV) every frame up to the last wanted one is
    decoded: that is the cost checked."""
    data = sparse_keyframes(600, 300, 64, 48)
    limits = DecodeLimits(max_decode_pixels=400 * 64 * 48)
    with open_video(data, limits=limits, backend="opencv") as video:
        assert video.decode_cost([10, 299, 310]) == 311
        with pytest.raises(LimitExceededError, match="max_decode_pixels"):
            video.read([500])


def test_the_default_budget_admits_normal_videos():
    """20 s of 4K (3840x2160) at 60 fps decoded in order; 16 samples of a 1080p video, each
    250 frames from its keyframe."""
    limits = DecodeLimits()
    limits.check_decode_pixels(1200, 3840, 2160)
    limits.check_decode_pixels(16 * 250, 1920, 1080)


def _cpu_s() -> float:
    return time.process_time()


def test_a_cancelled_read_stops_both_decoders_within_a_frame(monkeypatch):
    """1280x720 frames take the two-decoder path; after the token is set the read fails with
    Cancelled and the process's CPU time stops growing: the pool's decoder stopped too."""
    monkeypatch.setattr(decode_pyav, "THREADS", 2)
    data = sparse_keyframes(6000, 3000, 1280, 720)
    token = threading.Event()
    outcome: list[BaseException] = []

    def read() -> None:
        with open_video(data, cancel=token) as video:
            try:
                video.read([2990, 5990])
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                outcome.append(exc)

    worker = threading.Thread(target=read)
    worker.start()
    time.sleep(0.5)
    assert worker.is_alive(), "the read finished too early to be cancelled"
    token.set()
    worker.join(timeout=2)
    assert not worker.is_alive() and isinstance(outcome[0], Cancelled)
    before = _cpu_s()
    time.sleep(1.0)
    assert _cpu_s() - before < 0.2


def test_a_cancelled_probe_and_a_cancelled_resize_stop(tmp_path):
    token = threading.Event()
    token.set()
    with pytest.raises(Cancelled):
        open_video(encode_video(tmp_path / "a.mp4", num_frames=4).read_bytes(), cancel=token)
    with pytest.raises(Cancelled):
        sample_frames(RawFrames(np.zeros((4, 240, 320, 3), np.uint8), cancel=token), PP_TSM,
                      "uniform")


# --- through the service: abandoned work stops ------------------------------------------------

def _group_cpu_s(group: int) -> float:
    """utime + stime of every process in process group `group` (the service and its children)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _short_sample_timeout(config: dict) -> None:
    config["op"]["sample"]["timeout"] = 500


def test_after_a_burst_of_timeouts_the_service_goes_idle(tmp_path_factory, calibrate_bn):
    """Four requests whose sampled frames of a key-frame-sparse 1280x720 video (two decoders
    side by side, within the decoding budget) take seconds: each is answered 55 after 0.5 s,
    then the service's CPU time stops growing, and an honest request is answered."""
    from tests.service_client import TestService, b64, fields, post, tiny_model_dir

    model_dir = tiny_model_dir(tmp_path_factory, calibrate_bn)
    costly = b64(sparse_keyframes(12000, 6000, 1280, 720))  # 11.1e9 of 12e9 pixels to decode
    honest = b64(encode_video(tmp_path_factory.mktemp("honest") / "honest.mp4"))
    with TestService(model_dir, tmp_path_factory.mktemp("idle"), _short_sample_timeout) as service:
        answers: list[dict] = []
        burst = [threading.Thread(target=lambda: answers.append(post(service, ["video"], [costly])))
                 for _ in range(4)]
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join(timeout=120)
        assert len(answers) == 4 and all(
            answer["err_no"] == 55 and answer["err_msg"].startswith(
                "timeout: the sample stage took longer than its limit of 0.5 s")
            for answer in answers), answers
        time.sleep(0.5)  # abandoned work stops within a frame (it would run 2-3 s more)
        before = _group_cpu_s(service.process.pid)
        time.sleep(1.5)
        assert _group_cpu_s(service.process.pid) - before < 0.3
        assert fields(post(service, ["video"], [honest]))["label"]
