"""A quick load run for the clients' `--concurrency N --repeat M`: how fast, how steady, and
whether every answer is right.

Each file is first sent once, alone: that answer is the reference. Then every file is sent
`repeat` more times, `concurrency` requests at a time, and each answer is compared with its
file's reference: the same err_no and err_msg for a refused file, the same classes with scores
within SCORE_TOLERANCE for a classified one (auto-batching may change the last digits). A load
run passes when no request is lost (transport error) and none is answered differently.

Standard library only, like the rest of the package.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from .protocol import TRANSPORT_ERROR, Answer, Request, Send

# Builds the request for one video file (its bytes, a plain upload, or its frames).
MakeRequest = Callable[[Path], Request]

SCORE_TOLERANCE = 1e-4
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class LoadSummary:
    """What a load run measured; `passed` is False when an answer was lost or wrong."""

    requests: int
    concurrency: int
    seconds: float
    requests_per_s: float
    latency_ms: dict[str, float]  # p50, p95, p99, max
    answers_by_err_no: dict[str, int]
    transport_errors: int
    wrong_answers: int
    retries: int = 0  # requests sent again after a retriable answer (--retries)

    @property
    def passed(self) -> bool:
        return self.transport_errors == 0 and self.wrong_answers == 0

    def text(self) -> str:
        answers = ", ".join(f"err_no {code}: {count}"
                            for code, count in sorted(self.answers_by_err_no.items()))
        latency = " ".join(f"{name} {value:.0f}" for name, value in self.latency_ms.items())
        return (f"load: {self.requests} requests, {self.concurrency} at a time, in "
                f"{self.seconds:.1f} s = {self.requests_per_s:.2f} requests/s\n"
                f"latency ms: {latency}\n"
                f"answers: {answers}; transport errors {self.transport_errors}; "
                f"wrong answers {self.wrong_answers}; retries {self.retries}")

    def json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed})


def percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of ascending values (the value below which `percent`% fall)."""
    rank = max(1, math.ceil(percent / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def _scores(answer: Answer) -> list[tuple[int, float]]:
    ranked = json.loads(answer.fields.get("topk", "[]"))
    return [(entry["class_id"], entry["score"]) for entry in ranked]


def same_answer(reference: Answer, answer: Answer) -> bool:
    """Whether `answer` says what `reference` said (see the module docstring)."""
    if answer.err_no != reference.err_no:
        return False
    if answer.err_no != 0:
        return answer.err_msg == reference.err_msg
    expected, got = _scores(reference), _scores(answer)
    return len(expected) == len(got) and all(
        expected_id == got_id and abs(expected_score - got_score) <= SCORE_TOLERANCE
        for (expected_id, expected_score), (got_id, got_score) in zip(expected, got))


def run_load(paths: Sequence[Path], send: Send, make_request: MakeRequest, *, concurrency: int,
             repeat: int) -> LoadSummary:
    """The reference pass, then `repeat` x len(paths) requests `concurrency` at a time.
    ConnectionError when a reference request is lost (the service is not there)."""
    requests = {path: make_request(path) for path in paths}
    references = {path: send(request) for path, request in requests.items()}
    lost = [path for path, answer in references.items() if answer.err_no == TRANSPORT_ERROR]
    if lost:
        raise ConnectionError(f"{lost[0]}: {references[lost[0]].err_msg}")
    latencies: list[float] = []
    answers: Counter[str] = Counter()
    transport_errors = wrong = 0
    lock = threading.Lock()

    def one(path: Path) -> None:
        nonlocal transport_errors, wrong
        started = time.perf_counter()
        answer = send(requests[path])
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)
            answers[str(answer.err_no)] += 1
            if answer.err_no == TRANSPORT_ERROR:
                transport_errors += 1
            elif not same_answer(references[path], answer):
                wrong += 1

    schedule = [path for _ in range(repeat) for path in paths]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(one, path) for path in schedule]:
            future.result()
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    latency_ms = {f"p{p}": 1000.0 * percentile(ordered, p) for p in PERCENTILES}
    latency_ms["max"] = 1000.0 * ordered[-1]
    return LoadSummary(requests=len(schedule), concurrency=concurrency, seconds=seconds,
                       requests_per_s=len(schedule) / seconds, latency_ms=latency_ms,
                       answers_by_err_no=dict(answers), transport_errors=transport_errors,
                       wrong_answers=wrong)
