"""Request ids, metrics and the request log for every request, applied where a whole request
and its final answer are both visible: the servicer that both REST and gRPC requests enter.

The request id is the request's Paddle Serving `logid` when the client set one (both transports
carry it: gRPC `Request.logid`, HTTP JSON `"logid"`), otherwise a random one written into the
request before the pipeline sees it, so the ops' own log lines carry it as their log_id. Every
answer, success or error, gets it back as the `request_id` key. A ping answered is left out of
the latency metrics and the request log: probes every few seconds would drown the predictions.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from serving.core.errors import outcome_of
from serving.pipeline.attached import request_fields
from serving.pipeline.metrics import ServiceMetrics
from serving.pipeline.protocol import PING_KEY
from serving.pipeline.request_log import RequestRecord, RequestSummary

REQUEST_ID_KEY = "request_id"
# Paddle Serving's logid is an int64; random ids stay positive and below 2**62.
_ID_BITS = 62


@dataclass(frozen=True)
class PendingRequest:
    """A request that entered the pipeline and has not been answered yet."""

    request_id: str
    started: float  # time.perf_counter()
    summary: RequestSummary


def _json_field(fields: dict[str, str], key: str) -> Any:
    try:
        return json.loads(fields[key])
    except (KeyError, ValueError):
        return None


def _result_of(fields: dict[str, str]) -> tuple[dict[str, float], dict[str, object]]:
    """(stage timings, top class) of a successful classification answer; empty for a ping."""
    timing = _json_field(fields, "timing_ms") or {}
    ranked = _json_field(fields, "topk") or []
    return timing, (dict(ranked[0]) if ranked else {})


class RequestObserver:
    """Gives each request its id and, once answered, counts it and writes its log line."""

    def __init__(self, metrics: ServiceMetrics, request_log: logging.Logger) -> None:
        self._metrics = metrics
        self._log = request_log

    def begin(self, request: Any) -> PendingRequest:
        """Call when `request` (a pipeline_service_pb2.Request) arrives; sets its logid."""
        if not request.logid:
            request.logid = secrets.randbits(_ID_BITS) or 1
        self._metrics.in_flight.inc()
        return PendingRequest(request_id=str(request.logid), started=time.perf_counter(),
                              summary=RequestSummary.of(*request_fields(request)))

    def finish(self, pending: PendingRequest, response: Any) -> None:
        """Call with the pipeline_service_pb2.Response about to be sent; adds `request_id`."""
        seconds = time.perf_counter() - pending.started
        self._metrics.in_flight.dec()
        response.key.append(REQUEST_ID_KEY)
        response.value.append(pending.request_id)
        if response.err_no == 0 and pending.summary.keys == (PING_KEY,):
            return  # a readiness ping answered: not a prediction to time or log
        outcome = outcome_of(response.err_no)
        timing, top = (_result_of(dict(zip(response.key, response.value)))
                       if response.err_no == 0 else ({}, {}))
        self._metrics.record(outcome=outcome, err_no=response.err_no, seconds=seconds,
                             request_size=pending.summary.request_bytes, timing_ms=timing)
        record = RequestRecord(request_id=pending.request_id, outcome=outcome,
                               err_no=response.err_no, err_msg=response.err_msg,
                               duration_ms=seconds * 1000.0, summary=pending.summary,
                               timing_ms=timing, top=top)
        self._log.info(record.to_json())
