"""Mixup (PaddleVideo's `Mixup`): the blend of the clips and the loss on the two label sets."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from train.engine.losses import MixedTargets, mixed_cross_entropy
from train.engine.mixup import mixup_batch


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_mixup_blends_each_clip_with_its_permuted_partner() -> None:
    clips = np.random.RandomState(0).randn(4, 2, 3, 8, 8).astype("float32")
    labels = np.array([0, 1, 2, 3])
    mixed, targets = mixup_batch(paddle.to_tensor(clips), paddle.to_tensor(labels), 0.2,
                                 np.random.default_rng(7))
    replay = np.random.default_rng(7)
    lam = replay.beta(0.2, 0.2)
    order = replay.permutation(4)
    assert targets.lam == pytest.approx(lam)
    np.testing.assert_array_equal(targets.labels_a.numpy(), labels)
    np.testing.assert_array_equal(targets.labels_b.numpy(), labels[order])
    np.testing.assert_allclose(mixed.numpy(), lam * clips + (1 - lam) * clips[order], rtol=1e-6,
                               atol=1e-6)


def test_alpha_zero_leaves_the_batch_alone() -> None:
    clips = paddle.ones([2, 1, 3, 4, 4])
    mixed, targets = mixup_batch(clips, paddle.to_tensor([[1], [0]]), 0.0,
                                 np.random.default_rng(0))
    assert mixed is clips and targets.lam == 1.0
    assert targets.labels_b.numpy().tolist() == targets.labels_a.numpy().tolist() == [1, 0]


def test_mixed_loss_is_lam_weighted_cross_entropy_of_both_label_sets() -> None:
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=np.float32)
    labels_a, labels_b, lam = np.array([0, 2]), np.array([1, 0]), 0.3
    log_probs = _log_softmax(logits.astype(np.float64))
    rows = np.arange(2)
    expected = (lam * -log_probs[rows, labels_a].mean()
                + (1 - lam) * -log_probs[rows, labels_b].mean())
    targets = MixedTargets(paddle.to_tensor(labels_a), paddle.to_tensor(labels_b), lam)
    got = mixed_cross_entropy(paddle.to_tensor(logits), targets)
    assert float(got) == pytest.approx(expected, rel=1e-5)
