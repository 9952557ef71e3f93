"""Running the real service in tests and talking to it over HTTP and gRPC.

Each test module starts one service (`TestService`, a ServiceProcess on free loopback ports
with its own config, request log and decode temp folder) and sends it requests with the helpers
below. The tiny model comes from tests.serving_helpers and is exported once per session.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
import grpc  # noqa: E402
from paddle_serving_server.pipeline.proto import (  # noqa: E402
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
)

from serving.tools.launcher import ServiceProcess, free_port  # noqa: E402
from tests.serving_helpers import export_tiny_model  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "pipeline_config" / "config.yml"
HTTP_TIMEOUT_S = 120

ConfigEdit = Callable[[dict[str, Any]], None]


def serving_env(folder: Path) -> dict[str, str]:
    """Paddle Serving writes its logs and ProcessInfo.json to the working directory unless told
    otherwise; keep them out of the repository."""
    return {"SERVING_LOG_PATH": str(folder), "SERVING_HOME": str(folder)}


def tiny_model_dir(tmp_path_factory, calibrate_bn) -> Path:
    """The tiny exported PP-TSMv2 (.pdmodel), shared by every module of the session."""
    path = tmp_path_factory.getbasetemp() / "tiny_pdmodel"
    export_tiny_model(path, fmt="pdmodel", calibrate_bn=calibrate_bn)
    return path


def one_engine(config: dict[str, Any]) -> None:
    """A ConfigEdit: Paddle Inference at fp32 instead of the shipped `engine: auto`, `precision:
    auto`, for tests that compare the service's answers with another process's to the 6 decimals
    an answer carries: `auto` times its candidates at start-up in each process, so two processes
    may pick different engines, which agree to 1e-4 only (tests/core/test_engines.py)."""
    config["op"]["pptsm"]["local_service_conf"].update(engine="paddle", precision="fp32")


class TestService(ServiceProcess):
    """The service on free ports, configured from pipeline_config/config.yml plus `edit`; its
    request log and decode temp folder live in `work`."""

    __test__ = False  # not a pytest test class

    def __init__(self, model_dir: Path, work: Path, edit: ConfigEdit | None = None, *,
                 cwd: Path | None = None) -> None:
        self.work = work
        self.metrics_port = free_port()
        self.request_log = work / "requests.jsonl"
        self.decode_temp_dir = work / "decode-tmp"
        self.decode_temp_dir.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load(DEFAULT_CONFIG.read_text())
        config["request_log"] = {"path": str(self.request_log)}
        config["decode"]["temp_dir"] = str(self.decode_temp_dir)
        if edit is not None:
            edit(config)
        config_path = work / "config.yml"
        config_path.write_text(yaml.safe_dump(config))
        super().__init__(model_dir, config_path, http_port=free_port(), rpc_port=free_port(),
                         log_path=work / "service.log", env=serving_env(work),
                         extra_args=["--prometheus-port", str(self.metrics_port)], cwd=cwd)

    @property
    def url(self) -> str:
        return prediction_url(self)

    def request_log_lines(self) -> list[dict[str, Any]]:
        if not self.request_log.is_file():
            return []
        return [json.loads(line) for line in self.request_log.read_text().splitlines() if line]

    def metrics_text(self) -> str:
        response = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30)
        response.raise_for_status()
        return response.text


def prediction_url(service: ServiceProcess) -> str:
    return f"http://127.0.0.1:{service.http_port}/pptsm/prediction"


def b64(data: bytes | Path) -> str:
    raw = data.read_bytes() if isinstance(data, Path) else data
    return base64.b64encode(raw).decode("ascii")


def post(service: ServiceProcess, keys: Sequence[str], values: Sequence[str],
         **extra: Any) -> dict:
    """One HTTP request in Paddle Serving's JSON form; the service must answer 200."""
    body = {"key": list(keys), "value": list(values), **extra}
    response = requests.post(prediction_url(service), json=body, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def fields(answer: dict) -> dict[str, str]:
    """The key/value fields of a successful HTTP answer."""
    assert answer["err_no"] == 0, answer["err_msg"]
    return dict(zip(answer["key"], answer["value"]))


def classify(service: ServiceProcess, video: Path, **options: str) -> dict[str, str]:
    return fields(post(service, ["video", *options], [b64(video), *options.values()]))


def grpc_call(service: ServiceProcess, keys: Sequence[str], values: Sequence[str], *,
              tensors: Sequence[Any] = (), logid: int = 0) -> Any:
    """One request through the gRPC PipelineService itself (what PipelineClient sends, without
    the client's own checks, so malformed requests can be sent as they are)."""
    request = pipeline_service_pb2.Request(key=list(keys), value=list(values), logid=logid,
                                           tensors=list(tensors))
    options = [("grpc.max_send_message_length", 256 * 1024 * 1024),
               ("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(f"127.0.0.1:{service.rpc_port}", options=options) as channel:
        stub = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        return stub.inference(request, timeout=HTTP_TIMEOUT_S)
