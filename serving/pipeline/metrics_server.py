"""`GET /metrics` on its own port, served by this process from the same bounded HTTP machinery
as the REST front end (serving.pipeline.http_base): at most METRICS_MAX_CONNECTIONS connections,
each request under `http.request_read_timeout_s`, every error in the JSON form.

Why not Paddle Serving's endpoint: with `dag.enable_prometheus` its DAG starts Flask's
development server on 0.0.0.0 (a thread per connection, no bound on them, no deadline), so a
few hundred slow clients on the metrics port could exhaust the process. serving.pipeline.server hides
that option from Paddle Serving and starts this server instead, on `metrics_host`. The answer
is the same registry (serving.pipeline.metrics.serving_registry): Paddle Serving's `pd_*` counters,
derived from its tracer's summaries as its own handler did (serving.pipeline.metrics.fold_tracer_summary),
and this service's `pptsm_*` metrics.
"""
from __future__ import annotations

import dataclasses
import threading
from http import HTTPStatus
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from serving.core.errors import InvalidInputError
from serving.pipeline.http_base import (
    BoundedHttpServer,
    HttpSettings,
    JsonRequestHandler,
    error_json,
)
from serving.pipeline.metrics import fold_tracer_summary

METRICS_PATH = "/metrics"
# Scrapers are few (a Prometheus or two, a person with curl); more connections only cost threads.
METRICS_MAX_CONNECTIONS = 16


class _MetricsHandler(JsonRequestHandler):
    ALLOW = "GET"
    server: "MetricsServer"

    def usage(self) -> str:
        return f"GET {METRICS_PATH}"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self.close_connection = self.close_connection or bool(self.headers.get("Content-Length"))
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self.close_connection = True
            self.answer(HTTPStatus.NOT_FOUND, error_json(
                InvalidInputError.CODE, f"no such endpoint {self.path[:80]!r}; {self.usage()}"))
            return
        self.work_begins()
        self.answer(HTTPStatus.OK, self.server.scrape(), content_type=CONTENT_TYPE_LATEST)


class MetricsServer(BoundedHttpServer):
    """Serves `registry` at GET /metrics; `tracer` is Paddle Serving's PerformanceTracer whose
    summaries feed the pd_* counters (None: no tracer, the pd_* counters stay at zero)."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, *,
                 settings: HttpSettings = HttpSettings(), tracer: Any = None) -> None:
        bounded = dataclasses.replace(
            settings, max_connections=min(settings.max_connections, METRICS_MAX_CONNECTIONS))
        super().__init__(address, _MetricsHandler, bounded)
        self.registry = registry
        self.tracer = tracer
        self._scraping = threading.Lock()

    def scrape(self) -> bytes:
        """The exposition text; one scrape at a time, since folding the tracer's summary into
        the pd_* counters consumes it."""
        with self._scraping:
            if self.tracer is not None:
                fold_tracer_summary(self.tracer)
            return generate_latest(self.registry)

    def start(self, name: str = "metrics-server") -> threading.Thread:
        return super().start(name)
