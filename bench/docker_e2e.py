"""`make docker-test`: the Docker deployment proven end to end, the way a user runs it.

    .venv/bin/python -m bench.docker_e2e

1. makes a Docker engine, Compose v2 and the base image available (docker/engine.sh);
2. picks the model: model_repo/pptsm when it exists, else the tests' tiny PP-TSMv2, exported
   once to output/docker-test/model_repo/pptsm (the user's model_repo is never written; compose
   mounts whichever folder through PPTSM_MODEL_REPO);
3. writes real video files (MP4/MPEG-4 by OpenCV, Matroska/H.264 and AVI/MJPEG by PyAV) and
   computes their expected answers in-process with the service's own code (serving.tools.offline);
4. `docker compose build`, `docker compose up -d`, waits until Docker reports the container
   healthy (the image's HEALTHCHECK, i.e. the readiness request);
5. classifies the videos through the published ports with the project's clients, over REST and
   gRPC, and compares every answer with the expected one;
6. sends bad requests (a file that is not a video, topk 0) over both and expects clean errors
   (err_no 52 and 51), then checks that the container is still healthy, never restarted and
   logged no traceback;
7. runs `serving.tools.quantize` and `serving.tools.precision_check` inside the running
   container on the same videos: the serving image, which has no `train/`, ships the tools;
8. stops the stack (the service must exit 0 on SIGTERM) and removes it, leaving no container.

Runs under its own compose project name on free host ports, so a user's own `docker compose
up` stack is left alone. Exits non-zero on any failure (with the service's log) and prints the
wall time of each phase.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from serving.core.errors import DecodeError, InvalidInputError
from serving.tools.launcher import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "output" / "docker-test"
PROJECT = "pptsm-docker-test"
SERVICE = "pptsm"
MODEL = "pptsm"
HEALTHY_TIMEOUT_S = 300.0
SCORE_TOLERANCE = 1e-4
TOPK = 2


class DockerTestError(RuntimeError):
    """A check failed; the message says which and what was seen."""


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, capture: bool = False,
        echo: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` from the repository root (printing it unless `echo` is False, as for the
    health polling); fails on a non-zero exit."""
    if echo:
        print("$ " + " ".join(cmd), flush=True)
    result = subprocess.run(list(cmd), cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        raise DockerTestError(f"`{' '.join(cmd)}` exited with status {result.returncode}")
    return result


@contextmanager
def phase(name: str, times: dict[str, float]) -> Iterator[None]:
    print(f"== {name}", flush=True)
    started = time.monotonic()
    try:
        yield
    finally:
        times[name] = time.monotonic() - started


def model_repo() -> Path:
    """The folder compose mounts: the user's model_repo if it holds `pptsm`, else a tiny model
    exported for this test (readable by the container's unprivileged user)."""
    if (REPO_ROOT / "model_repo" / MODEL / "model_meta.json").is_file():
        return REPO_ROOT / "model_repo"
    repo = WORK / "model_repo"
    target = repo / MODEL
    if not (target / "model_meta.json").is_file():
        from tests.conftest import calibrate_batch_norm_
        from tests.serving_helpers import export_tiny_model

        print(f"no model_repo/{MODEL}: exporting the tests' tiny PP-TSMv2 to {target}", flush=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        export_tiny_model(target, fmt="pdmodel", calibrate_bn=calibrate_batch_norm_)
    for path in [repo, *repo.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return repo


def write_videos(folder: Path) -> tuple[list[Path], Path]:
    """Three real videos in `folder`/good and a file that is not a video in `folder`/bad."""
    from tests.serving_helpers import write_video
    from tests.video_corpus import encode_video

    shutil.rmtree(folder, ignore_errors=True)
    good, bad = folder / "good", folder / "bad"
    good.mkdir(parents=True)
    bad.mkdir()
    videos = [write_video(good / "square_mpeg4.mp4", seed=1),
              encode_video(good / "square_h264.mkv", codec="libx264", seed=2),
              encode_video(good / "square_mjpeg.avi", codec="mjpeg", pix_fmt="yuvj420p", seed=3)]
    (bad / "notes.mp4").write_text("these are meeting notes, not a video\n" * 50)
    return videos, bad


def expected_answers(model_dir: Path, videos: Sequence[Path]) -> dict[str, tuple[str, float]]:
    """(top-1 label, score) per file name, computed in-process with the service's code path and
    the same pipeline config the image serves."""
    from serving.tools.offline import OfflinePredictor

    predictor = OfflinePredictor.from_service_config(
        model_dir, REPO_ROOT / "pipeline_config" / "config.yml")
    answers = {}
    for video in videos:
        best = predictor.classify(video.read_bytes(), topk=1).ranked[0]
        answers[video.name] = (best.label, best.score)
    return answers


def client_records(client: str, target: Path, address: Sequence[str],
                   extra: Sequence[str] = ()) -> tuple[int, list[dict]]:
    """Runs one of the project's clients with --json; its exit status and its records."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "client" / client), str(target), "--json",
         *address, *extra], cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    for record in records:
        print(f"   {client}: {Path(record['file']).name}: err_no {record['err_no']} "
              f"{record.get('label', record.get('err_msg', ''))} {record.get('score', '')}")
    return result.returncode, records


def check_classifications(client: str, address: Sequence[str], good: Path,
                          expected: dict[str, tuple[str, float]]) -> None:
    status, records = client_records(client, good, address, ["--topk", str(TOPK)])
    if status != 0 or len(records) != len(expected):
        raise DockerTestError(f"{client}: exit status {status}, {len(records)} answers for "
                              f"{len(expected)} videos")
    for record in records:
        name = Path(record["file"]).name
        label, score = expected[name]
        if (record["err_no"] != 0 or record["label"] != label
                or abs(float(record["score"]) - score) > SCORE_TOLERANCE
                or len(record["topk"]) != TOPK):
            raise DockerTestError(f"{client}: {name}: answered {record}, expected {label} "
                                  f"(score {score:.6f}) with {TOPK} classes")


def check_bad_requests(client: str, address: Sequence[str], good: Path, bad: Path) -> None:
    """A file that is not a video, and a good video with topk 0: clean errors, not crashes."""
    cases = ((bad, [], DecodeError.CODE),
             (good / "square_mpeg4.mp4", ["--topk", "0"], InvalidInputError.CODE))
    for target, extra, code in cases:
        status, records = client_records(client, target, address, extra)
        if status != 1 or [r["err_no"] for r in records] != [code] or not records[0]["err_msg"]:
            raise DockerTestError(f"{client}: {target.name} {' '.join(extra)}: expected one "
                                  f"error {code} with a message, got exit status {status}, "
                                  f"{records}")


class Stack:
    """The compose project under test: `docker compose -p PROJECT` with its environment."""

    def __init__(self, repo: Path) -> None:
        self.http_port, self.rpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "PPTSM_MODEL_REPO": str(repo), "PPTSM_MODEL": MODEL,
                    "PPTSM_PUBLISH_HTTP_PORT": str(self.http_port),
                    "PPTSM_PUBLISH_RPC_PORT": str(self.rpc_port),
                    "PPTSM_PUBLISH_METRICS_PORT": str(self.metrics_port)}

    def compose(self, *args: str, capture: bool = False,
                echo: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker", "compose", "-p", PROJECT, *args], env=self.env, capture=capture,
                   echo=echo)

    def container(self) -> str:
        ids = self.compose("ps", "-aq", SERVICE, capture=True, echo=False).stdout.split()
        if len(ids) != 1:
            raise DockerTestError(f"expected one {SERVICE} container, found {ids}")
        return ids[0]

    def state(self, template: str) -> str:
        return run(["docker", "inspect", "-f", template, self.container()], capture=True,
                   echo=False).stdout.strip()

    def wait_healthy(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < HEALTHY_TIMEOUT_S:
            status = self.state("{{.State.Status}} {{.State.Health.Status}}")
            if status == "running healthy":
                return time.monotonic() - started
            if not status.startswith("running") or status.endswith("unhealthy"):
                raise DockerTestError(f"the container is {status}")
            time.sleep(2)
        raise DockerTestError(f"not healthy after {HEALTHY_TIMEOUT_S:.0f} s")

    def logs(self, tail: str = "60") -> str:
        return subprocess.run(["docker", "compose", "-p", PROJECT, "logs", "--no-color", "--tail",
                               tail], cwd=REPO_ROOT, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout

    def leftovers(self) -> list[str]:
        return run(["docker", "ps", "-aq", "--filter",
                    f"label=com.docker.compose.project={PROJECT}"], capture=True).stdout.split()


def check_tools_in_image(stack: Stack, videos: Sequence[Path]) -> None:
    """The serving image ships the tools without `train/`: `serving.tools.quantize` makes an
    int8 copy of the served model from the test videos (streamed into the container's /tmp,
    the only writable place) and `serving.tools.precision_check` compares it with fp32."""
    folder = "/tmp/tools-check"
    listing = "".join(f"{video.name} {index}\n" for index, video in enumerate(videos))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for video in videos:
            tar.add(video, arcname=video.name)
        entry = tarfile.TarInfo("clips.list")
        entry.size = len(listing.encode())
        tar.addfile(entry, io.BytesIO(listing.encode()))
    # Debian bookworm's Python 3.11.2 (the stand-in base image) predates extraction filters.
    unpack = (f"import sys, tarfile; archive = tarfile.open(fileobj=sys.stdin.buffer, mode='r|'); "
              f"archive.extractall('{folder}', **({{'filter': 'data'}} "
              f"if hasattr(tarfile, 'data_filter') else {{}}))")
    subprocess.run(["docker", "compose", "-p", PROJECT, "exec", "-T", SERVICE, "python", "-c",
                    unpack], cwd=REPO_ROOT, env=stack.env, input=archive.getvalue(), check=True)
    model, clips, count = f"/app/model_repo/{MODEL}", f"{folder}/clips.list", str(len(videos))
    stack.compose("exec", "-T", SERVICE, "python", "-m", "serving.tools.quantize",
                  "--model-dir", model, "--calibration", clips, "--clips", count,
                  "--check", clips, "--check-clips", count, "--out", f"{folder}/int8")
    stack.compose("exec", "-T", SERVICE, "python", "-m", "serving.tools.precision_check",
                  "--model-dir", model, "--precision", "int8", "--candidate-dir",
                  f"{folder}/int8", "--list", clips, "--clips", count)


def exercise(stack: Stack, videos: Sequence[Path], bad: Path,
             expected: dict[str, tuple[str, float]], times: dict[str, float]) -> None:
    good = videos[0].parent
    rest = ["--url", f"http://127.0.0.1:{stack.http_port}/pptsm/prediction"]
    grpc = ["--host", "127.0.0.1", "--port", str(stack.rpc_port)]
    with phase("docker compose up -d, wait until healthy", times):
        stack.compose("up", "-d")
        print(f"   healthy after {stack.wait_healthy():.1f} s", flush=True)
    with phase("classify over REST and gRPC", times):
        check_classifications("pipeline_http_client.py", rest, good, expected)
        check_classifications("pipeline_rpc_client.py", grpc, good, expected)
    with phase("bad requests", times):
        check_bad_requests("pipeline_http_client.py", rest, good, bad)
        check_bad_requests("pipeline_rpc_client.py", grpc, good, bad)
        check_classifications("pipeline_http_client.py", rest, good, expected)
        restarts = stack.state("{{.RestartCount}} {{.State.Health.Status}}")
        if restarts != "0 healthy":
            raise DockerTestError(f"after the bad requests: restarts and health {restarts}")
        if "Traceback" in stack.logs(tail="all"):
            raise DockerTestError("the service logged a Python traceback")
    with phase("quantize and precision_check inside the serving image", times):
        check_tools_in_image(stack, videos)
    with phase("docker compose stop (graceful)", times):
        stack.compose("stop")
        code = stack.state("{{.State.ExitCode}}")
        if code != "0":
            raise DockerTestError(f"the service exited with status {code} on SIGTERM")


def main() -> int:
    started = time.monotonic()
    times: dict[str, float] = {}
    stack: Stack | None = None
    failure: str | None = None
    try:
        with phase("docker engine, compose v2, base image", times):
            run(["bash", "docker/engine.sh", "all"])
        with phase("model and videos", times):
            repo = model_repo()
            videos, bad = write_videos(WORK / "videos")
            expected = expected_answers(repo / MODEL, videos)
        stack = Stack(repo)
        with phase("docker compose build", times):
            stack.compose("build")
        exercise(stack, videos, bad, expected, times)
    except DockerTestError as exc:
        failure = str(exc)
        if stack is not None:
            print(stack.logs(), file=sys.stderr)
    finally:
        if stack is not None:
            try:
                with phase("docker compose down", times):
                    stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "20")
                left = stack.leftovers()
                if left:
                    raise DockerTestError(f"containers left behind: {left}")
            except DockerTestError as exc:
                failure = failure or str(exc)
    for name, seconds in times.items():
        print(f"   {seconds:7.1f} s  {name}")
    wall = time.monotonic() - started
    if failure:
        print(f"docker-test FAILED after {wall:.0f} s: {failure}", file=sys.stderr)
        return 1
    size = run(["docker", "image", "inspect", "-f", "{{.Size}}", "pptsm-serving:cpu"],
               capture=True).stdout.strip()
    print(f"docker-test passed in {wall:.0f} s (image pptsm-serving:cpu: "
          f"{int(size) / 2**30:.2f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
