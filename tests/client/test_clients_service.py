"""The clients against the real service (tiny exported model, real video files, loopback): the
package installed into a fresh virtualenv, PPTSMClient over HTTP and gRPC, plain uploads, retries
through a proxy that refuses twice, a class-folder tree scored, and timeline lines."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pptsm_client import ClassifyError, PPTSMClient, Segment
from pptsm_client.report import segment_line

from serving.tools.launcher import free_port
from tests.service_client import TestService, classify, tiny_model_dir
from tests.serving_helpers import TINY_LABELS, write_video

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO_ROOT / "client"
RUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def service(tmp_path_factory, calibrate_bn) -> Iterator[TestService]:
    model_dir = tiny_model_dir(tmp_path_factory, calibrate_bn)
    with TestService(model_dir, tmp_path_factory.mktemp("clients_service")) as process:
        yield process


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Kinetics layout: two class folders named by the model's labels, one that is not."""
    root = tmp_path_factory.mktemp("kinetics")
    for seed, folder in enumerate((TINY_LABELS[0], TINY_LABELS[1].upper(), "misc")):
        (root / folder).mkdir()
        write_video(root / folder / f"clip{seed}.mp4", seed=seed)
    return root


@pytest.fixture(scope="module")
def clip(tree: Path) -> Path:
    return tree / TINY_LABELS[0] / "clip0.mp4"


def _client(script: str, *args: object, python: str = sys.executable,
            cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    command = [python, str(CLIENT_DIR / script)] if script.endswith(".py") else [script]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=RUN_TIMEOUT_S)


def _topk(answer: dict[str, str]) -> list[tuple[int, float]]:
    return [(entry["class_id"], entry["score"]) for entry in json.loads(answer["topk"])]


def _pairs(ranked: list) -> list[tuple[int, float]]:
    return [(entry["class_id"], entry["score"]) if isinstance(entry, dict)
            else (entry.class_id, entry.score) for entry in ranked]


def test_installed_package_in_a_fresh_virtualenv(service, clip, tmp_path) -> None:
    """`pip install --no-index` of the package's wheel into a plain venv (no dependency to fetch),
    then its console scripts, run away from the repository."""
    source = tmp_path / "src"
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    # The wheel is built with the project's setuptools: a fresh venv's bundled one predates
    # PEP 517 wheel building without the `wheel` package, and --no-index cannot fetch either.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=RUN_TIMEOUT_S)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True,
                   timeout=RUN_TIMEOUT_S)
    bin_dir = tmp_path / "venv" / "bin"
    wheel, = (tmp_path / "dist").glob("pptsm_client-*.whl")
    subprocess.run([str(bin_dir / "pip"), "install", "-q", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=RUN_TIMEOUT_S)

    done = _client(str(bin_dir / "pptsm-http"), clip, "--url", service.url, "--json", "--topk", 2,
                   cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _pairs(json.loads(done.stdout)["topk"]) == _topk(classify(service, clip, topk="2"))
    # gRPC needs Paddle Serving's modules, which a fresh venv lacks: a clear error, no traceback.
    rpc = _client(str(bin_dir / "pptsm-rpc"), clip, "--port", service.rpc_port, cwd=tmp_path)
    assert rpc.returncode == 2 and "Traceback" not in rpc.stderr
    assert "the gRPC client needs grpcio and Paddle Serving's protobuf modules" in rpc.stderr


def test_pptsm_client_answers_what_the_service_answers(service, clip) -> None:
    expected = _topk(classify(service, clip, topk="2"))
    client = PPTSMClient(service.url)
    by_path, by_bytes = client.classify(clip, topk=2), client.classify(clip.read_bytes(), topk=2)
    assert _pairs(by_path.topk) == _pairs(by_bytes.topk) == expected
    assert by_path.label == by_path.topk[0].label and by_path.score == by_path.topk[0].score
    assert by_path.model["name"] == "tiny" and by_path.timeline is None
    over_grpc = PPTSMClient.over_grpc(port=service.rpc_port).classify(str(clip), topk=2)
    assert _pairs(over_grpc.topk) == expected
    with pytest.raises(ClassifyError) as refused:
        client.classify(b"not a video at all", topk=2)
    assert refused.value.err_no == 52 and refused.value.err_msg.startswith("video: ")
    with pytest.raises(ClassifyError) as unreachable:
        PPTSMClient(f"http://127.0.0.1:{free_port()}/pptsm/prediction").classify(clip)
    assert unreachable.value.err_no == -1 and "cannot reach" in unreachable.value.err_msg


def test_binary_upload_answers_as_the_json_form(service, clip) -> None:
    by_json = _client("pipeline_http_client.py", clip, "--url", service.url, "--json", "--topk", 3)
    by_binary = _client("pipeline_http_client.py", clip, "--url", service.url, "--json",
                        "--topk", 3, "--binary", "--mode", "dense")
    assert by_json.returncode == by_binary.returncode == 0, by_binary.stdout + by_binary.stderr
    assert len(json.loads(by_binary.stdout)["topk"]) == 3
    assert _pairs(json.loads(by_binary.stdout)["topk"]) == _topk(
        classify(service, clip, topk="3", mode="dense"))
    result = PPTSMClient(service.url, binary=True).classify(clip, topk=3)
    assert _pairs(result.topk) == _pairs(json.loads(by_json.stdout)["topk"])


class _RefusingProxy(ThreadingHTTPServer):
    """Answers the first `refusals` POSTs as the service does when it has no room (503, JSON,
    Retry-After), then forwards each request to `target` as it came."""

    def __init__(self, target: str, refusals: int) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.target, self.refusals, self.posts = target, refusals, 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/pptsm/prediction"


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _RefusingProxy

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts += 1
        if self.server.posts <= self.server.refusals:
            self._reply(503, json.dumps({"err_no": 503, "err_msg": "too many requests waiting",
                                         "key": [], "value": []}).encode(), {"Retry-After": "0"})
            return
        query = self.path.partition("?")[2]
        forwarded = urllib.request.Request(self.server.target + ("?" + query if query else ""),
                                           data=body,
                                           headers={"Content-Type": self.headers["Content-Type"]})
        try:
            with urllib.request.urlopen(forwarded, timeout=RUN_TIMEOUT_S) as response:
                self._reply(response.status, response.read(), {})
        except urllib.error.HTTPError as error:
            self._reply(error.code, error.read(), {})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json",
                            "Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


@pytest.mark.parametrize("retries, refusals, exit_status, counted", [
    (3, 2, 0, 2),  # refused twice, answered on the third try
    (1, 2, 1, 1),  # gives up after one retry: the 503 is the answer
])
def test_retries_through_a_proxy_that_refuses(service, clip, retries, refusals, exit_status,
                                              counted) -> None:
    proxy = _RefusingProxy(service.url, refusals)
    try:
        done = _client("pipeline_http_client.py", clip, "--url", proxy.url, "--retries", retries)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert done.returncode == exit_status, done.stdout + done.stderr
    line, summary = done.stdout.splitlines()
    assert proxy.posts == counted + 1
    assert summary.endswith(f"; {counted} retries")
    if exit_status:
        assert line == f"{clip}: error 503: too many requests waiting"
    else:
        assert "(score 0." in line


def test_retries_a_connection_that_fails(clip) -> None:
    done = _client("pipeline_http_client.py", clip, "--retries", 2,
                   "--url", f"http://127.0.0.1:{free_port()}/pptsm/prediction")
    assert done.returncode == 1
    line, summary = done.stdout.splitlines()
    assert line.startswith(f"{clip}: error -1: cannot reach")
    assert summary.endswith("; 2 retries")


def _scored(stdout: str) -> tuple[dict[str, str], str]:
    """{file name: 'ok'/'WRONG'} of the scored lines, and the accuracy line; an 'ok' line's
    label is the one expected."""
    marks = {}
    for line in stdout.splitlines():
        if "[expected " in line:
            name = Path(line.split(": ", 1)[0]).name
            expected, mark = line.rsplit("[expected ", 1)[1].rstrip("]").split(": ")
            assert (mark == "ok") == (line.split(": ", 1)[1].split(" (score")[0] == expected)
            marks[name] = mark
    return marks, stdout.splitlines()[-1]


def test_a_class_folder_tree_is_walked_and_scored(service, tree, tmp_path) -> None:
    """The model's labels come from the service's metadata over HTTP and from --labels over
    gRPC; the `misc` folder names no label and is not scored; a label in another case is."""
    over_http = _client("pipeline_http_client.py", "--video", tree, "--url", service.url)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{i} {name}\n" for i, name in enumerate(TINY_LABELS)))
    over_grpc = _client("pipeline_rpc_client.py", tree, "--port", service.rpc_port,
                        "--labels", labels)
    for done in (over_http, over_grpc):
        assert done.returncode == 0, done.stdout + done.stderr
        marks, accuracy = _scored(done.stdout)
        assert set(marks) == {"clip0.mp4", "clip1.mp4"}
        assert "clip2.mp4: " in done.stdout  # sent, not scored
        hits = list(marks.values()).count("ok")
        assert accuracy == f"accuracy: {hits}/2 = {50.0 * hits:.1f}%"
    assert _scored(over_http.stdout) == _scored(over_grpc.stdout)


def test_timeline_prints_one_line_per_segment(service, tmp_path) -> None:
    video = write_video(tmp_path / "long.mp4", num_frames=72, fps=12.0, seed=3)
    options = ["--mode", "timeline", "--window-s", 2, "--stride-s", 1, "--min-score", 0]
    text = _client("pipeline_http_client.py", video, "--url", service.url, *options)
    full = _client("pipeline_http_client.py", video, "--url", service.url, "--json", *options)
    over_grpc = _client("pipeline_rpc_client.py", video, "--port", service.rpc_port, "--json",
                        *options)
    # Raw frames carry no frame rate: the client sends the file's, so the windows are the same.
    by_frames = _client("pipeline_http_client.py", video, "--url", service.url, "--json",
                        "--frames", *options)
    for done in (text, full, over_grpc, by_frames):
        assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(full.stdout)
    assert json.loads(over_grpc.stdout)["segments"] == answer["segments"]
    assert [(w["start_s"], w["end_s"]) for w in json.loads(by_frames.stdout)["timeline"]] == [
        (w["start_s"], w["end_s"]) for w in answer["timeline"]]
    windows, segments = answer["timeline"], answer["segments"]
    assert len(windows) == answer["timeline_stats"]["windows"] == 5 and segments
    assert text.stdout.splitlines()[:len(segments) + 1] == [
        f"{video}: timeline of 5 windows, {len(segments)} segments",
        *("  " + segment_line(segment) for segment in segments)]
    result = PPTSMClient(service.url).classify(video, mode="timeline", window_s=2, stride_s=1,
                                               min_score=0)
    assert result.segments == tuple(Segment(**segment) for segment in segments)
    assert [window.start_s for window in result.timeline] == [w["start_s"] for w in windows]
