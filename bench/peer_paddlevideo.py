"""PaddleVideo's own predictor beside this service, on the same clips and the same exported
weights: `make bench ARGS="--peer PATH"` (PATH: a PaddleVideo checkout).

PaddleVideo cannot share this project's environment (its code imports pandas, scipy and
requests at import time), so it runs in a side virtualenv, `output/peer-venv/`, made on first
use with pip: Paddle and the libraries this project pins (requirements/base.txt, the same
versions) plus PaddleVideo's own extras (requirements/peer.txt). bench/peer_harness.py runs there
and times PaddleVideo's `tools/predict.py` path in-process (its INFERENCE helper, its
`create_paddle_predictor` with oneDNN, fp32, the bench's thread count). This service answers the
same clips over REST, end to end, at concurrency 1; the ratio is ours / PaddleVideo's.

Both read the exported program as it is: PaddleVideo's predictor takes any model and params
file path. Its predictor always turns on memory optimisation, which Paddle 3.3.1 refuses for a
PIR `.json` program, so only a legacy `.pdmodel` export can be compared.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.clips import BenchClip
from bench.report import Table
from bench.serving_load import run_level, video_body
from serving.core.metadata import load_meta
from serving.core.spread import Spread
from serving.tools.launcher import ServiceProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("peer_harness.py")
REQUIREMENTS = REPO_ROOT / "requirements"
# PP-TSMv2 16f, PaddleVideo's config for the served model family.
PEER_CONFIG = Path("configs/recognition/pptsm/v2/pptsm_lcnet_k400_16frames_uniform.yaml")
# What PaddleVideo's predictor imports, at this project's pinned versions.
SHARED_PINS = ("paddlepaddle", "numpy", "pillow", "decord", "opencv-python-headless", "PyYAML",
               "tqdm", "protobuf", "requests")
STAMP = ".peer-requirements"
HARNESS_TIMEOUT_S = 1800


class PeerUnavailable(Exception):
    """PaddleVideo's predictor cannot run here; the message says why, in one line."""


@dataclass(frozen=True)
class PeerRow:
    clip: str
    peer_preprocess_ms: Spread
    peer_inference_ms: Spread
    peer_total_ms: Spread
    ours_p50_ms: float
    same_top1: bool

    @property
    def ratio(self) -> float:
        return self.ours_p50_ms / self.peer_total_ms.median


def peer_requirements() -> list[str]:
    """SHARED_PINS as requirements/base.txt pins them, then requirements/peer.txt."""
    pins = {}
    for line in (REQUIREMENTS / "base.txt").read_text().splitlines():
        name = line.split("==")[0].strip()
        if "==" in line and not line.lstrip().startswith("#"):
            pins[name.lower()] = line.strip()
    missing = [name for name in SHARED_PINS if name.lower() not in pins]
    if missing:
        raise PeerUnavailable(f"requirements/base.txt pins no {', '.join(missing)}")
    extras = [line.strip() for line in (REQUIREMENTS / "peer.txt").read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    return [pins[name.lower()] for name in SHARED_PINS] + extras


def ensure_venv(folder: Path) -> Path:
    """The side virtualenv's interpreter, created and filled on first use (and again when the
    pins change)."""
    python = folder / "bin" / "python"
    wanted = peer_requirements()
    stamp = folder / STAMP
    digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()
    if python.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return python
    print(f"  installing PaddleVideo's side environment in {folder} ...", file=sys.stderr,
          flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           "--no-input", *wanted], capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerUnavailable("pip could not install the side environment: "
                              + _last_line(done.stderr))
    stamp.write_text(digest)
    return python


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def check_peer(paddlevideo: Path, model_dir: Path) -> None:
    """PeerUnavailable naming the first thing missing for a comparison."""
    for needed in (paddlevideo / "tools" / "predict.py", paddlevideo / PEER_CONFIG):
        if not needed.is_file():
            raise PeerUnavailable(f"{needed} not found: --peer must name a PaddleVideo checkout")
    if load_meta(model_dir).inference.format != "pdmodel":
        raise PeerUnavailable(f"{model_dir} holds a PIR .json program; PaddleVideo's predictor "
                              f"turns on memory optimisation, which Paddle 3.3.1 refuses for it")


def time_peer(paddlevideo: Path, model_dir: Path, clips: list[BenchClip], *, venv_dir: Path,
              threads: int, warmup: int, runs: int) -> dict[str, dict]:
    """PaddleVideo's predictor on each clip: {clip label: the harness's JSON result}."""
    check_peer(paddlevideo, model_dir)
    python = ensure_venv(venv_dir)
    inference = load_meta(model_dir).inference
    command = [str(python), str(HARNESS), str(paddlevideo), str(paddlevideo / PEER_CONFIG),
               str(model_dir / inference.model_file), str(model_dir / inference.params_file),
               str(threads), str(warmup), str(runs), *(str(clip.path) for clip in clips)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=HARNESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"PaddleVideo's predictor ran past {HARNESS_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise PeerUnavailable("PaddleVideo's predictor failed: " + _last_line(done.stderr))
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    labels = {str(clip.path): clip.label for clip in clips}
    return {labels[result["clip"]]: result for result in results}


def time_ours(model_dir: Path, config: Path, clips: list[BenchClip], *, work: Path,
              runs: int) -> dict[str, tuple[float, int]]:
    """This service with `config` as it is (its own precision): {clip label: (REST p50 ms at
    concurrency 1 over `runs` requests after one warm-up, top-1 class)}."""
    work.mkdir(parents=True, exist_ok=True)
    env = {"SERVING_LOG_PATH": str(work), "SERVING_HOME": str(work)}
    ours = {}
    with ServiceProcess(model_dir, config, http_port=free_port(), rpc_port=free_port(),
                        log_path=work / "service.log", env=env) as service:
        url = f"http://127.0.0.1:{service.http_port}/pptsm/prediction"
        for clip in clips:
            body = video_body(clip.label, clip.read())
            load = run_level(url, body, concurrency=1, requests_total=runs)
            if load.failed:
                raise PeerUnavailable(f"this service failed on {clip.label}: {load.first_error}")
            answer = requests.post(url, data=body.data, timeout=120).json()
            values = dict(zip(answer["key"], answer["value"]))
            ours[clip.label] = (load.p50_ms, int(values["class_id"]))
    return ours


def _spread(value: dict) -> Spread:
    return Spread(value["median"], value["low"], value["high"])


def peer_rows(peer: dict[str, dict], ours: dict[str, tuple[float, int]]) -> list[PeerRow]:
    """One row per clip measured both ways; `ours`: {clip label: (REST p50 ms, top-1 class)}."""
    return [PeerRow(label, _spread(result["preprocess_ms"]), _spread(result["inference_ms"]),
                    _spread(result["total_ms"]), ours[label][0], result["top1"] == ours[label][1])
            for label, result in peer.items() if label in ours]


def peer_table(rows: list[PeerRow], note: str) -> Table:
    return Table(
        "PaddleVideo's predictor (in-process) beside this service (REST end to end)",
        ("clip", "PaddleVideo preprocessing ms", "PaddleVideo inference ms",
         "PaddleVideo total ms", "ours REST p50 ms", "ratio ours / PaddleVideo", "same top-1"),
        [(r.clip, r.peer_preprocess_ms, r.peer_inference_ms, r.peer_total_ms, r.ours_p50_ms,
          f"{r.ratio:.2f}", "yes" if r.same_top1 else "no") for r in rows], note)


def plot_peer(rows: list[PeerRow], path: Path) -> None:
    from bench.report import plt  # matplotlib, set up for files only

    fig, ax = plt.subplots(figsize=(6, 3.5))
    positions = range(len(rows))
    ax.bar([p - 0.2 for p in positions], [r.peer_total_ms.median for r in rows], width=0.4,
           label="PaddleVideo, in-process")
    ax.bar([p + 0.2 for p in positions], [r.ours_p50_ms for r in rows], width=0.4,
           label="this service, REST p50")
    ax.set_xticks(list(positions), [r.clip for r in rows])
    ax.set_ylabel("ms per clip")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
