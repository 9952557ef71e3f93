"""Entry point of the online stage: the PP-TSM Paddle Serving pipeline service.

    python -m serving.pipeline.service --model-dir model_repo/pptsm --config pipeline_config/config.yml \
        [--http-port 18080] [--rpc-port 9993]

In containers the same settings come from PPTSM_* environment variables (serving.pipeline.env_overrides:
model folder, config, ports, threads, batch size, precision); command-line options win over them.

Serves `POST /pptsm/prediction` and the GET health, metadata and OpenAPI routes (HTTP,
serving.pipeline.http_frontend; docs/api.md) and the gRPC `PipelineService` (for `paddle_serving_server.pipeline.PipelineClient`). Every preprocessing
parameter comes from `<model-dir>/model_meta.json`; the config holds only how to serve (ports,
concurrency, batching, timeouts, predictor settings, request limits, metrics, logs). Problems
found at start-up (a missing file, a bad config value) end the program with one `error:` line
that names them, before any port is opened. Paddle Serving's warnings and errors go to stderr,
its INFO lines to small rotating files in ./PipelineServingLogs, or under $SERVING_LOG_PATH when
set (serving.pipeline.serving_logs, config `serving_log`); the one-line-per-request JSON log goes to
`request_log.path` (default: stderr). SIGTERM or SIGINT stop the service gracefully
(serving.pipeline.server): requests in flight are answered first, then the program exits with status 0.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.web_service import WebService  # noqa: E402

from serving.pipeline import env_overrides  # noqa: E402
from serving.pipeline.env_overrides import MODEL_OP  # noqa: E402
from serving.pipeline.healthcheck import SERVICE_NAME  # noqa: E402  (REST path /pptsm/prediction)
from serving.pipeline.http_base import HttpSettings  # noqa: E402
from serving.pipeline.model_info import model_metadata  # noqa: E402
from serving.core.errors import PPTSMError  # noqa: E402
from serving.core.metadata import MetadataError, ModelMeta, load_meta  # noqa: E402
from serving.pipeline.metrics import ServiceMetrics, serving_registry  # noqa: E402
from serving.pipeline.observer import RequestObserver  # noqa: E402
from serving.pipeline.ops import DecodeOp, KeyValueRequestOp, NormalizeOp, PPTSMOp, SampleOp  # noqa: E402
from serving.core.predictor import Predictor, PredictorError, PredictorSettings  # noqa: E402
from serving.core.preprocess.decode import DecodeLimits, backend_order  # noqa: E402
from serving.core.timeline import TimelineSettings  # noqa: E402
from serving.core.stages import SAMPLE  # noqa: E402
from serving.pipeline.request_log import configure_request_log  # noqa: E402
from serving.pipeline.server import exit_now, serve  # noqa: E402
from serving.pipeline.serving_logs import ServingLogSettings, route_serving_logs  # noqa: E402

# Paddle Serving 0.9's gRPC server accepts messages up to 256 MiB; an upload travels as base64.
GRPC_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
DEFAULT_SHUTDOWN_GRACE_S = 30.0
DEFAULT_RPC_HOST = "[::]"  # every interface, IPv4 and IPv6, as Paddle Serving binds
# REST and metrics listen on every IPv4 interface by default, as a container needs.
DEFAULT_HTTP_HOST = DEFAULT_METRICS_HOST = "0.0.0.0"

SettingsT = TypeVar("SettingsT")


class ConfigError(PPTSMError, ValueError):
    """The pipeline config is missing, unreadable or has a bad value; the message names it."""


@dataclass(frozen=True)
class ServiceConfig:
    """The parts of config.yml this service reads itself; the rest is Paddle Serving's."""

    serving: dict[str, Any]  # the whole file, handed to Paddle Serving unchanged
    limits: DecodeLimits
    decode_backend: str
    decode_temp_dir: Path | None
    predictor: PredictorSettings
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    request_log_path: Path | None = None  # None: stderr
    rpc_host: str = DEFAULT_RPC_HOST
    http_host: str = DEFAULT_HTTP_HOST
    metrics_host: str = DEFAULT_METRICS_HOST
    http: HttpSettings = HttpSettings()
    serving_log: ServingLogSettings = ServingLogSettings()
    timeline: TimelineSettings = TimelineSettings()
    warnings: tuple[str, ...] = ()  # printed at start-up


def _section(conf: dict[str, Any], key: str) -> dict[str, Any]:
    value = conf.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a mapping")
    return value


def _settings(conf: dict[str, Any], key: str, settings_class: type[SettingsT]) -> SettingsT:
    """The `key` section as the frozen dataclass `settings_class`, whose fields are the section's
    keys and whose own checks word the message for a bad value ("<field>: ..."); an unknown key
    is refused with the known ones."""
    raw = _section(conf, key)
    known = {item.name for item in fields(settings_class)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key; known: {', '.join(sorted(known))}")
    try:
        return settings_class(**raw)
    except ValueError as exc:
        raise ConfigError(f"{key}.{exc}") from None


def _limits(conf: dict[str, Any]) -> DecodeLimits:
    limits = _settings(conf, "request_limits", DecodeLimits)
    if limits.max_bytes * 4 // 3 > GRPC_MAX_MESSAGE_BYTES:
        raise ConfigError(f"request_limits.max_bytes: {limits.max_bytes} bytes are more than "
                          f"{GRPC_MAX_MESSAGE_BYTES} in base64, Paddle Serving's gRPC message limit")
    return limits


def _check_dag(conf: dict[str, Any]) -> None:
    if _section(conf, "dag").get("is_thread_op", True) is not True:
        raise ConfigError("dag.is_thread_op: must be true; the ops hand open video decoders "
                          "to each other, which process ops cannot do")
    if conf.get("build_dag_each_worker", False):
        raise ConfigError("build_dag_each_worker: must be false; each forked worker would copy "
                          "the loaded predictor and auto-batching would be switched off")
    if MODEL_OP not in _section(conf, "op"):
        raise ConfigError(f"op.{MODEL_OP}: missing; it holds the model op's settings")
    _check_prometheus(_section(conf, "dag"))


def _check_prometheus(dag: dict[str, Any]) -> None:
    """Paddle Serving's metrics endpoint needs a port and reads its tracer's summaries; without
    a tracer its /metrics handler fails on every scrape, so that combination is refused."""
    if not dag.get("enable_prometheus", False):
        return
    port = dag.get("prometheus_port")
    if not isinstance(port, int) or not 1024 <= port <= 65535:
        raise ConfigError(f"dag.prometheus_port: a port from 1024 to 65535 is needed when "
                          f"dag.enable_prometheus is true, got {port!r}")
    interval = _section(dag, "tracer").get("interval_s", -1)
    if not isinstance(interval, int) or interval < 1:
        raise ConfigError(f"dag.tracer.interval_s: must be >= 1 when dag.enable_prometheus is "
                          f"true (Paddle Serving's /metrics reads the tracer), got {interval!r}")


def _shutdown_grace(conf: dict[str, Any]) -> float:
    value = conf.get("shutdown_grace_s", DEFAULT_SHUTDOWN_GRACE_S)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"shutdown_grace_s: seconds >= 0, got {value!r}")
    return float(value)


def _short_grace_warning(conf: dict[str, Any], grace_s: float) -> tuple[str, ...]:
    """A warning when a stage may run longer than the grace period. A warning, not a refusal:
    the grace must stay under the orchestrator's kill timeout (Docker's 10 s by default) while
    a stage timeout bounds a worst-case upload (a 4K clip on a busy CPU), and making either fit
    the other is the operator's trade-off. At the end of the grace the process exits anyway
    (serving.pipeline.server.exit_now): a request still running then loses its connection."""
    timeouts = {name: op["timeout"] for name, op in _section(conf, "op").items()
                if isinstance(op, dict) and isinstance(op.get("timeout"), (int, float))}
    longest = max(timeouts, key=lambda name: timeouts[name], default=None)
    if longest is None or timeouts[longest] / 1000.0 <= grace_s:
        return ()
    return (f"shutdown_grace_s ({grace_s:g} s) is shorter than op.{longest}.timeout "
            f"({timeouts[longest] / 1000.0:g} s): a request still in that stage when the grace "
            "ends is dropped at shutdown",)


def _rpc_host(conf: dict[str, Any]) -> str:
    value = conf.get("rpc_host", DEFAULT_RPC_HOST)
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(f"rpc_host: an address to listen on such as 0.0.0.0, [::] or "
                          f"127.0.0.1, got {value!r}")
    return value


def _bind_host(conf: dict[str, Any], key: str, default: str) -> str:
    """An IPv4 address or host name to listen on (http.server binds IPv4 sockets)."""
    value = conf.get(key, default)
    if not isinstance(value, str) or not value or any(c.isspace() or c in "[]" for c in value):
        raise ConfigError(f"{key}: an IPv4 address or host name to listen on such as 0.0.0.0 "
                          f"or 127.0.0.1, got {value!r}")
    return value


def _serving_log(conf: dict[str, Any]) -> ServingLogSettings:
    raw = _section(conf, "serving_log")
    known = {f.name for f in fields(ServingLogSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"serving_log.{unknown[0]}: unknown key; "
                          f"known: {', '.join(sorted(known))}")
    try:
        return ServingLogSettings(**raw)
    except ValueError as exc:
        raise ConfigError(f"serving_log.{exc}") from None


def _request_log_path(conf: dict[str, Any]) -> Path | None:
    path = _section(conf, "request_log").get("path") or None
    if path is not None and not Path(path).parent.is_dir():
        raise ConfigError(f"request_log.path: the folder of {path} does not exist")
    return Path(path) if path is not None else None


def load_service_config(path: Path, *, http_port: int | None, rpc_port: int | None,
                        meta: ModelMeta, prometheus_port: int | None = None,
                        environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Reads config.yml, applies the PPTSM_* variables of `environ` (none when None), then the
    command-line ports, and validates what this service needs."""
    try:
        conf = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(conf, dict):
        raise ConfigError(f"{path}: must be a YAML mapping")
    if environ is not None:
        try:
            conf = env_overrides.apply_env_overrides(conf, environ)
        except env_overrides.EnvOverrideError as exc:
            raise ConfigError(str(exc)) from None
    if http_port is not None:
        conf["http_port"] = http_port
    if rpc_port is not None:
        conf["rpc_port"] = rpc_port
    if prometheus_port is not None:
        conf["dag"] = {**_section(conf, "dag"), "prometheus_port": prometheus_port}
    _check_dag(conf)
    decode = _section(conf, "decode")
    backend = str(decode.get("backend", "auto"))
    try:
        backend_order(backend)
    except ValueError as exc:
        raise ConfigError(f"decode.backend: {exc}") from None
    model_op = _section(conf, "op")[MODEL_OP]
    batch_size = int(model_op.get("batch_size", 1))
    views_per_request = max(1, meta.preprocess.dense_clips * meta.preprocess.dense_crops)
    timeline = _settings(conf, "timeline", TimelineSettings)
    sample_threads = int((_section(conf, "op").get(SAMPLE) or {}).get("concurrency", 1))
    if timeline.max_concurrent >= sample_threads:
        raise ConfigError(
            f"timeline.max_concurrent ({timeline.max_concurrent}) must be below "
            f"op.{SAMPLE}.concurrency ({sample_threads}): each timeline holds a sample thread for "
            f"its whole run, and single clips need one left")
    try:
        settings = PredictorSettings.from_local_service_conf(
            model_op.get("local_service_conf") or {},
            max_batch_size=max(batch_size * views_per_request, timeline.batch_size),
            instances=int(model_op.get("concurrency", 1)))
    except (PredictorError, TypeError, ValueError) as exc:
        raise ConfigError(f"op.{MODEL_OP}.local_service_conf: {exc}") from None
    temp_dir = Path(decode["temp_dir"]) if decode.get("temp_dir") else None
    if temp_dir is not None and not temp_dir.is_dir():
        raise ConfigError(f"decode.temp_dir: {temp_dir} is not a directory")
    grace_s = _shutdown_grace(conf)
    return ServiceConfig(serving=conf, limits=_limits(conf), decode_backend=backend,
                         decode_temp_dir=temp_dir, predictor=settings,
                         shutdown_grace_s=grace_s,
                         request_log_path=_request_log_path(conf),
                         rpc_host=_rpc_host(conf), serving_log=_serving_log(conf),
                         http_host=_bind_host(conf, "http_host", DEFAULT_HTTP_HOST),
                         metrics_host=_bind_host(conf, "metrics_host", DEFAULT_METRICS_HOST),
                         http=_settings(conf, "http", HttpSettings),
                         timeline=timeline,
                         warnings=_short_grace_warning(conf, grace_s))


class PPTSMService(WebService):
    """decode -> sample -> normalize -> pptsm, as Paddle Serving's WebService DAG."""

    def __init__(self, meta: ModelMeta, config: ServiceConfig, predictor: Predictor) -> None:
        super().__init__(name=SERVICE_NAME)
        self._meta = meta
        self._config = config
        self._predictor = predictor

    def get_pipeline_response(self, read_op):
        """Builds the DAG from its last op back. The stock `read_op` WebService passes in is
        replaced by KeyValueRequestOp, which explains malformed key/value lists."""
        decode = DecodeOp(KeyValueRequestOp(limits=self._config.limits), meta=self._meta,
                          limits=self._config.limits,
                          backend=self._config.decode_backend,
                          temp_dir=self._config.decode_temp_dir)
        sample = SampleOp(decode, meta=self._meta, predictor=self._predictor,
                          limits=self._config.limits, timeline=self._config.timeline)
        normalize = NormalizeOp(sample, meta=self._meta)
        return PPTSMOp(normalize, meta=self._meta, predictor=self._predictor)

    def serve_until_stopped(self) -> None:
        """Runs the prepared pipeline until SIGTERM/SIGINT, observing every request."""
        observer = RequestObserver(ServiceMetrics.create(serving_registry()),
                                   configure_request_log(self._config.request_log_path))
        serve(self._server, observer, shutdown_grace_s=self._config.shutdown_grace_s,
              limits=self._config.limits,
              rpc_host=self._config.rpc_host, http_settings=self._config.http,
              http_host=self._config.http_host, metrics_host=self._config.metrics_host,
              meta=self._meta,
              metadata=model_metadata(self._meta, engine=self._predictor.settings.engine,
                                      precision=self._predictor.settings.precision,
                                      limits=self._config.limits))


def _metrics_note(conf: dict[str, Any]) -> str:
    dag = _section(conf, "dag")
    return f", metrics port {dag['prometheus_port']}" if dag.get("enable_prometheus") else ""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve a PP-TSM model with Paddle Serving.")
    parser.add_argument("--model-dir", type=Path,
                        help=f"exported model folder, e.g. model_repo/pptsm "
                        f"(default: ${env_overrides.MODEL_DIR})")
    parser.add_argument("--config", type=Path,
                        help=f"Paddle Serving pipeline config (default: ${env_overrides.CONFIG}, "
                        f"else {env_overrides.DEFAULT_CONFIG})")
    parser.add_argument("--http-port", type=int, help="overrides http_port of the config")
    parser.add_argument("--rpc-port", type=int, help="overrides rpc_port of the config")
    parser.add_argument("--prometheus-port", type=int,
                        help="overrides dag.prometheus_port of the config (the metrics endpoint)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        model_dir = env_overrides.resolve_model_dir(args.model_dir, os.environ)
        meta = load_meta(model_dir)
        config = load_service_config(env_overrides.resolve_config(args.config, os.environ),
                                     http_port=args.http_port, rpc_port=args.rpc_port, meta=meta,
                                     prometheus_port=args.prometheus_port, environ=os.environ)
        predictor = Predictor(model_dir, meta, config.predictor)
    except (ConfigError, MetadataError, PredictorError, env_overrides.EnvOverrideError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    route_serving_logs(config.serving_log)
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    from_env = env_overrides.describe(os.environ)
    if from_env:
        print(f"settings from the environment: {from_env}", flush=True)
    print(f"serving {meta.name} {meta.version} ({meta.architecture}, {meta.num_classes} classes, "
          f"{meta.inference.format}) on http port {config.serving.get('http_port')}, rpc port "
          f"{config.serving.get('rpc_port')}{_metrics_note(config.serving)}", flush=True)
    print(predictor.selection.summary(), flush=True)
    service = PPTSMService(meta, config, predictor)
    service.prepare_pipeline_config(yml_dict=config.serving)
    service.serve_until_stopped()
    exit_now(0)  # not a normal exit: it would wait for decodes abandoned at their timeout
    return 0


if __name__ == "__main__":
    sys.exit(main())
