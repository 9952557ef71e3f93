"""Load, metrics and faults against the real service: a small load run with valid and invalid
videos through both clients (no lost or wrong answer, flat memory), the Prometheus endpoint, a
decode past the op timeout, and a graceful SIGTERM followed by a restart on the same ports.

One service for the module, with `op.sample.timeout` at 1 s: the test clips decode in
milliseconds, the costly clip needs seconds. The SIGTERM test ends that service, so it runs last.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from serving.tools.launcher import ServiceProcess, ping, port_is_free
from tests.service_client import TestService, b64, classify, fields, post, tiny_model_dir
from tests.serving_helpers import TINY_LABELS, write_video
from tests.video_corpus import costly_to_decode, truncated

CLIENTS = Path(__file__).resolve().parents[2] / "client"
SAMPLE_TIMEOUT_MS = 1000
COSTLY_FRAMES = 30000
# Resident memory may grow this much from the first third of the load run to its end (the
# issue's bound for 1000 requests is 10%; a 60-request run is noisier, hence generous).
RSS_GROWTH_BOUND = 0.25
IN_FLIGHT_REQUESTS = 8


def _one_second_sample_timeout(config: dict) -> None:
    config["op"]["sample"]["timeout"] = SAMPLE_TIMEOUT_MS


@pytest.fixture(scope="module")
def service(tmp_path_factory, calibrate_bn):
    model_dir = tiny_model_dir(tmp_path_factory, calibrate_bn)
    process = TestService(model_dir, tmp_path_factory.mktemp("load_faults"),
                          _one_second_sample_timeout)
    with process:
        yield process


@pytest.fixture(scope="module")
def mixed_videos(tmp_path_factory) -> Path:
    """Four valid clips and two invalid files with video names: what a load run sends."""
    folder = tmp_path_factory.mktemp("mixed")
    for seed in range(4):
        write_video(folder / f"clip{seed}.mp4", seed=seed)
    (folder / "random.mp4").write_bytes(np.random.RandomState(7).bytes(5000))
    (folder / "cut.mp4").write_bytes(truncated((folder / "clip0.mp4").read_bytes(), 0.5))
    return folder


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _load_run(client: str, target: list[str], folder: Path, repeat: int) -> dict:
    done = subprocess.run(
        [sys.executable, str(CLIENTS / client), str(folder), *target, "--concurrency", "8",
         "--repeat", str(repeat), "--topk", "3", "--json"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_load_run_loses_nothing_answers_right_and_keeps_memory_flat(service, mixed_videos) -> None:
    http, rpc = ["--url", service.url], ["--port", str(service.rpc_port)]
    first = _load_run("pipeline_http_client.py", http, mixed_videos, repeat=4)
    rss_after_first_third = _rss_kib(service.process.pid)
    second = _load_run("pipeline_rpc_client.py", rpc, mixed_videos, repeat=3)
    third = _load_run("pipeline_http_client.py", http, mixed_videos, repeat=3)
    rss_at_end = _rss_kib(service.process.pid)
    for summary in (first, second, third):
        assert summary["passed"] and summary["transport_errors"] == 0
        assert summary["wrong_answers"] == 0
        assert set(summary["answers_by_err_no"]) == {"0", "52"}
        assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert sum(summary["requests"] for summary in (first, second, third)) == 60
    assert rss_at_end <= rss_after_first_third * (1 + RSS_GROWTH_BOUND), (
        rss_after_first_third, rss_at_end)


def test_load_run_reports_a_missing_service(mixed_videos) -> None:
    done = subprocess.run([sys.executable, str(CLIENTS / "pipeline_http_client.py"),
                           str(mixed_videos), "--url", "http://127.0.0.1:9/pptsm/prediction",
                           "--concurrency", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "error: " in done.stderr and "cannot reach" in done.stderr


def _samples(service: TestService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the metrics endpoint, by (name, sorted labels)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(service.metrics_text())
            for sample in family.samples}


def test_metrics_count_requests_and_stages_by_outcome(service, mixed_videos) -> None:
    before = _samples(service)
    classify(service, mixed_videos / "clip1.mp4")
    assert post(service, ["video", "topk"], ["AAAA", "0"])["err_no"] == 51
    assert post(service, ["video"], [b64(mixed_videos / "random.mp4")])["err_no"] == 52
    after = _samples(service)

    def added(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert added("pptsm_requests_total", outcome="ok", err_no="0") >= 1
    assert added("pptsm_requests_total", outcome="invalid_input", err_no="51") == 1
    assert added("pptsm_requests_total", outcome="decode_error", err_no="52") == 1
    assert added("pptsm_request_duration_seconds_count", outcome="decode_error") == 1
    for stage in ("decode", "sample", "normalize", "infer"):
        assert added("pptsm_stage_duration_seconds_count", stage=stage) >= 1
    assert after[("pptsm_requests_in_flight", ())] == 0
    assert after[("process_resident_memory_bytes", ())] > 0
    # Paddle Serving's own metrics share the endpoint.
    assert ("pd_query_request_success_total", ()) in after


def test_decode_past_the_op_timeout_is_answered_and_the_service_goes_on(service,
                                                                        mixed_videos) -> None:
    answer = post(service, ["video"], [b64(costly_to_decode(COSTLY_FRAMES))])
    assert answer["err_no"] == 55
    assert answer["err_msg"].startswith(
        "timeout: the sample stage took longer than its limit of 1 s (op.sample.timeout)")
    assert classify(service, mixed_videos / "clip2.mp4")["label"] in TINY_LABELS
    assert ping(service.http_port)
    timeouts = [line for line in service.request_log_lines() if line["outcome"] == "timeout"]
    assert len(timeouts) == 1 and timeouts[0]["err_no"] == 55


def _requests_seen(service: TestService) -> float:
    """Requests the service has taken in so far: answered (any outcome) plus in flight."""
    samples = _samples(service)
    answered = sum(value for (name, _), value in samples.items() if name == "pptsm_requests_total")
    return answered + samples[("pptsm_requests_in_flight", ())]


def _wait_until_seen(service: TestService, count: float, deadline_s: float = 30.0) -> bool:
    """True once `count` requests have reached the pipeline: only those are "in flight" for a
    graceful stop; one whose connection is still waiting to be read is refused."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if _requests_seen(service) >= count:
            return True
        time.sleep(0.01)
    return False


def test_sigterm_answers_requests_in_flight_exits_0_and_a_restart_serves(
        service, mixed_videos) -> None:
    answers: list[dict] = []

    def send(seed: int) -> None:
        response = requests.post(service.url, json={
            "key": ["video", "mode"], "value": [b64(mixed_videos / f"clip{seed % 4}.mp4"), "dense"]},
            timeout=120)
        answers.append({"status": response.status_code, **response.json()})

    seen_before = _requests_seen(service)
    senders = [threading.Thread(target=send, args=(seed,)) for seed in range(IN_FLIGHT_REQUESTS)]
    for sender in senders:
        sender.start()
    assert _wait_until_seen(service, seen_before + IN_FLIGHT_REQUESTS), \
        "the requests never all reached the service"
    assert _samples(service)[("pptsm_requests_in_flight", ())] >= 1, "none left in flight"
    # SIGTERM to the main process only, as `docker stop` does; stop() then clears the group.
    assert service.stop(timeout=60) == 0
    for sender in senders:
        sender.join(timeout=60)
    assert len(answers) == IN_FLIGHT_REQUESTS
    assert all(answer["status"] == 200 and answer["err_no"] == 0 for answer in answers), answers
    assert "stopping: finishing the requests in flight" in service.log_tail(60)
    assert port_is_free(service.http_port) and port_is_free(service.rpc_port)

    restarted = ServiceProcess(service.model_dir, service.config, http_port=service.http_port,
                               rpc_port=service.rpc_port, log_path=service.work / "restart.log",
                               env=service.env, extra_args=service.extra_args)
    with restarted:
        assert fields(post(restarted, ["video"], [b64(mixed_videos / "clip3.mp4")]))["label"] \
            in TINY_LABELS
