"""Environment variables that override the pipeline config: how containers are configured.

Docker Compose and Kubernetes set a container's settings as environment variables, and one image
serves on any host, so the few settings a deployment tunes per host are read from the
environment on top of `pipeline_config/*.yml`. Precedence: command-line option > environment
variable > config file. Every value is checked here and a bad one is refused with a message
that names the variable, before any port is opened.

| variable | overrides |
|---|---|
| PPTSM_MODEL_DIR | `--model-dir` when the option is not given |
| PPTSM_CONFIG | `--config` when the option is not given |
| PPTSM_HTTP_PORT | `http_port` (REST) |
| PPTSM_RPC_PORT | `rpc_port` (gRPC) |
| PPTSM_CPU_THREADS | `op.pptsm.local_service_conf.thread_num` (oneDNN threads per inference) |
| PPTSM_BATCH_SIZE | `op.pptsm.batch_size` (auto-batching; at most `worker_num`) |
| PPTSM_PRECISION | `op.pptsm.local_service_conf.precision` (the predictor checks it fits the device) |
| PPTSM_ENGINE | `op.pptsm.local_service_conf.engine` (paddle, openvino or auto) |

Standard library only, so that `serving.pipeline.healthcheck` (run every few seconds) stays light.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serving.core.errors import PPTSMError

MODEL_DIR = "PPTSM_MODEL_DIR"
CONFIG = "PPTSM_CONFIG"
HTTP_PORT = "PPTSM_HTTP_PORT"
RPC_PORT = "PPTSM_RPC_PORT"
CPU_THREADS = "PPTSM_CPU_THREADS"
BATCH_SIZE = "PPTSM_BATCH_SIZE"
PRECISION = "PPTSM_PRECISION"
ENGINE = "PPTSM_ENGINE"
ENV_NAMES = (MODEL_DIR, CONFIG, HTTP_PORT, RPC_PORT, CPU_THREADS, BATCH_SIZE, PRECISION, ENGINE)

DEFAULT_CONFIG = Path("pipeline_config/config.yml")
# The model op's name: its section in the config (op.pptsm) and its node in the DAG.
MODEL_OP = "pptsm"
# Every precision some device accepts, and `auto` (chosen at start-up); serving.core.predictor
# refuses those the device cannot run.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")
# The inference engines (serving.core.engines), and `auto`; standard library only, hence restated.
ENGINES = ("paddle", "openvino", "auto")
MAX_CPU_THREADS = 256


class EnvOverrideError(PPTSMError, ValueError):
    """An environment variable has a value the service cannot use; the message names it."""


def _int(environ: Mapping[str, str], name: str, low: int, high: int, what: str) -> int | None:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise EnvOverrideError(f"{name}: {what} from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise EnvOverrideError(f"{name}: {what} from {low} to {high}, got {value}")
    return value


def _choice(environ: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value not in allowed:
        raise EnvOverrideError(f"{name}: one of {', '.join(allowed)}, got {raw!r}")
    return value


def _model_op(conf: dict[str, Any]) -> dict[str, Any]:
    op = conf.get("op")
    if not isinstance(op, dict) or not isinstance(op.get(MODEL_OP), dict):
        raise EnvOverrideError(f"op.{MODEL_OP}: missing from the config; the model op's "
                               f"settings ({CPU_THREADS}, {BATCH_SIZE}, {PRECISION}, {ENGINE}) go there")
    return op[MODEL_OP]


def _local_service_conf(model_op: dict[str, Any]) -> dict[str, Any]:
    local = model_op.setdefault("local_service_conf", {})
    if not isinstance(local, dict):
        raise EnvOverrideError(f"op.{MODEL_OP}.local_service_conf: must be a mapping")
    return local


def apply_env_overrides(conf: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the parsed config with the PPTSM_* values of `environ` applied (unset or empty
    variables change nothing)."""
    result = copy.deepcopy(dict(conf))
    for name, key in ((HTTP_PORT, "http_port"), (RPC_PORT, "rpc_port")):
        port = _int(environ, name, 1, 65535, "a port")
        if port is not None:
            result[key] = port
    threads = _int(environ, CPU_THREADS, 1, MAX_CPU_THREADS, "a thread count")
    batch_size = _int(environ, BATCH_SIZE, 1, 4096, "a batch size")
    precision = _choice(environ, PRECISION, PRECISIONS)
    engine = _choice(environ, ENGINE, ENGINES)
    if threads is None and batch_size is None and precision is None and engine is None:
        return result
    model_op = _model_op(result)
    if batch_size is not None:
        workers = result.get("worker_num", 1)
        if isinstance(workers, int) and batch_size > workers:
            raise EnvOverrideError(
                f"{BATCH_SIZE}: {batch_size} is more than worker_num ({workers}), the requests "
                f"in flight at once, so a batch could never fill; raise worker_num in the config")
        model_op["batch_size"] = batch_size
    if threads is not None:
        _local_service_conf(model_op)["thread_num"] = threads
    if precision is not None:
        _local_service_conf(model_op)["precision"] = precision
    if engine is not None:
        _local_service_conf(model_op)["engine"] = engine
    return result


def resolve_model_dir(option: Path | None, environ: Mapping[str, str]) -> Path:
    """`--model-dir` if given, else PPTSM_MODEL_DIR; one of them is required."""
    if option is not None:
        return option
    value = environ.get(MODEL_DIR, "").strip()
    if not value:
        raise EnvOverrideError(f"no model: give --model-dir or set {MODEL_DIR}")
    return Path(value)


def resolve_config(option: Path | None, environ: Mapping[str, str]) -> Path:
    """`--config` if given, else PPTSM_CONFIG, else pipeline_config/config.yml."""
    if option is not None:
        return option
    value = environ.get(CONFIG, "").strip()
    return Path(value) if value else DEFAULT_CONFIG


def describe(environ: Mapping[str, str]) -> str:
    """The PPTSM_* variables that are set, for the start-up line ('' when none)."""
    return ", ".join(f"{name}={environ[name]}" for name in ENV_NAMES if environ.get(name, "").strip())
