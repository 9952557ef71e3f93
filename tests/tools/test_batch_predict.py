"""Batch classification of a corpus (`python -m serving.tools.predict --out ...`) against the real
service: every row equals the service's answer for the same file; a corrupt file is an error row
and a non-zero exit; an interrupted run (a real SIGINT) resumed with two workers gives the file an
uninterrupted run gives."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from serving.tools.batch_rows import ROW_FIELDS, TIMING_FIELDS, read_rows
from serving.tools.predict import EXIT_INTERRUPTED, main
from tests.service_client import REPO_ROOT, TestService, classify, one_engine, tiny_model_dir
from tests.serving_helpers import TINY_LABELS, write_video

CORRUPT = "jumping/corrupt.mp4"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, calibrate_bn) -> Path:
    return tiny_model_dir(tmp_path_factory, calibrate_bn)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Kinetics layout: two videos per class folder, one loose video, one corrupt file."""
    root = tmp_path_factory.mktemp("corpus")
    for index, label in enumerate(TINY_LABELS):
        (root / label).mkdir()
        for copy in range(2):
            seed = 2 * index + copy
            write_video(root / label / f"clip{copy}.mp4", num_frames=30 + 5 * seed, seed=seed)
    write_video(root / "loose.mp4", num_frames=40, seed=9)
    (root / CORRUPT).write_bytes(np.random.RandomState(3).bytes(3000))
    (root / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory):
    with TestService(model_dir, tmp_path_factory.mktemp("batch_service"), one_engine) as running:
        yield running


def _without_timings(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in TIMING_FIELDS} for row in rows]


def _assert_rows_equal_the_service(rows: list[dict], corpus: Path, service, **options: str) -> None:
    for row in rows:
        if row["path"] == CORRUPT:
            assert row["error"].startswith("video:") and row["label"] is None
            continue
        served = json.loads(classify(service, corpus / row["path"], **options)["topk"])
        assert row["error"] is None
        assert [(c["class_id"], c["label"]) for c in row["topk"]] == [
            (c["class_id"], c["label"]) for c in served]
        np.testing.assert_allclose([c["score"] for c in row["topk"]],
                                   [c["score"] for c in served], atol=1.5e-6)
        assert (row["label"], row["class_id"], row["score"]) == (
            row["topk"][0]["label"], row["topk"][0]["class_id"], row["topk"][0]["score"])


def test_folder_rows_equal_the_service_answers(service, model_dir, corpus, tmp_path, capsys) -> None:
    out = tmp_path / "results.jsonl"
    code = main(["--model-dir", str(model_dir), "--video", str(corpus), "--out", str(out),
                 "--config", str(service.config), "--topk", "3", "--mode", "uniform"])
    printed = capsys.readouterr()

    assert code == 1  # the corrupt file failed; every other video was still classified
    rows = read_rows(out, "jsonl")
    assert [row["path"] for row in rows] == sorted(
        [f"{label}/clip{copy}.mp4" for label in TINY_LABELS for copy in range(2)]
        + ["loose.mp4", CORRUPT])
    assert all(list(row) == list(ROW_FIELDS) for row in rows)
    _assert_rows_equal_the_service(rows, corpus, service, topk="3", mode="uniform")
    assert {row["path"]: row["expected"] for row in rows}["loose.mp4"] is None
    assert all(row["expected"] == row["path"].split("/")[0] for row in rows if "/" in row["path"])

    correct = sum(row["label"] == row["expected"] for row in rows if row["label"])
    assert f"top-1 accuracy {correct / 6:.1%} ({correct}/6 videos" in printed.out
    assert "8 videos, 1 failed" in printed.out
    with (tmp_path / "results.jsonl.confusion.csv").open() as file:
        matrix = list(csv.reader(file))
    assert matrix[0][1:] == list(TINY_LABELS) and [line[0] for line in matrix[1:]] == list(TINY_LABELS)
    assert sum(int(cell) for line in matrix[1:] for cell in line[1:]) == 6
    assert "video/s" in printed.err  # the progress bar


def test_list_file_rows_as_csv_equal_the_dense_answers(service, model_dir, corpus, tmp_path) -> None:
    listing = tmp_path / "test.list"
    listing.write_text("".join(f"{label}/clip0.mp4 {index}\n" for index, label in enumerate(TINY_LABELS)))
    out = tmp_path / "results.csv"
    code = main(["--model-dir", str(model_dir), "--video", str(listing), "--root", str(corpus),
                 "--out", str(out), "--config", str(service.config), "--topk", "2",
                 "--mode", "dense"])
    assert code == 0
    rows = read_rows(out, "csv")
    assert [(row["path"], row["expected"]) for row in rows] == [
        (f"{label}/clip0.mp4", label) for label in TINY_LABELS]
    _assert_rows_equal_the_service(rows, corpus, service, topk="2", mode="dense")


def test_timeline_rows_equal_the_service_segments(service, model_dir, corpus, tmp_path) -> None:
    out = tmp_path / "timeline.jsonl"
    options = {"window_s": "1.0", "stride_s": "0.5", "min_score": "0.2"}
    code = main(["--model-dir", str(model_dir), "--video", str(corpus / "waving"), "--out", str(out),
                 "--config", str(service.config), "--mode", "timeline",
                 *[arg for key, value in options.items() for arg in (f"--{key.replace('_', '-')}", value)]])
    assert code == 0
    for row in read_rows(out, "jsonl"):
        served = classify(service, corpus / "waving" / row["path"], mode="timeline", **options)
        assert row["label"] is None and row["topk"] is None
        assert row["timeline_stats"] == json.loads(served["timeline_stats"])
        assert row["segments"] == json.loads(served["segments"])
        assert row["timeline_stats"]["windows"] >= 3


def _run_until_interrupted(model_dir: Path, corpus: Path, out: Path, after_rows: int) -> int:
    """Starts the command line, sends it a real SIGINT once `after_rows` rows are in `out`."""
    command = [sys.executable, "-m", "serving.tools.predict", "--model-dir", str(model_dir),
               "--video", str(corpus), "--out", str(out), "--mode", "dense", "--threads", "1"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None:
            if out.is_file() and out.read_text().count("\n") >= after_rows:
                process.send_signal(signal.SIGINT)
                break
            time.sleep(0.005)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert "interrupted" in stderr, stderr[-2000:]
    return process.returncode


def test_resume_after_a_real_interrupt_gives_the_uninterrupted_file(model_dir, tmp_path) -> None:
    corpus = tmp_path / "many"
    corpus.mkdir()
    for seed in range(24):
        write_video(corpus / f"v{seed:02d}.mp4", num_frames=60, width=160, height=120, seed=seed)
    (corpus / "v05.mp4").write_bytes(b"\x00" * 4000)  # a failure in the interrupted part
    whole = tmp_path / "whole.jsonl"
    assert main(["--model-dir", str(model_dir), "--video", str(corpus), "--out", str(whole),
                 "--mode", "dense", "--threads", "1"]) == 1

    resumed = tmp_path / "resumed.jsonl"
    assert _run_until_interrupted(model_dir, corpus, resumed, after_rows=6) == EXIT_INTERRUPTED
    interrupted = read_rows(resumed, "jsonl")
    assert 6 <= len(interrupted) < 24
    with resumed.open("a") as file:  # what a kill in the middle of a write leaves
        file.write('{"path": "v2')
    assert main(["--model-dir", str(model_dir), "--video", str(corpus), "--out", str(resumed)]) == 2
    code = main(["--model-dir", str(model_dir), "--video", str(corpus), "--out", str(resumed),
                 "--mode", "dense", "--resume", "--workers", "2"])

    assert code == 1  # v05 failed (in the interrupted part): the whole file has a failure
    assert _without_timings(read_rows(resumed, "jsonl")) == _without_timings(read_rows(whole, "jsonl"))
    assert resumed.read_text().count("\n") == 24


def test_usage_errors_exit_2_with_the_reason(model_dir, tmp_path, capsys) -> None:
    assert main(["--model-dir", str(model_dir), "--video", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    listing = tmp_path / "bad.list"
    listing.write_text("a.mp4 7\n")
    assert main(["--model-dir", str(model_dir), "--video", str(listing)]) == 2
    assert "has label 7, but the model's classes are 0..2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model-dir", str(model_dir), "--video", str(listing), "--window-s", "2"])
    assert "need --mode timeline" in capsys.readouterr().err
