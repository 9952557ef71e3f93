"""TemporalShift's evaluation form (slice/concat copies, used by export) must equal Paddle's
`temporal_shift` op bit for bit, and exported programs must not contain the slow op."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddle.base.proto import framework_pb2

from serving.core.metadata import load_meta
from tests.service_client import tiny_model_dir
from train.models.layers import TemporalShift


@pytest.mark.parametrize("num_seg, ratio, channels", [(8, 1 / 8, 64), (16, 1 / 16, 48),
                                                      (8, 1 / 8, 20), (1, 1 / 4, 8)])
def test_evaluation_form_equals_the_temporal_shift_op(num_seg, ratio, channels) -> None:
    clips = np.random.RandomState(num_seg).standard_normal(
        (3 * num_seg, channels, 5, 4)).astype("float32")
    layer = TemporalShift(num_seg, ratio)
    layer.eval()
    expected = F.temporal_shift(paddle.to_tensor(clips), seg_num=num_seg, shift_ratio=ratio)
    np.testing.assert_array_equal(layer(paddle.to_tensor(clips)).numpy(), expected.numpy())


def test_exported_program_shifts_without_the_temporal_shift_op(tmp_path_factory,
                                                               calibrate_bn) -> None:
    model_dir: Path = tiny_model_dir(tmp_path_factory, calibrate_bn)
    program_file = model_dir / load_meta(model_dir).inference.model_file
    program = framework_pb2.ProgramDesc.FromString(program_file.read_bytes())
    op_types = {op.type for block in program.blocks for op in block.ops}
    assert "temporal_shift" not in op_types
    assert {"slice", "concat"} <= op_types
