"""The real service: Paddle Serving pipeline + REST front end + gRPC, a real exported PP-TSMv2,
real video files. One server start for the module (it takes seconds); every test talks to it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from serving.tools.launcher import free_port, port_is_free
from tests.service_client import (
    DEFAULT_CONFIG,
    TestService,
    b64,
    classify,
    fields,
    post,
    serving_env,
    tiny_model_dir,
)
from tests.serving_helpers import TINY_LABELS, raw_frames, write_video

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS = REPO_ROOT / "client"
# Auto-batching on (the CPU config turns it off) with a wide window, so that concurrent test
# requests reliably share a network batch.
BATCH_SIZE = 4
BATCHING_WINDOW_MS = 300


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    files = {f"clip{seed}": write_video(folder / f"clip{seed}.mp4", seed=seed) for seed in range(4)}
    files["broken"] = folder / "broken.mp4"
    files["broken"].write_bytes(np.random.RandomState(5).bytes(4000))
    return files


def _wide_batching_window(config: dict) -> None:
    config["op"]["pptsm"]["batch_size"] = BATCH_SIZE
    config["op"]["pptsm"]["auto_batching_timeout"] = BATCHING_WINDOW_MS


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory):
    process = TestService(model_dir, tmp_path_factory.mktemp("service"), _wide_batching_window)
    with process:
        yield process
    assert port_is_free(process.http_port) and port_is_free(process.rpc_port)


def test_ping_answers_model_identity(service) -> None:
    model = json.loads(fields(post(service, ["ping"], [""]))["model"])
    assert model == {"name": "tiny", "version": "test-1", "num_classes": len(TINY_LABELS)}


def test_video_over_http(service, videos) -> None:
    result = classify(service, videos["clip0"], topk="3")
    ranked = json.loads(result["topk"])
    assert [entry["label"] for entry in ranked] == [
        TINY_LABELS[entry["class_id"]] for entry in ranked]
    assert sorted(entry["class_id"] for entry in ranked) == [0, 1, 2]
    assert result["label"] == ranked[0]["label"] and result["class_id"] == str(ranked[0]["class_id"])
    assert float(result["score"]) == pytest.approx(ranked[0]["score"], abs=1e-6)
    assert sum(entry["score"] for entry in ranked) == pytest.approx(1.0, abs=1e-5)
    assert set(json.loads(result["timing_ms"])) == {"decode", "sample", "normalize", "infer"}


def test_dense_mode_and_raw_frames(service, videos) -> None:
    dense = classify(service, videos["clip1"], mode="dense", topk="1")
    assert dense["label"] in TINY_LABELS and len(json.loads(dense["topk"])) == 1
    frames = raw_frames()
    answer = post(service, ["frames", "frames_shape"],
                   [b64(frames.tobytes()), str(frames.shape)])
    assert fields(answer)["label"] in TINY_LABELS


def test_different_videos_get_different_scores(service, videos) -> None:
    scores = {json.dumps(json.loads(classify(service, videos[name], topk="3")["topk"]))
              for name in ("clip0", "clip1", "clip2")}
    assert len(scores) > 1, "the answer should depend on the video"


def test_auto_batched_results_equal_one_by_one(service, videos) -> None:
    names = ["clip0", "clip1", "clip2", "clip3"]
    alone = {name: json.loads(classify(service, videos[name], topk="3")["topk"]) for name in names}
    together: dict[str, dict[str, str]] = {}

    def send(name: str) -> None:
        together[name] = classify(service, videos[name], topk="3")

    threads = [threading.Thread(target=send, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name in names:
        batched = json.loads(together[name]["topk"])
        assert [e["class_id"] for e in batched] == [e["class_id"] for e in alone[name]]
        np.testing.assert_allclose([e["score"] for e in batched],
                                   [e["score"] for e in alone[name]], atol=2e-6)
    infer_ms = [json.loads(together[name]["timing_ms"])["infer"] for name in names]
    assert len(set(infer_ms)) < len(names), "concurrent requests should share a network batch"


def _run_client(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLIENTS / script), *args], capture_output=True,
                          text=True, timeout=120)


def _client_folder(videos: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "upload"
    folder.mkdir()
    for name in ("clip0", "broken"):
        (folder / videos[name].name).write_bytes(videos[name].read_bytes())
    (folder / "notes.txt").write_text("not a video, skipped by the clients")
    return folder


def test_http_client_reports_each_file_and_fails_overall(service, videos, tmp_path) -> None:
    folder = _client_folder(videos, tmp_path)
    done = _run_client("pipeline_http_client.py", str(folder), "--url", service.url, "--topk", "2")
    assert done.returncode == 1, done.stderr
    broken_line, good_line, summary = done.stdout.splitlines()
    assert summary.startswith("2 videos, 1 failed; median latency ")
    assert broken_line == (f"{folder / 'broken.mp4'}: error 52: "
                           "video: not a decodable video container")
    assert good_line.startswith(f"{folder / 'clip0.mp4'}: ") and "(score 0." in good_line
    assert "; next: " in good_line


def test_rpc_client_json_output(service, videos, tmp_path) -> None:
    """gRPC through Paddle Serving's PipelineClient answers exactly what HTTP answers."""
    folder = _client_folder(videos, tmp_path)
    done = _run_client("pipeline_rpc_client.py", str(folder), "--port", str(service.rpc_port),
                       "--json", "--topk", "2")
    assert done.returncode == 1, done.stderr
    broken, good = (json.loads(line) for line in done.stdout.splitlines())
    assert (broken["err_no"], broken["err_msg"]) == (52, "video: not a decodable video container")
    assert good["err_no"] == 0 and good["model"]["name"] == "tiny"
    assert good["topk"] == json.loads(classify(service, videos["clip0"], topk="2")["topk"])


def test_client_all_good_exits_zero(service, videos) -> None:
    done = _run_client("pipeline_http_client.py", str(videos["clip2"]), "--url", service.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"{videos['clip2']}: ")


def test_client_frames_option_sends_paddlevideo_raw_frames(service, videos) -> None:
    """--frames decodes the clip in the client and sends PaddleVideo's frames/frames_shape; the
    service samples the same frames from them as from the file."""
    by_file = classify(service, videos["clip1"], topk="3")
    done = _run_client("pipeline_http_client.py", str(videos["clip1"]), "--url", service.url,
                       "--frames", "--json", "--topk", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    by_frames = json.loads(done.stdout)
    assert by_frames["timing_ms"]["decode"] >= 0
    assert [entry["class_id"] for entry in by_frames["topk"]] == [
        entry["class_id"] for entry in json.loads(by_file["topk"])]
    np.testing.assert_allclose([entry["score"] for entry in by_frames["topk"]],
                               [entry["score"] for entry in json.loads(by_file["topk"])],
                               atol=2e-6)


def test_client_without_service_or_videos(tmp_path) -> None:
    video = write_video(tmp_path / "v.mp4")
    unreachable = _run_client("pipeline_http_client.py", str(video),
                              "--url", f"http://127.0.0.1:{free_port()}/pptsm/prediction")
    assert unreachable.returncode == 1
    assert unreachable.stdout.startswith(f"{video}: error -1: cannot reach")
    missing = _run_client("pipeline_http_client.py", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr


@pytest.mark.parametrize("breakage, message", [
    ("params", "ppTSMv2.pdiparams: model file missing"),
    ("meta", "model_meta.json: no such metadata file"),
    ("thread_op", "dag.is_thread_op: must be true"),
    ("limits", "request_limits.max_bytes: 268435456 bytes are more than 268435456 in base64"),
    ("metrics", "dag.tracer.interval_s: must be >= 1 when dag.enable_prometheus is true"),
])
def test_incomplete_setup_stops_with_a_clear_error(model_dir: Path, tmp_path: Path,
                                                    breakage: str, message: str) -> None:
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if breakage == "params":
        (broken / "serving_server" / "ppTSMv2.pdiparams").unlink()
    elif breakage == "meta":
        (broken / "model_meta.json").unlink()
    elif breakage == "thread_op":
        config["dag"]["is_thread_op"] = False
    elif breakage == "metrics":
        config["dag"]["tracer"]["interval_s"] = -1
    else:
        config["request_limits"]["max_bytes"] = 256 * 1024 * 1024
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "serving.pipeline.service", "--model-dir", str(broken),
         "--config", str(config_path), "--http-port", str(free_port()),
         "--rpc-port", str(free_port())],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
        env={**os.environ, **serving_env(tmp_path)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in done.stderr
