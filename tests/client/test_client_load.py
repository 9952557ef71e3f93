"""The clients' load-run arithmetic: percentiles and what counts as the same answer."""
from __future__ import annotations

import json

import pytest
from pptsm_client.load_run import LoadSummary, percentile, same_answer
from pptsm_client.protocol import Answer


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50.0, 95.0, 99.0, 100.0]
    assert percentile([7.0], 99) == 7.0


def _classified(*scores: tuple[int, float]) -> Answer:
    ranked = [{"class_id": class_id, "label": str(class_id), "score": score}
              for class_id, score in scores]
    return Answer(0, "", {"topk": json.dumps(ranked)})


@pytest.mark.parametrize("answer, same", [
    (_classified((2, 0.7), (0, 0.2)), True),
    (_classified((2, 0.70004), (0, 0.19996)), True),  # batching changes the last digits
    (_classified((2, 0.71), (0, 0.2)), False),
    (_classified((0, 0.7), (2, 0.2)), False),
    (_classified((2, 0.7)), False),
    (Answer(52, "video: broken", {}), False),
])
def test_same_answer_for_a_classified_file(answer: Answer, same: bool) -> None:
    assert same_answer(_classified((2, 0.7), (0, 0.2)), answer) is same


def test_same_answer_for_a_refused_file() -> None:
    reference = Answer(52, "video: broken", {})
    assert same_answer(reference, Answer(52, "video: broken", {}))
    assert not same_answer(reference, Answer(52, "video: other", {}))
    assert not same_answer(reference, Answer(-1, "cannot reach", {}))


def test_summary_passes_only_without_lost_or_wrong_answers() -> None:
    summary = LoadSummary(requests=10, concurrency=2, seconds=2.0, requests_per_s=5.0,
                          latency_ms={"p50": 10.0, "p95": 20.0, "p99": 30.0, "max": 31.0},
                          answers_by_err_no={"0": 8, "52": 2}, transport_errors=0,
                          wrong_answers=0)
    assert summary.passed and json.loads(summary.json())["passed"] is True
    assert "p99 30" in summary.text() and "err_no 52: 2" in summary.text()
    assert summary.retries == 0 and "retries 0" in summary.text()
    lost = LoadSummary(**{**summary.__dict__, "transport_errors": 1})
    assert not lost.passed
