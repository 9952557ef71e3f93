"""Hostile requests against the real service, end to end: each case is sent (over REST, and over
gRPC where the transport matters), must get a clean answer naming the problem, and must not
have made the service open a file outside its temp folder, open a socket, grow past a memory
bound or leave CPU work running. After every case an honest request must still be classified.

The service runs with the default request limits from pipeline_config/config.yml (4K frames
allowed), in a working directory of its own that holds a canary video: a relative path in an
upload resolves there, and the canary's access time proves whether anything read it.

Malformed HTTP (JSON floods, deep JSON, lone surrogates, Content-Length tricks, other methods,
slow senders) is proved in test_http_hostile.py, and gRPC messages past the transport's limits
(100 MB names, floods over max_receive_message_length) in test_bad_inputs.py, each against a
service configured for it; this module sends what the default configuration must survive.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)

from tests import hostile_corpus  # noqa: E402
from tests.process_watch import (  # noqa: E402
    cpu_seconds,
    peak_resident_bytes,
    reset_peak,
    resident_bytes,
    unexpected_sockets,
)
from tests.service_client import (  # noqa: E402
    HTTP_TIMEOUT_S,
    TestService,
    b64,
    fields,
    grpc_call,
    post,
    tiny_model_dir,
)
from tests.serving_helpers import TINY_LABELS  # noqa: E402
from tests.video_corpus import costly_to_decode, encode_video  # noqa: E402

CANARY = "canary.mp4"
MIB = 1024 * 1024
NOT_A_CONTAINER = "video: not a decodable video container"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The service's working directory, holding the canary (a real, classifiable video)."""
    folder = tmp_path_factory.mktemp("hostile_cwd")
    encode_video(folder / CANARY)
    return folder


@pytest.fixture(scope="module")
def service(tmp_path_factory, calibrate_bn, workdir) -> Iterator[TestService]:
    model_dir = tiny_model_dir(tmp_path_factory, calibrate_bn)
    with TestService(model_dir, tmp_path_factory.mktemp("hostile"), cwd=workdir) as process:
        yield process


@pytest.fixture(scope="module")
def honest_video(tmp_path_factory) -> str:
    return b64(encode_video(tmp_path_factory.mktemp("honest") / "honest.mp4", seed=3))


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile_material")


def _age_atime(path: Path) -> float:
    """Sets the file's access time well before its modification time (so that a relatime mount
    records the next read) and returns it."""
    status = path.stat()
    os.utime(path, (status.st_mtime - 1000, status.st_mtime))
    return path.stat().st_atime


@pytest.fixture(autouse=True)
def nothing_escaped(service: TestService, workdir: Path, honest_video: str) -> Iterator[None]:
    """Around every test: the canary is never read, the service holds no socket it should not,
    and an honest request is classified afterwards."""
    canary = workdir / CANARY
    atime = _age_atime(canary)
    yield
    assert canary.stat().st_atime == atime, "the service read a file named in an upload"
    own_ports = {service.http_port, service.rpc_port, service.metrics_port}
    assert unexpected_sockets(service.process.pid, own_ports) == []
    assert fields(post(service, ["video"], [honest_video]))["label"] in TINY_LABELS


@dataclass(frozen=True)
class Upload:
    """One hostile upload and the answers it may get (err_no and the start of err_msg)."""

    name: str
    build: Callable[[Path, Path], bytes]  # (canary path, scratch folder) -> upload
    err_nos: tuple[int, ...]
    message: str = ""


UPLOADS = [
    Upload("ffconcat, relative path", lambda canary, _: hostile_corpus.ffconcat_list(CANARY),
           (52,), NOT_A_CONTAINER),
    Upload("ffconcat, absolute path", lambda canary, _: hostile_corpus.ffconcat_list(str(canary)),
           (52,), NOT_A_CONTAINER),
    Upload("HLS playlist, relative path", lambda canary, _: hostile_corpus.hls_playlist(CANARY),
           (52,), NOT_A_CONTAINER),
    Upload("HLS playlist, file URL",
           lambda canary, _: hostile_corpus.hls_playlist(f"file://{canary}"), (52,),
           NOT_A_CONTAINER),
    Upload("SDP description", lambda canary, _: hostile_corpus.sdp_description(45454), (52,),
           NOT_A_CONTAINER),
    # The demuxer may read the samples from the file itself or refuse it; never from the canary.
    Upload("MP4 with an external data reference",
           lambda canary, folder: hostile_corpus.mp4_with_external_data(str(canary), folder),
           (0, 52)),
    Upload("Matroska segment shorter than its clusters",
           lambda canary, folder: hostile_corpus.matroska_with_short_segment(folder), (0, 52)),
    Upload("resolution grows past the pixel limit mid-stream",
           lambda canary, folder: hostile_corpus.growing_resolution((64, 48), (4608, 2592),
                                                                    large_frames=6),
           (52, 53), "video: "),
    Upload("declared 1,000,000 frames per second",
           lambda canary, folder: hostile_corpus.absurd_frame_rate(folder), (0, 52, 53)),
    Upload("200,000 audio packets beside 8 video frames",
           lambda canary, folder: hostile_corpus.many_side_packets(200_000, folder), (0, 52, 53)),
]


@pytest.mark.parametrize("upload", UPLOADS, ids=[upload.name for upload in UPLOADS])
def test_hostile_upload_over_rest(service, workdir, material, upload: Upload) -> None:
    data = upload.build(workdir / CANARY, material)
    answer = post(service, ["video"], [b64(data)])
    assert answer["err_no"] in upload.err_nos, answer["err_msg"]
    assert answer["err_msg"].startswith(upload.message)
    assert "Traceback" not in answer["err_msg"] and str(material) not in answer["err_msg"]


GRPC_UPLOADS = [upload for upload in UPLOADS if upload.err_nos == (52,)][:2] + UPLOADS[4:5]


@pytest.mark.parametrize("upload", GRPC_UPLOADS, ids=[upload.name for upload in GRPC_UPLOADS])
def test_hostile_upload_over_grpc(service, workdir, material, upload: Upload) -> None:
    answer = grpc_call(service, ["video"], [b64(upload.build(workdir / CANARY, material))])
    assert (answer.err_no, answer.err_msg[:len(upload.message)]) == (52, upload.message)


def _concurrently(count: int, send: Callable[[], dict]) -> list[dict]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: send(), range(count)))


def _peak_growth(service: TestService, work: Callable[[], object]) -> int:
    """How far the service's resident memory rose above its size before `work` ran."""
    pid = service.process.pid
    reset_peak(pid)
    before = resident_bytes(pid)
    work()
    return peak_resident_bytes(pid) - before


def test_one_frame_4k_dense_video_decodes_that_frame_once(service, material) -> None:
    """Dense sampling of a one-frame 4096x2160 video asks for the same frame at every index; it
    is decoded and scaled once, so 8 such requests at once cost about 8 frames, not 8 x 16."""
    video = b64(hostile_corpus.one_frame_video(4096, 2160, material))
    answers: list[dict] = []
    growth = _peak_growth(service, lambda: answers.extend(_concurrently(
        8, lambda: post(service, ["video", "mode"], [video, "dense"]))))
    assert [answer["err_no"] for answer in answers] == [0] * 8
    assert growth < 600 * MIB, f"{growth / MIB:.0f} MiB"


def test_one_4k_raw_frame_dense_is_not_copied_per_index(service) -> None:
    frame = np.zeros((1, 2160, 4096, 3), dtype=np.uint8)
    frame[0, :1080] = 90
    keys, values = ["frames", "frames_shape", "mode"], [b64(frame.tobytes()), "(1, 2160, 4096, 3)",
                                                        "dense"]
    answers: list[dict] = []
    growth = _peak_growth(service, lambda: answers.extend(_concurrently(
        4, lambda: post(service, keys, values))))
    assert [answer["err_no"] for answer in answers] == [0] * 4
    assert growth < 900 * MIB, f"{growth / MIB:.0f} MiB"


def _raw_grpc(service: TestService, message: bytes) -> bytes:
    return hostile_corpus.send_raw_grpc(f"127.0.0.1:{service.rpc_port}", message, HTTP_TIMEOUT_S)


def test_tensors_flood_over_grpc_costs_no_memory(service) -> None:
    from paddle_serving_server.pipeline.proto import pipeline_service_pb2

    message = hostile_corpus.grpc_tensors_flood(1_000_000)
    replies: list[bytes] = []
    growth = _peak_growth(service, lambda: replies.append(_raw_grpc(service, message)))
    answer = pipeline_service_pb2.Response.FromString(replies[0])
    assert answer.err_no == 51 and "tensors" in answer.err_msg
    assert growth < 48 * MIB, f"{growth / MIB:.0f} MiB"


PROFILE_KEY = "pipeline.profile"


def test_profile_request_returns_no_server_internals(service, honest_video) -> None:
    """Paddle Serving answers `pipeline.profile: 1` with every op's timings and its process id."""
    rest = post(service, ["video", PROFILE_KEY], [honest_video, "1"])
    remote = grpc_call(service, ["video", PROFILE_KEY], [honest_video, "1"])
    for keys, values in ((rest["key"], rest["value"]), (list(remote.key), list(remote.value))):
        assert PROFILE_KEY not in keys
        assert not any(str(service.process.pid) in value and "PID" in value for value in values)


def test_costly_sparse_decode_leaves_no_work_running(service) -> None:
    """One keyframe, then thousands of predicted 1280x720 frames: the sampled frames need a
    long decode on the two-decoder path. Whatever the answer (refused by the decode budget,
    timed out or classified), the service's CPU use falls back to idle afterwards."""
    video = b64(costly_to_decode(6000, width=1280, height=720))
    answer = post(service, ["video"], [video])
    assert answer["err_no"] in (0, 53, 55), answer["err_msg"]
    pid = service.process.pid
    deadline = time.monotonic() + 15
    while True:
        used = cpu_seconds(pid)
        time.sleep(1.0)
        busy = cpu_seconds(pid) - used
        if busy < 0.25 or time.monotonic() > deadline:
            break
    assert busy < 0.25, f"the service still uses {busy:.2f} CPU seconds per second"
