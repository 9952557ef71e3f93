"""The Paddle Serving pipeline: decode -> sample -> normalize -> pptsm, one thin `Op` per stage
(stage names and timing from serving.core.stages and serving.core.timing, shared with the offline
predictor).

Each op calls library functions (serving.pipeline.protocol, serving.core.preprocess,
serving.core.predictor, serving.core.postprocess) and only adapts them to Paddle Serving 0.9's
Op contract, read from `paddle_serving_server/pipeline/operator.py`:

* `preprocess(input_dicts, data_id, log_id)` returns `(data, is_skip_process, prod_errcode,
  prod_errinfo)`. A non-None `prod_errcode` ends the request at once: the framework forwards it
  to the client as the response's `err_no`, with `prod_errinfo` as `err_msg`, and skips the
  later ops. That is how every CodedError becomes a clean error response.
* An op without a model (`local_service_conf.model_config`) skips `process`, so `preprocess`
  output goes straight to the next op. The stages pass one `ClipJob` object along; this needs
  thread ops (`dag.is_thread_op: true`), which the service enforces.
* Auto-batching (`batch_size`, `auto_batching_timeout`) happens in `process`: the framework
  concatenates the `preprocess` dicts of several requests along axis 0, calls `process` once and
  slices every output array back per request by the same row offsets. `PPTSMOp` therefore runs
  its own Predictor (Paddle Serving's local predictor only finds `*.pdmodel`) inside `process`.
* Paddle Serving applies an op's `timeout` to `process` only; the decode, sample and normalize
  stages work in `preprocess`, so `_StageOp` applies the same setting there
  (serving.pipeline.deadline).
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.pipeline import compat  # noqa: F401  (must precede the Paddle Serving import)
from paddle_serving_server.pipeline import Op, RequestOp  # noqa: E402

from serving.pipeline.attached import AttachedRequest  # noqa: E402
from serving.pipeline.deadline import run_with_deadline  # noqa: E402
from serving.pipeline.env_overrides import MODEL_OP  # noqa: E402
from serving.core.errors import (  # noqa: E402
    BusyError,
    CodedError,
    InternalError,
    internal_error_message,
)
from serving.core.metadata import ModelMeta  # noqa: E402
from serving.core.predictor import Predictor  # noqa: E402
from serving.core.preprocess.raw_frames import RawFrames  # noqa: E402
from serving.core.preprocess.decode import DecodeLimits, VideoSource, open_video  # noqa: E402
from serving.pipeline.protocol import (  # noqa: E402
    ClassifyRequest,
    PingRequest,
    SERVING_PROFILE_KEY,
    Request,
    check_envelope,
    classification_response,
    parse_request,
    ping_response,
    timeline_response,
)
from serving.core.stages import (  # noqa: E402
    DECODE,
    INFER,
    NORMALIZE,
    SAMPLE,
    classify_timeline,
    network_views,
    ranked_classes,
    sample_frames,
    timeline_fps,
)
from serving.core.timeline import TIMELINE, TimelineResult, TimelineSettings  # noqa: E402
from serving.core.timing import StageClock  # noqa: E402

log = logging.getLogger(__name__)

JOB_KEY = "job"
LOGITS_KEY = "logits"
INFER_MS_KEY = "infer_ms"
_OK = 0

PreprocessResult = tuple[Any, bool, Any, str]


@dataclass
class ClipJob:
    """One request on its way through the stages; each stage fills in its part."""

    request: Request
    source: VideoSource | RawFrames | None = None  # opened by DecodeOp, closed by SampleOp
    frames: np.ndarray | None = None  # sampled RGB uint8 frames
    views: np.ndarray | None = None  # float32 [views, T, 3, S, S], the network input
    timeline: TimelineResult | None = None  # a timeline's answer, made whole by SampleOp
    # Each stage's own work, without the queueing between ops (the answer's `timing_ms`).
    clock: StageClock = field(default_factory=StageClock)
    # Set by a stage's deadline: every decode and resize loop of this request then stops.
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def is_ping(self) -> bool:
        return isinstance(self.request, PingRequest)

    @property
    def is_timeline(self) -> bool:
        return isinstance(self.request, ClassifyRequest) and self.request.mode == TIMELINE

    @property
    def classify(self) -> ClassifyRequest:
        assert isinstance(self.request, ClassifyRequest)
        return self.request


def _answering_errors(preprocess_fn: Callable[..., dict]) -> Callable[..., PreprocessResult]:
    """Wraps a stage's work into Paddle Serving's preprocess contract, within the stage's
    timeout: a CodedError becomes the client's err_no/err_msg; anything else is logged with
    its traceback and reported as an internal error that names the op and the request id, never
    with the exception's text (serving.core.errors.internal_error_message)."""

    @functools.wraps(preprocess_fn)
    def wrapper(self: "_StageOp", input_dicts: dict, data_id: int = 0,
                log_id: int = 0) -> PreprocessResult:
        try:
            cancel = self.cancel_token(input_dicts)
            output = run_with_deadline(lambda: preprocess_fn(self, input_dicts, cancel),
                                       self.timeout_s(input_dicts), stage=self.name,
                                       cancel=cancel)
            return output, False, None, ""
        except CodedError as exc:
            return None, False, exc.code, exc.message
        except Exception:  # noqa: BLE001 - the service must answer, whatever failed
            log.exception("op %s failed on request %s", self.name, log_id)
            return None, False, InternalError.CODE, internal_error_message(self.name, log_id)

    return wrapper


def _single_input(input_dicts: dict) -> dict:
    (data,) = input_dicts.values()
    return data


def _job(input_dicts: dict) -> ClipJob:
    return _single_input(input_dicts)[JOB_KEY]


class KeyValueRequestOp(RequestOp):
    """Paddle Serving's request op behind protocol.check_envelope: mismatched key/value lists
    (the stock op answers "rpc package error: list index out of range"), repeated keys,
    `tensors` (which the stock op would unpickle) and oversized requests are answered with a
    clear error before anything is unpacked; Paddle Serving's profile request is dropped."""

    def __init__(self, *, limits: DecodeLimits) -> None:
        super().__init__()
        self._limits = limits

    def unpack_request_package(self, request: Any) -> tuple[dict, int, int | None, str]:
        """The fields of a Request, or of an AttachedRequest with its attachments (bytes) added:
        the REST front end's plain uploads, which the front end has bounded already."""
        attachments: dict[str, bytes] = {}
        if isinstance(request, AttachedRequest):
            request, attachments = request.request, request.attachments
        try:
            check_envelope(request.key, request.value, tensor_count=len(request.tensors),
                           limits=self._limits)
        except CodedError as exc:
            return {}, request.logid, exc.code, exc.message
        fields, log_id, err_no, err_msg = super().unpack_request_package(request)
        fields.update(attachments)
        # Paddle Serving answers a request carrying `pipeline.profile: 1` with the profile of
        # its DAG: other clients' timings and the process id. The key is accepted (Paddle
        # Serving's PipelineClient(profile=True) sends it) and dropped here, so the DAG never
        # sees it and nothing is returned.
        fields.pop(SERVING_PROFILE_KEY, None)
        return fields, log_id, err_no, err_msg


class _StageOp(Op):
    """A model-less stage; `op.<name>.timeout` (ms, <= 0 for none) bounds its work per request."""

    stage_timeout_s: float | None = None

    def init_from_dict(self, conf: dict) -> None:
        super().init_from_dict(conf)
        timeout_ms = conf.get("timeout", -1)
        self.stage_timeout_s = timeout_ms / 1000.0 if timeout_ms > 0 else None

    def cancel_token(self, input_dicts: dict) -> threading.Event:
        """The request's cancel token, which this stage's deadline sets (ClipJob.cancel)."""
        return _job(input_dicts).cancel

    def timeout_s(self, input_dicts: dict) -> float | None:
        """Seconds this stage may work on the request (None: no limit)."""
        return self.stage_timeout_s


class DecodeOp(_StageOp):
    """Validates the request and opens its video (probe + decoder; no frame decoded yet)."""

    def __init__(self, input_op: Op, *, meta: ModelMeta, limits: DecodeLimits, backend: str,
                 temp_dir: Path | None) -> None:
        super().__init__(name=DECODE, input_ops=[input_op])
        self._meta = meta
        self._limits = limits
        self._backend = backend
        self._temp_dir = temp_dir

    def cancel_token(self, input_dicts: dict) -> threading.Event:
        """The first stage makes the request's token; the job carries it on."""
        return threading.Event()

    @_answering_errors
    def preprocess(self, input_dicts: dict, cancel: threading.Event) -> dict:
        clock = StageClock()
        with clock.measure(DECODE):
            request = parse_request(_single_input(input_dicts),
                                    num_classes=self._meta.num_classes,
                                    default_mode=self._meta.preprocess.sampling,
                                    limits=self._limits)
            job = ClipJob(request, cancel=cancel, clock=clock)
            if isinstance(request, ClassifyRequest):
                job.source = (RawFrames(request.frames, self._limits, cancel)
                              if request.frames is not None else
                              open_video(request.video, limits=self._limits,
                                         backend=self._backend, temp_dir=self._temp_dir,
                                         cancel=cancel))
        return {JOB_KEY: job}


class SampleOp(_StageOp):
    """Chooses the frame indices for the request's mode and decodes only those frames, each
    distinct frame once, scaled to the model's size as soon as it is decoded.

    A timeline is answered here whole (serving.core.stages.classify_timeline): its windows are
    decoded, normalised and classified batch by batch in one pass, so that a long video never
    holds all its windows' frames at once; it borrows the model op's predictor (a Predictor is
    safe to share between threads) and runs under `timeline.timeout_s` instead of this stage's
    timeout. The later stages pass it on."""

    def __init__(self, input_op: Op, *, meta: ModelMeta, predictor: Predictor,
                 limits: DecodeLimits, timeline: TimelineSettings) -> None:
        super().__init__(name=SAMPLE, input_ops=[input_op])
        self._meta = meta
        self._spec = meta.preprocess
        self._predictor = predictor
        self._limits = limits
        self._timeline = timeline
        self._timeline_slots = threading.BoundedSemaphore(timeline.max_concurrent)

    def timeout_s(self, input_dicts: dict) -> float | None:
        if _job(input_dicts).is_timeline:
            return self._timeline.timeout_s
        return super().timeout_s(input_dicts)

    @_answering_errors
    def preprocess(self, input_dicts: dict, cancel: threading.Event) -> dict:
        job = _job(input_dicts)  # its source checks `cancel` per frame
        if job.is_timeline:
            with job.source:
                if not self._timeline_slots.acquire(blocking=False):
                    raise BusyError(
                        f"the service is classifying {self._timeline.max_concurrent} other "
                        f"timeline(s) (timeline.max_concurrent); retry later")
                try:
                    job.timeline = self._classify_timeline(job)
                finally:
                    self._timeline_slots.release()
            job.source = None
        elif not job.is_ping:
            mode = job.classify.mode
            with job.clock.measure(SAMPLE), job.source:
                job.frames = sample_frames(job.source, self._spec, mode)
            job.source = None
        return {JOB_KEY: job}

    def _classify_timeline(self, job: ClipJob) -> TimelineResult:
        request = job.classify
        assert request.timeline is not None
        return classify_timeline(job.source, self._spec, self._meta.labels, request.timeline,
                                 timeline_fps(job.source, request.frames_fps),
                                 self._predictor.predict, batch_size=self._timeline.batch_size,
                                 limits=self._limits, topk=request.topk, clock=job.clock)


class NormalizeOp(_StageOp):
    """Crop(s) and normalise the scaled frames, as the model's metadata says; frames become
    views."""

    def __init__(self, input_op: Op, *, meta: ModelMeta) -> None:
        super().__init__(name=NORMALIZE, input_ops=[input_op])
        self._spec = meta.preprocess

    @_answering_errors
    def preprocess(self, input_dicts: dict, cancel: threading.Event) -> dict:
        job = _job(input_dicts)
        if not job.is_ping and not job.is_timeline:
            with job.clock.measure(NORMALIZE):
                job.views = network_views(job.frames, self._spec, job.classify.mode)
            job.frames = None
        return {JOB_KEY: job}


class PPTSMOp(Op):
    """Runs the network on the views of one or (auto-batched) several requests, then turns each
    request's logits into its response."""

    def __init__(self, input_op: Op, *, meta: ModelMeta, predictor: Predictor) -> None:
        super().__init__(name=MODEL_OP, input_ops=[input_op])
        self._meta = meta
        self._predictor = predictor

    def init_from_dict(self, conf: dict) -> None:
        super().init_from_dict(conf)
        # No `model_config` means "no model" to Paddle Serving, which would then skip `process`,
        # the only stage it batches. This op has a model: its own Predictor.
        self.with_serving = True

    def init_client(self, client_config: Any, server_endpoints: Any) -> Predictor:
        """Paddle Serving calls this once per op thread group to get the inference client."""
        return self._predictor

    def preprocess(self, input_dicts: dict, data_id: int = 0, log_id: int = 0) -> PreprocessResult:
        job = _job(input_dicts)
        if job.is_ping or job.is_timeline:  # nothing left to run (a timeline ran in SampleOp)
            return {}, True, None, ""
        return {self._predictor.input_name: job.views}, False, None, ""

    def process(self, feed_batch: list[dict], typical_logid: int = 0) -> tuple[Any, int, str]:
        (feed,) = feed_batch  # the framework has merged the batch into one dict
        if not feed:  # only pings in this batch
            return {}, _OK, ""
        clock = StageClock()
        try:
            logits = self.client.predict(feed[self._predictor.input_name])
        except Exception:  # noqa: BLE001 - reported to every request of the batch
            log.exception("inference failed (batch led by request %s)", typical_logid)
            return None, InternalError.CODE, internal_error_message(self.name, typical_logid)
        elapsed_ms = clock.lap(INFER)
        # One copy per row, so that the framework's per-request slicing hands every request the
        # time of the batch it ran in.
        return {LOGITS_KEY: logits, INFER_MS_KEY: np.full(len(logits), elapsed_ms)}, _OK, ""

    def postprocess(self, input_dicts: dict, fetch_dict: dict, data_id: int = 0,
                    log_id: int = 0) -> tuple[dict[str, str], Any, str]:
        job = _job(input_dicts)
        if job.is_ping:
            return ping_response(self._meta), None, ""
        if job.timeline is not None:
            return timeline_response(self._meta, job.timeline, job.clock.stage_ms), None, ""
        job.clock.stage_ms[INFER] = float(fetch_dict[INFER_MS_KEY][0])
        best = ranked_classes(fetch_dict[LOGITS_KEY], job.classify.topk)
        return classification_response(self._meta, best, job.clock.stage_ms), None, ""
