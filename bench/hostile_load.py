"""Honest clients beside hostile ones: does the service keep answering the honest ones, right
and about as fast?

    python -m bench.hostile_load --model-dir model_repo/pptsm --videos DIR
        [--honest 16] [--hostile 4] [--requests 160] [--config pipeline_config/config.yml]

Starts the service, sends every honest video once alone (its reference answer), then runs the
same honest load twice: alone, and while `--hostile` clients loop over the hostile corpus
(tests/hostile_corpus.py: uploads that name other files or sockets, a mid-stream resolution
change, one-frame 4K dense requests, tensor floods on both transports, deeply nested JSON, slow
senders, a costly key-frame-sparse decode). Prints honest p50/p95 for both runs and their ratio,
wrong or lost honest answers (must be 0) and the hostile requests sent. Exits 1 if an honest
answer was wrong or lost. `make loadtest ARGS=--hostile` runs it; `make bench` reports it.
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
import grpc  # noqa: E402

from serving.tools.launcher import ServiceProcess, free_port  # noqa: E402
from bench.serving_load import json_body  # noqa: E402
from tests import hostile_corpus  # noqa: E402
from tests.video_corpus import costly_to_decode  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
HTTP_TIMEOUT_S = 300
SCORE_TOLERANCE = 1e-4
# Seconds a slow sender keeps its connection, one header byte a second (the service's own
# read deadline may end it sooner).
SLOW_SENDER_S = 5.0
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov"}


@dataclass(frozen=True)
class Endpoints:
    url: str  # REST prediction URL
    rpc: str  # host:port of the gRPC service
    http_port: int


@dataclass(frozen=True)
class HostileLoadResult:
    honest_requests: int
    concurrency: int
    hostile_clients: int
    alone_p50_ms: float
    alone_p95_ms: float
    attacked_p50_ms: float
    attacked_p95_ms: float
    wrong_or_lost: int
    hostile_sent: dict[str, int]

    @property
    def p50_ratio(self) -> float:
        return self.attacked_p50_ms / self.alone_p50_ms

    def text(self) -> str:
        sent = ", ".join(f"{name} {count}" for name, count in sorted(self.hostile_sent.items()))
        return (f"honest: {self.honest_requests} requests at concurrency {self.concurrency}\n"
                f"  alone:                p50 {self.alone_p50_ms:.0f} ms, p95 "
                f"{self.alone_p95_ms:.0f} ms\n"
                f"  with {self.hostile_clients} hostile clients: p50 {self.attacked_p50_ms:.0f} "
                f"ms, p95 {self.attacked_p95_ms:.0f} ms\n"
                f"  p50 ratio {self.p50_ratio:.2f}; wrong or lost honest answers: "
                f"{self.wrong_or_lost}\n"
                f"hostile requests sent: {sent}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _post(url: str, body: bytes) -> dict:
    response = requests.post(url, data=body, headers={"Content-Type": "application/json"},
                             timeout=HTTP_TIMEOUT_S)
    return response.json()


def _raw_grpc(rpc: str, message: bytes) -> None:
    try:
        hostile_corpus.send_raw_grpc(rpc, message, HTTP_TIMEOUT_S)
    except grpc.RpcError:
        pass  # a refusal by the transport is an answer too


def _slow_sender(port: int) -> None:
    """Opens a connection and sends its request head one byte a second."""
    head = b"POST /pptsm/prediction HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        deadline = time.monotonic() + SLOW_SENDER_S
        for byte in itertools.cycle(head):
            if time.monotonic() > deadline:
                return
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return  # the service closed it: its read deadline
            time.sleep(1.0)


HostileSend = Callable[[Endpoints], object]


def hostile_requests(folder: Path) -> dict[str, HostileSend]:
    """The hostile corpus as named senders (built once; each call sends one request)."""
    canary = folder / "canary.mp4"
    uploads = {
        "ffconcat": hostile_corpus.ffconcat_list(str(canary)),
        "hls": hostile_corpus.hls_playlist(str(canary)),
        "sdp": hostile_corpus.sdp_description(45454),
        "external dref": hostile_corpus.mp4_with_external_data(str(canary), folder),
        "resolution growth": hostile_corpus.growing_resolution((64, 48), (4608, 2592),
                                                               large_frames=6),
        "costly decode": costly_to_decode(6000, width=1280, height=720),
    }
    dense_4k = json_body({"video": _b64(hostile_corpus.one_frame_video(4096, 2160, folder)),
                          "mode": "dense"})
    bodies = {name: json_body({"video": _b64(data)}) for name, data in uploads.items()}
    bodies["4k dense"] = dense_4k
    bodies["tensors flood"] = hostile_corpus.tensors_flood_json(1_000_000)
    bodies["nested json"] = hostile_corpus.deeply_nested_json(100_000)
    senders: dict[str, HostileSend] = {
        name: (lambda ends, body=body: _post(ends.url, body)) for name, body in bodies.items()}
    grpc_flood = hostile_corpus.grpc_tensors_flood(1_000_000)
    senders["grpc tensors flood"] = lambda ends: _raw_grpc(ends.rpc, grpc_flood)
    senders["slow sender"] = lambda ends: _slow_sender(ends.http_port)
    return senders


def _same(reference: dict, answer: dict) -> bool:
    if answer.get("err_no") != 0 or reference.get("err_no") != 0:
        return answer.get("err_no") == reference.get("err_no")
    expected = json.loads(dict(zip(reference["key"], reference["value"]))["topk"])
    got = json.loads(dict(zip(answer["key"], answer["value"]))["topk"])
    return [entry["class_id"] for entry in expected] == [entry["class_id"] for entry in got] and \
        all(abs(a["score"] - b["score"]) <= SCORE_TOLERANCE for a, b in zip(expected, got))


def _honest_run(url: str, bodies: Sequence[bytes], references: Sequence[dict], *,
                concurrency: int, total: int) -> tuple[np.ndarray, int]:
    """(latencies in ms, wrong or lost answers) of `total` honest requests."""

    def one(index: int) -> tuple[float, bool]:
        started = time.perf_counter()
        try:
            right = _same(references[index % len(bodies)], _post(url, bodies[index % len(bodies)]))
        except (requests.RequestException, ValueError, KeyError):
            right = False
        return (time.perf_counter() - started) * 1000.0, right

    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(one, range(total)))
    return np.array([ms for ms, _ in outcomes]), sum(1 for _, right in outcomes if not right)


def _hostile_clients(ends: Endpoints, senders: dict[str, HostileSend], clients: int,
                     stop: threading.Event, sent: Counter) -> list[threading.Thread]:
    names = list(senders)

    def loop(offset: int) -> None:
        for name in itertools.islice(itertools.cycle(names), offset, None):
            if stop.is_set():
                return
            try:
                senders[name](ends)
            except (requests.RequestException, OSError, ValueError):
                pass  # a hostile client does not care how it was refused
            sent[name] += 1

    threads = [threading.Thread(target=loop, args=(index * 3,), daemon=True)
               for index in range(clients)]
    for thread in threads:
        thread.start()
    return threads


def run_hostile_load(ends: Endpoints, honest_videos: Sequence[bytes], folder: Path, *,
                     concurrency: int, total: int, hostile: int) -> HostileLoadResult:
    """The reference pass, the honest load alone, then the honest load beside `hostile`
    hostile clients (see the module docstring)."""
    bodies = [json_body({"video": _b64(video)}) for video in honest_videos]
    references = [_post(ends.url, body) for body in bodies]
    alone, lost_alone = _honest_run(ends.url, bodies, references, concurrency=concurrency,
                                    total=total)
    senders = hostile_requests(folder)
    stop, sent = threading.Event(), Counter()
    threads = _hostile_clients(ends, senders, hostile, stop, sent)
    time.sleep(1.0)  # the hostile clients are under way before the honest ones start
    attacked, lost_attacked = _honest_run(ends.url, bodies, references,
                                          concurrency=concurrency, total=total)
    stop.set()
    for thread in threads:
        thread.join(timeout=HTTP_TIMEOUT_S)
    return HostileLoadResult(
        honest_requests=total, concurrency=concurrency, hostile_clients=hostile,
        alone_p50_ms=float(np.percentile(alone, 50)), alone_p95_ms=float(np.percentile(alone, 95)),
        attacked_p50_ms=float(np.percentile(attacked, 50)),
        attacked_p95_ms=float(np.percentile(attacked, 95)),
        wrong_or_lost=lost_alone + lost_attacked, hostile_sent=dict(sent))


def serve_and_run(model_dir: Path, config: Path, honest_videos: Sequence[bytes], work: Path, *,
                  concurrency: int, total: int, hostile: int) -> HostileLoadResult:
    """Starts the service on free ports (working directory `work`) and runs the load."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "canary.mp4").write_bytes(honest_videos[0])
    env = {"SERVING_LOG_PATH": str(work), "SERVING_HOME": str(work)}
    with ServiceProcess(model_dir.resolve(), config.resolve(), http_port=free_port(),
                        rpc_port=free_port(), log_path=work / "service.log", env=env,
                        cwd=work) as service:
        ends = Endpoints(url=f"http://127.0.0.1:{service.http_port}/pptsm/prediction",
                         rpc=f"127.0.0.1:{service.rpc_port}", http_port=service.http_port)
        return run_hostile_load(ends, honest_videos, work, concurrency=concurrency,
                                total=total, hostile=hostile)


def _honest_videos(folder: Path, limit: int) -> list[bytes]:
    paths = sorted(path for path in folder.rglob("*") if path.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        raise SystemExit(f"error: no video files (.mp4, .avi, .mkv, ...) under {folder}")
    return [path.read_bytes() for path in paths[:limit]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Honest load with and without hostile clients.")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--videos", type=Path, required=True,
                        help="folder of honest videos (the first 16, sorted, are sent)")
    parser.add_argument("--config", type=Path,
                        default=REPO_ROOT / "pipeline_config" / "config.yml")
    parser.add_argument("--honest", type=int, default=16, help="honest clients (concurrency)")
    parser.add_argument("--hostile", type=int, default=4, help="hostile clients")
    parser.add_argument("--requests", type=int, default=160, help="honest requests per run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    videos = _honest_videos(args.videos, 16)
    with tempfile.TemporaryDirectory(prefix="hostile-load-") as work:
        result = serve_and_run(args.model_dir, args.config, videos, Path(work),
                               concurrency=args.honest, total=args.requests,
                               hostile=args.hostile)
    print(json.dumps({**result.__dict__, "p50_ratio": result.p50_ratio}) if args.json
          else result.text())
    return 1 if result.wrong_or_lost else 0


if __name__ == "__main__":
    sys.exit(main())
