"""In-process prediction (serving.tools.offline, `python -m serving.tools.predict`) against the real service:
the same file must get the same answer, because both run the same code."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from serving.core.stages import INFER, PREPROCESS_STAGES
from serving.tools.offline import OfflinePredictor
from serving.tools.benchmark import BENCHMARK_COLUMNS
from serving.tools.predict import main
from tests.service_client import TestService, classify, one_engine, tiny_model_dir
from tests.serving_helpers import TINY_LABELS, write_video

SPREAD = re.compile(r"(\d+\.\d) \((\d+\.\d)-(\d+\.\d)\)")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("offline_videos")
    return [write_video(folder / f"clip{seed}.mp4", num_frames=30 + 7 * seed, seed=seed)
            for seed in range(2)]


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory):
    with TestService(model_dir, tmp_path_factory.mktemp("offline_service"), one_engine) as running:
        yield running


@pytest.mark.parametrize("mode", ["uniform", "dense"])
def test_offline_answer_equals_the_service_answer(service, model_dir, videos, mode) -> None:
    offline = OfflinePredictor.from_service_config(model_dir, service.config)
    for video in videos:
        served = json.loads(classify(service, video, topk="3", mode=mode)["topk"])
        local = offline.classify(video.read_bytes(), topk=3, mode=mode)
        assert [(c.class_id, c.label) for c in local.ranked] == [
            (c["class_id"], c["label"]) for c in served]
        # The service rounds scores to 6 decimals in its answer.
        np.testing.assert_allclose([c.score for c in local.ranked],
                                   [c["score"] for c in served], atol=1.5e-6)


def test_prediction_reports_every_stage(model_dir, videos) -> None:
    prediction = OfflinePredictor(model_dir).classify(videos[0].read_bytes())
    assert set(prediction.stage_ms) == {*PREPROCESS_STAGES, INFER}
    assert prediction.preprocess_ms == pytest.approx(
        sum(prediction.stage_ms[s] for s in PREPROCESS_STAGES))
    assert prediction.total_ms >= prediction.preprocess_ms + prediction.infer_ms
    assert len(prediction.ranked) == len(TINY_LABELS)  # default top-5, capped at 3 classes
    assert sum(c.score for c in prediction.ranked) == pytest.approx(1.0, abs=1e-6)


def test_cli_prints_topk_then_the_benchmark_table(model_dir, videos, tmp_path, capsys) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for video in videos:
        (folder / video.name).write_bytes(video.read_bytes())
    (folder / "broken.mp4").write_bytes(np.random.RandomState(3).bytes(3000))
    (folder / "notes.txt").write_text("not a video")

    code = main(["--model-dir", str(model_dir), "--video", str(folder), "--topk", "2",
                 "--benchmark", "2", "--warmup", "1"])
    lines = capsys.readouterr().out.splitlines()

    assert code == 1  # one video failed, the others were still classified
    assert any(line.startswith("broken.mp4: error: video:") for line in lines)
    assert not any(line.startswith("notes.txt") for line in lines)
    for video in videos:
        (answer,) = [line for line in lines if line.startswith(f"{video.name}: ")]
        labels = [part.rsplit(" ", 1)[0] for part in answer.split(": ", 1)[1].split(" | ")]
        assert len(labels) == 2 and set(labels) <= set(TINY_LABELS)
    header = lines.index(next(line for line in lines if line.startswith("video ")))
    assert lines[header].split()[1:] == list(BENCHMARK_COLUMNS)
    assert "2 runs after 1 warm-up" in lines[header - 1] and "CPU threads" in lines[header - 1]
    rows = lines[header + 1:]
    assert [row.split()[0] for row in rows] == [video.name for video in videos]
    for row in rows:
        spreads = [tuple(map(float, m)) for m in SPREAD.findall(row)]
        assert len(spreads) == len(BENCHMARK_COLUMNS)
        assert all(low <= median <= high for median, low, high in spreads)


def test_cli_refuses_a_missing_video_path(model_dir, tmp_path, capsys) -> None:
    code = main(["--model-dir", str(model_dir), "--video", str(tmp_path / "nowhere")])
    assert code == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
