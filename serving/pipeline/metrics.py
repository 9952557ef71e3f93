"""The service's Prometheus metrics: requests and latency by outcome, stage timings, load.

Paddle Serving 0.9 has its own metrics registry whose `pd_*` counters it derives from its
tracer. It only knows success or failure, so this module adds the numbers an operator alerts on,
registered in the SAME registry, so that one scrape of the one endpoint (`dag.enable_prometheus`
+ `dag.prometheus_port` in the config, served by serving.pipeline.metrics_server, not by Paddle
Serving's own Flask app) returns both:

* `pptsm_requests_total{outcome, err_no}`: every answered request (outcomes: serving.core.errors);
* `pptsm_request_duration_seconds{outcome}`: end-to-end time in the server, histogram;
* `pptsm_stage_duration_seconds{stage}`: decode / sample / normalize / infer of answered
  classifications, histogram;
* `pptsm_requests_in_flight`: requests being worked on now;
* `pptsm_request_size_bytes`: size of the request values (the base64 upload), histogram;
* `process_*`: the server process's resident memory, CPU seconds, open files (prometheus_client's
  process collector), to watch memory stay flat under load.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# Seconds: a tiny model answers in milliseconds, a dense 4K request may take tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Bytes of base64: from a ping to the 64 MiB default upload limit.
SIZE_BUCKETS = tuple(float(4 ** power) for power in range(4, 15))


@dataclass(frozen=True)
class ServiceMetrics:
    """The collectors; create them once per registry (Prometheus refuses duplicates)."""

    requests: Counter
    latency: Histogram
    stages: Histogram
    in_flight: Gauge
    request_size: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "ServiceMetrics":
        ProcessCollector(registry=registry)
        return cls(
            requests=Counter("pptsm_requests", "Requests answered, by outcome and err_no",
                             ("outcome", "err_no"), registry=registry),
            latency=Histogram("pptsm_request_duration_seconds",
                              "Time from receiving a request to answering it, by outcome",
                              ("outcome",), buckets=LATENCY_BUCKETS, registry=registry),
            stages=Histogram("pptsm_stage_duration_seconds",
                             "Time of each pipeline stage of answered classifications",
                             ("stage",), buckets=LATENCY_BUCKETS, registry=registry),
            in_flight=Gauge("pptsm_requests_in_flight", "Requests being worked on",
                            registry=registry),
            request_size=Histogram("pptsm_request_size_bytes",
                                   "Size of a request's values (mostly the base64 upload)",
                                   buckets=SIZE_BUCKETS, registry=registry),
        )

    def record(self, *, outcome: str, err_no: int, seconds: float, request_size: int,
               timing_ms: Mapping[str, float]) -> None:
        """Counts one answered request."""
        self.requests.labels(outcome=outcome, err_no=str(err_no)).inc()
        self.latency.labels(outcome=outcome).observe(seconds)
        self.request_size.observe(request_size)
        for stage, milliseconds in timing_ms.items():
            self.stages.labels(stage=stage).observe(milliseconds / 1000.0)


def serving_registry() -> CollectorRegistry:
    """The registry behind Paddle Serving's own /metrics endpoint (imported lazily: it needs
    the Paddle Serving compat shim first)."""
    from serving.pipeline import compat  # noqa: F401
    from paddle_serving_server.pipeline.prometheus_metrics import registry

    return registry


def fold_tracer_summary(tracer: Any) -> None:
    """Adds the latest summary of Paddle Serving's PerformanceTracer to its `pd_*` counters and
    consumes it, as Paddle Serving's own /metrics handler did on each scrape (its DAG's
    `start_prom`), so the counters keep their meaning now that serving.pipeline.metrics_server serves
    them. The tracer fills the summary only when told to (`set_enable_dict(True)`)."""
    from serving.pipeline import compat  # noqa: F401
    from paddle_serving_server.pipeline import prometheus_metrics as pd

    summary, tracer.profile_dict = tracer.profile_dict, {}
    dag = summary.get("DAG")
    if not dag or "query_count" not in dag:
        return
    total = dag["query_count"]
    pd.metric_query_success.inc(max(0.0, total * dag["succ"]))
    pd.metric_query_failure.inc(max(0.0, total * (1 - dag["succ"])))
    pd.metric_query_duration_us.inc(max(0.0, total * dag["avg"]))
    ops = [costs for name, costs in summary.items() if name != "DAG" and "count" in costs]
    pd.metric_inf_count.inc(sum(costs["count"] for costs in ops))
    pd.metric_inf_duration_us.inc(sum(costs["count"] * costs.get("midp", 0.0) for costs in ops))
