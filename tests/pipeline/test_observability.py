"""The service's library parts around the pipeline: stage deadlines, error outcomes, the request
log, the metrics and the observer that ties them to each request, and the op wrapper that turns
an unexpected exception into an internal-error answer."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline import RequestOp  # noqa: E402
from paddle_serving_server.pipeline.proto import pipeline_service_pb2  # noqa: E402

from serving.pipeline.deadline import run_with_deadline  # noqa: E402
from serving.core.errors import (  # noqa: E402
    DeadlineExceededError,
    DecodeError,
    InternalError,
    outcome_of,
)
from serving.core.metadata import InferenceSpec, ModelMeta, PreprocessSpec  # noqa: E402
from serving.pipeline.metrics import ServiceMetrics  # noqa: E402
from serving.pipeline.observer import RequestObserver  # noqa: E402
from serving.pipeline.ops import ClipJob, NormalizeOp  # noqa: E402
from serving.pipeline.protocol import ClassifyRequest  # noqa: E402
from serving.pipeline.request_log import RequestRecord, RequestSummary, configure_request_log  # noqa: E402
from serving.pipeline import serving_logs  # noqa: E402


def test_work_within_the_deadline_returns_its_value_and_its_errors() -> None:
    assert run_with_deadline(lambda: 42, 5.0, stage="sample") == 42
    assert run_with_deadline(lambda: threading.current_thread(), None, stage="sample") \
        is threading.current_thread()  # no limit: no helper thread

    def fails() -> None:
        raise DecodeError("video: broken")

    with pytest.raises(DecodeError, match="video: broken"):
        run_with_deadline(fails, 5.0, stage="sample")


def test_work_past_the_deadline_is_abandoned_and_stopped() -> None:
    stopped = threading.Event()

    def endless() -> None:
        try:
            while True:  # Python-level work: stopped at its next instruction once abandoned
                time.sleep(0.01)
        finally:
            stopped.set()

    with pytest.raises(DeadlineExceededError) as info:
        run_with_deadline(endless, 0.05, stage="decode")
    assert info.value.code == 55
    assert info.value.message.startswith(
        "timeout: the decode stage took longer than its limit of 0.05 s (op.decode.timeout)")
    assert stopped.wait(timeout=10), "the abandoned work should have been interrupted"


@pytest.mark.parametrize("err_no, outcome", [
    (0, "ok"), (51, "invalid_input"), (52, "decode_error"), (53, "limit_exceeded"),
    (54, "internal_error"), (55, "timeout"), (6000, "framework_error"), (10000, "framework_error"),
])
def test_every_err_no_has_an_outcome(err_no: int, outcome: str) -> None:
    assert outcome_of(err_no) == outcome


def test_summary_describes_a_request_without_its_payload() -> None:
    summary = RequestSummary.of(["video", "topk", "k" * 500], ["QUJD" * 1000, "3", "x"])
    assert summary.keys == ("video", "topk", "k" * 40)
    assert summary.request_bytes == 4002 and summary.options == {"topk": "3"}
    assert "QUJD" not in json.dumps(summary.__dict__)


def test_summary_of_malformed_lists() -> None:
    summary = RequestSummary.of([f"key{i}" for i in range(50)], ["mode-" + "m" * 100])
    assert len(summary.keys) == 10 and summary.options == {}


def test_record_is_one_json_line_with_a_utc_timestamp() -> None:
    record = RequestRecord(request_id="7", outcome="decode_error", err_no=52,
                           err_msg="video: " + "e" * 1000, duration_ms=12.345,
                           summary=RequestSummary.of(["video", "mode"], ["AAAA", "dense"]))
    line = record.to_json(now=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc))
    assert "\n" not in line
    data = json.loads(line)
    assert data["ts"] == "2025-01-02T03:04:05.678Z"
    assert (data["request_id"], data["outcome"], data["err_no"]) == ("7", "decode_error", 52)
    assert len(data["err_msg"]) == 300 and data["duration_ms"] == 12.35
    assert data["options"] == {"mode": "dense"} and data["request_bytes"] == 9


def test_request_log_writes_bare_lines_to_its_file(tmp_path) -> None:
    path = tmp_path / "requests.jsonl"
    logger = configure_request_log(path)
    logger.info('{"a": 1}')
    logger.info('{"a": 2}')
    for handler in logger.handlers:
        handler.flush()
    assert path.read_text().splitlines() == ['{"a": 1}', '{"a": 2}']
    assert logger.propagate is False
    configure_request_log(None)  # back to stderr, releasing the file


def _observer() -> tuple[RequestObserver, CollectorRegistry, list[str]]:
    registry = CollectorRegistry()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("test.observer")
    logger.handlers = [Collect()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return RequestObserver(ServiceMetrics.create(registry), logger), registry, lines


def test_observer_gives_ids_counts_outcomes_and_logs_each_request() -> None:
    observer, registry, lines = _observer()
    request = pipeline_service_pb2.Request(key=["video", "topk"], value=["AAAA", "2"])
    pending = observer.begin(request)
    assert request.logid > 0 and pending.request_id == str(request.logid)
    assert registry.get_sample_value("pptsm_requests_in_flight") == 1
    ranked = [{"class_id": 1, "label": "jump", "score": 0.9}]
    response = pipeline_service_pb2.Response(
        err_no=0, key=["label", "topk", "timing_ms"],
        value=["jump", json.dumps(ranked), json.dumps({"decode": 2.0, "infer": 8.0})])
    observer.finish(pending, response)
    assert dict(zip(response.key, response.value))["request_id"] == pending.request_id
    assert registry.get_sample_value("pptsm_requests_in_flight") == 0
    assert registry.get_sample_value("pptsm_requests_total",
                                     {"outcome": "ok", "err_no": "0"}) == 1
    assert registry.get_sample_value("pptsm_stage_duration_seconds_sum", {"stage": "infer"}) \
        == pytest.approx(0.008)
    (line,) = [json.loads(text) for text in lines]
    assert line["request_id"] == pending.request_id and line["label"] == "jump"
    assert line["timing_ms"] == {"decode": 2.0, "infer": 8.0} and "AAAA" not in lines[0]


def test_observer_keeps_the_clients_logid_and_counts_errors() -> None:
    observer, registry, lines = _observer()
    request = pipeline_service_pb2.Request(key=["video"], value=["x"], logid=99)
    pending = observer.begin(request)
    observer.finish(pending, pipeline_service_pb2.Response(err_no=52, err_msg="video: bad"))
    assert pending.request_id == "99"
    assert registry.get_sample_value("pptsm_requests_total",
                                     {"outcome": "decode_error", "err_no": "52"}) == 1
    assert json.loads(lines[0])["err_msg"] == "video: bad"


def test_an_op_that_raises_answers_an_internal_error_naming_the_stage() -> None:
    """NormalizeOp on a job whose frames never arrived: a bug, not the request's fault."""
    op = NormalizeOp(RequestOp(), meta=_meta_with(PreprocessSpec(num_seg=8, scale_size=64,
                                                                 crop_size=56)))
    job = ClipJob(ClassifyRequest(topk=1, mode="uniform", video=b"v"))
    data, skip, err_no, err_msg = op.preprocess({"decode": {"job": job}}, data_id=1, log_id=7)
    assert (data, skip, err_no) == (None, False, InternalError.CODE)
    assert err_msg == ("internal error in the normalize stage (request 7); reported in the "
                       "server log")


def _meta_with(spec: PreprocessSpec) -> ModelMeta:
    return ModelMeta(name="m", version="1", architecture="pptsm_v2_lcnet", labels=("a", "b"),
                     preprocess=spec,
                     inference=InferenceSpec(format="pdmodel", model_file="m.pdmodel",
                                             params_file="m.pdiparams", input_name="x",
                                             input_shape=(-1, 8, 3, 56, 56), output_name="y",
                                             output_shape=(-1, 2)))


def test_exit_now_does_not_wait_for_abandoned_work_and_flushes_logs(tmp_path) -> None:
    """After the grace period the service ends with exit_now: a decode abandoned at its timeout
    may still run in a non-daemon pool thread, which a normal exit would wait for."""
    script = ("import logging, sys, threading, time\n"
              "from serving.pipeline.server import exit_now\n"
              "threading.Thread(target=time.sleep, args=(60,)).start()  # non-daemon\n"
              "logger = logging.getLogger('t')\n"
              "logger.addHandler(logging.StreamHandler(sys.stderr))\n"
              "logger.warning('last words')\n"
              "print('stopped')\n"
              "exit_now(0)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2],
                          env={**os.environ, "SERVING_LOG_PATH": str(tmp_path)})
    assert time.monotonic() - started < 30
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("stopped") and "last words" in done.stderr


@pytest.fixture()
def root_handlers_restored():
    """route_serving_logs replaces the root logger's handlers: put the test runner's back."""
    root, tracer = logging.getLogger(), logging.getLogger(serving_logs.TRACER_LOGGER)
    saved = (list(root.handlers), list(tracer.handlers))
    yield
    for logger, handlers in ((root, saved[0]), (tracer, saved[1])):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        for handler in handlers:
            logger.addHandler(handler)


def test_paddle_servings_logs_rotate_within_their_bound_and_errors_reach_stderr(
        tmp_path, monkeypatch, capsys, root_handlers_restored) -> None:
    monkeypatch.setattr(serving_logs.serving_logger, "log_dir", str(tmp_path))
    serving_logs.route_serving_logs(serving_logs.ServingLogSettings(max_bytes=4096, backups=1))
    dag_log = logging.getLogger("paddle_serving_server.pipeline.dag")
    for index in range(500):
        dag_log.info("(data_id=%d) Succ predict", index)
        logging.getLogger("paddle_serving_server.pipeline.operator").warning(
            "(data_id=%d) OP=decode skip process stage. with_serving=False", index)
    dag_log.error("(logid=7) Failed to pack RPC response package")
    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == ["pipeline.log", "pipeline.log.1", "pipeline.tracer"]
    assert all((tmp_path / name).stat().st_size <= 4096 + 200 for name in files)
    stderr = capsys.readouterr().err
    assert "Failed to pack RPC response package" in stderr
    assert "skip process stage" not in stderr and "Succ predict" not in stderr
