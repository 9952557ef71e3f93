"""Every container and codec this machine can encode, through the real service, with the answer
checked against the same file run offline: open_video -> the stage functions (sample_frames,
network_views, ranked_classes) -> Predictor, in this process. Uniform for every codec, dense
for two; the service and the offline path must agree to the 6 decimals the response carries.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.core.metadata import load_meta
from serving.core.predictor import Predictor
from serving.core.preprocess.decode import open_video
from serving.core.stages import network_views, ranked_classes, sample_frames
from tests.service_client import TestService, classify, one_engine, tiny_model_dir
from tests.video_corpus import encode_video

# Scores travel rounded to 6 decimals.
SCORE_TOLERANCE = 2e-6
CODECS = {
    "mp4 H.264": dict(suffix=".mp4", codec="libx264"),
    "mp4 MPEG-4 Part 2": dict(suffix=".mp4", codec="mpeg4"),
    "mp4 HEVC": dict(suffix=".mp4", codec="libx265"),
    "avi MJPEG": dict(suffix=".avi", codec="mjpeg", pix_fmt="yuvj420p"),
    "avi XVID": dict(suffix=".avi", codec="mpeg4", codec_tag="XVID"),
    "mkv H.264": dict(suffix=".mkv", codec="libx264"),
    "mkv AV1": dict(suffix=".mkv", codec="libsvtav1"),
    "webm VP8": dict(suffix=".webm", codec="libvpx"),
    "webm VP9": dict(suffix=".webm", codec="libvpx-vp9"),
    "mov QuickTime Animation": dict(suffix=".mov", codec="qtrle", pix_fmt="rgb24"),
}
DENSE_CODECS = ("mp4 H.264", "avi MJPEG")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


@pytest.fixture(scope="module")
def service(model_dir, tmp_path_factory):
    with TestService(model_dir, tmp_path_factory.mktemp("codecs"), one_engine) as process:
        yield process


@pytest.fixture(scope="module")
def offline(model_dir):
    """The offline path's classifier: (video file, mode) -> ranked [(class_id, score)]."""
    meta = load_meta(model_dir)
    predictor = Predictor.from_model_dir(model_dir)
    spec = meta.preprocess

    def classify_offline(path: Path, mode: str) -> list[tuple[int, float]]:
        with open_video(path.read_bytes()) as source:
            frames = sample_frames(source, spec, mode)
        views = network_views(frames, spec, mode)
        return ranked_classes(predictor.predict(views), meta.num_classes)

    return classify_offline


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("codec_videos")
    files = {}
    for index, (name, options) in enumerate(CODECS.items()):
        options = dict(options)
        suffix = options.pop("suffix")
        files[name] = encode_video(folder / f"clip{index}{suffix}", seed=index, **options)
    return files


def _assert_same_ranking(answer: dict[str, str], expected: list[tuple[int, float]]) -> None:
    ranked = json.loads(answer["topk"])
    assert [entry["class_id"] for entry in ranked] == [class_id for class_id, _ in expected]
    for entry, (_, score) in zip(ranked, expected):
        assert entry["score"] == pytest.approx(score, abs=SCORE_TOLERANCE)


@pytest.mark.parametrize("codec", list(CODECS))
def test_codec_through_the_service_equals_offline(service, videos, offline, codec: str) -> None:
    answer = classify(service, videos[codec], topk="3", mode="uniform")
    _assert_same_ranking(answer, offline(videos[codec], "uniform"))


@pytest.mark.parametrize("codec", DENSE_CODECS)
def test_dense_through_the_service_equals_offline(service, videos, offline, codec: str) -> None:
    answer = classify(service, videos[codec], topk="3", mode="dense")
    _assert_same_ranking(answer, offline(videos[codec], "dense"))
