"""Where Paddle Serving's own logs go: warnings and errors to stderr, the rest to small rotating
files.

Paddle Serving 0.9 configures logging when `paddle_serving_server.pipeline` is imported
(`pipeline/logger.py`, a `logging.config.dictConfig` on the root logger): pipeline.log (INFO),
pipeline.log.wf (WARNING) and pipeline.tracer under $SERVING_LOG_PATH/PipelineServingLogs,
each rotating at 512 MB with up to 20 backups. In a container that folder is a tmpfs, so those
files are memory (gigabytes of it, at worst) and out of `docker logs`, where an operator looks
for internal errors. `route_serving_logs` replaces those handlers after the import, without
editing the installed package: WARNING and above go to stderr (the .wf file is dropped; stderr
is its copy) but for the routine per-request lines of ROUTINE_MESSAGES; INFO lines (a few per
request) and the tracer's summaries go to pipeline.log and pipeline.tracer in the same folder,
rotating at `max_bytes` with `backups` old files, or nowhere when max_bytes is 0.
$SERVING_LOG_PATH keeps choosing the folder, as before.
"""
from __future__ import annotations

import logging
import logging.handlers
import sys
from dataclasses import dataclass
from pathlib import Path

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline import logger as serving_logger  # noqa: E402

TRACER_LOGGER = "paddle_serving_server.pipeline.profiler"
_FORMAT = "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s"
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_BACKUPS = 1
DEFAULT_STDERR_LEVEL = "WARNING"
# Paddle Serving's per-request lines at WARNING / ERROR that report nothing wrong with the
# server: every model-less op's "skip process stage" (three per request, by design here) and
# the client errors (err_no 51-53, already in the request log) that its DAG logs as failures.
# They stay in pipeline.log; on stderr they would bury the real errors.
ROUTINE_MESSAGES = ("skip process stage", "return product error", "Failed to predict",
                    "unpack_rpc_func prod_errcode")


@dataclass(frozen=True)
class ServingLogSettings:
    """The `serving_log` section of config.yml."""

    max_bytes: int = DEFAULT_MAX_BYTES  # per file; 0 = no files, stderr only
    backups: int = DEFAULT_BACKUPS
    stderr_level: str = DEFAULT_STDERR_LEVEL

    def __post_init__(self) -> None:
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) \
                or self.max_bytes < 0:
            raise ValueError(f"max_bytes: bytes >= 0, got {self.max_bytes!r}")
        if isinstance(self.backups, bool) or not isinstance(self.backups, int) \
                or not 0 <= self.backups <= 10:
            raise ValueError(f"backups: 0 to 10, got {self.backups!r}")
        if self.stderr_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"stderr_level: DEBUG, INFO, WARNING, ERROR or CRITICAL, got "
                             f"{self.stderr_level!r}")


def log_folder() -> Path:
    """PipelineServingLogs, under $SERVING_LOG_PATH when set (Paddle Serving's own choice)."""
    return Path(serving_logger.log_dir)


class _RoutineFilter(logging.Filter):
    """Keeps Paddle Serving's ROUTINE_MESSAGES off stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("paddle_serving_server"):
            return True
        message = record.getMessage()
        return not any(routine in message for routine in ROUTINE_MESSAGES)


def _replace_handlers(logger: logging.Logger, handlers: list[logging.Handler]) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        logger.addHandler(handler)


def _rotating(path: Path, settings: ServingLogSettings, level: int,
              fmt: str) -> logging.Handler:
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(fmt))
    return handler


def route_serving_logs(settings: ServingLogSettings) -> None:
    """Replaces Paddle Serving's log handlers as the module docstring says."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(settings.stderr_level)
    stderr.setFormatter(logging.Formatter(_FORMAT))
    stderr.addFilter(_RoutineFilter())
    root_handlers: list[logging.Handler] = [stderr]
    tracer_handlers: list[logging.Handler] = []
    if settings.max_bytes > 0:
        folder = log_folder()
        root_handlers.append(_rotating(folder / "pipeline.log", settings, logging.INFO, _FORMAT))
        tracer_handlers.append(_rotating(folder / "pipeline.tracer", settings, logging.INFO,
                                         "%(asctime)s %(message)s"))
    _replace_handlers(logging.getLogger(), root_handlers)
    # The tracer's lines propagate to the root as well; without files they reach stderr only
    # at INFO, which stderr_level (WARNING by default) keeps out.
    _replace_handlers(logging.getLogger(TRACER_LOGGER), tracer_handlers)
