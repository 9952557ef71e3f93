"""softmax / view averaging / top-k: the numbers the service reports."""
from __future__ import annotations

import numpy as np
import pytest

from serving.core.postprocess import softmax, top_k, video_probabilities


def test_softmax_sums_to_one_and_keeps_order() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    probs = softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=-1), [1.0, 1.0], rtol=1e-6)
    assert np.argmax(probs[0]) == 2
    np.testing.assert_allclose(probs[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(probs[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)


def test_softmax_does_not_overflow_on_large_logits() -> None:
    probs = softmax(np.array([1000.0, 999.0, -1000.0]))
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs[:2], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))])


def test_views_are_averaged_on_logits_not_probabilities() -> None:
    views = np.array([[4.0, 0.0], [0.0, 1.0]])
    expected = softmax(np.array([2.0, 0.5]))
    np.testing.assert_allclose(video_probabilities(views), expected)
    averaged_probs = softmax(views).mean(axis=0)
    assert not np.allclose(video_probabilities(views), averaged_probs)


def test_single_view_equals_plain_softmax() -> None:
    logits = np.array([[0.3, -1.2, 2.5, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(video_probabilities(logits), softmax(logits[0]), rtol=1e-6)


def test_video_probabilities_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="views, classes"):
        video_probabilities(np.zeros(3))
    with pytest.raises(ValueError, match="views, classes"):
        video_probabilities(np.zeros((0, 3)))


def test_top_k_best_first_with_deterministic_ties() -> None:
    probs = np.array([0.1, 0.4, 0.1, 0.4])
    assert top_k(probs, 4) == [(1, 0.4), (3, 0.4), (0, 0.1), (2, 0.1)]
    assert top_k(probs, 1) == [(1, 0.4)]


@pytest.mark.parametrize("k", [0, 5, -1])
def test_top_k_rejects_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 4"):
        top_k(np.full(4, 0.25), k)


def test_top_k_returns_plain_python_numbers() -> None:
    ((class_id, score),) = top_k(np.array([0.2, 0.8], dtype=np.float32), 1)
    assert type(class_id) is int and type(score) is float
    assert class_id == 1 and score == pytest.approx(0.8)
