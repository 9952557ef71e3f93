"""How fast `GET /v2/health/ready` answers while the service is fully loaded: 16 clients keep
plain-upload predictions in flight while a probe asks every quarter second. The front end
answers probes itself, never behind the model's queue, so a Kubernetes or Docker probe with a
short timeout does not mark a busy replica dead.

    python -m bench.readiness [--model-dir DIR] [--clip FILE] [--clients 16] [--probes 40]

Without --model-dir / --clip it uses the bench's PP-TSMv2 16f export and 320x240 10 s clip
(made under output/bench first if missing). Prints one line: probes, p50 / p95 / max ms, and
the predictions answered meanwhile.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from bench.clips import SIZES, bench_clip
from bench.model_zoo import FAMILIES, exported_family
from serving.tools.launcher import ServiceProcess, free_port

PROBE_INTERVAL_S = 0.25
SETTLE_S = 5.0  # the clients fill every queue before the first probe
PREDICTION_TIMEOUT_S = 300


def probe_under_load(model_dir: Path, clip: bytes, *, clients: int, probes: int,
                     work: Path) -> tuple[list[float], int]:
    """Probe latencies in ms (each probe must answer 200) and the predictions answered."""
    work.mkdir(parents=True, exist_ok=True)
    with ServiceProcess(model_dir, http_port=free_port(), rpc_port=free_port(),
                        log_path=work / "service.log",
                        env={"SERVING_LOG_PATH": str(work), "SERVING_HOME": str(work)}) as service:
        url = f"http://127.0.0.1:{service.http_port}"
        stop = threading.Event()
        answered: list[int] = []

        def predict_until_stopped() -> None:
            while not stop.is_set():
                answer = requests.post(f"{url}/pptsm/prediction", data=clip, timeout=PREDICTION_TIMEOUT_S,
                                       headers={"Content-Type": "video/mp4"}).json()
                answered.append(answer["err_no"])

        threads = [threading.Thread(target=predict_until_stopped) for _ in range(clients)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(SETTLE_S)
            latencies = []
            for _ in range(probes):
                started = time.perf_counter()
                response = requests.get(f"{url}/v2/health/ready", timeout=10)
                latencies.append((time.perf_counter() - started) * 1000.0)
                response.raise_for_status()
                time.sleep(PROBE_INTERVAL_S)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    return latencies, sum(1 for err_no in answered if err_no == 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readiness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="model to serve (default: the bench's PP-TSMv2 16f)")
    parser.add_argument("--clip", type=Path, help="video the clients send (default: a 320x240 10 s clip)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("output/bench"))
    args = parser.parse_args(argv)
    model_dir = args.model_dir or exported_family(FAMILIES[-1], args.out / "models")
    clip = args.clip.read_bytes() if args.clip else bench_clip(args.out / "clips", *SIZES[0], 10).read()
    latencies, answered = probe_under_load(model_dir, clip, clients=args.clients, probes=args.probes,
                                           work=args.out / "readiness")
    ranked = sorted(latencies)
    print(f"GET /v2/health/ready under {args.clients} clients' predictions: {len(ranked)} probes, "
          f"p50 {statistics.median(ranked):.1f} ms, p95 {ranked[int(0.95 * len(ranked)) - 1]:.1f} ms, "
          f"max {ranked[-1]:.1f} ms; {answered} predictions answered meanwhile")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
