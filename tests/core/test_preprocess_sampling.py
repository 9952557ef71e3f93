"""Frame sampling against PaddleVideo's own Sampler output (the oracle tables)."""
from __future__ import annotations

import json
import re

import pytest

from tests.reference_paths import REFERENCE_DIR

from serving.core.metadata import PreprocessSpec
from serving.core.preprocess.pipeline import sample_indices
from serving.core.preprocess.sampling import (
    dense_clip_indices,
    dense_indices,
    dense_start_count,
    segment_length,
    uniform_indices,
)

ORACLE = REFERENCE_DIR / \
    "preprocess" / "preprocess_oracle.json"


def _load_oracle() -> dict:
    if not ORACLE.is_file():
        pytest.skip(f"reference oracle not found at {ORACLE} (set PPTSM_REFERENCE_DIR)")
    return json.loads(ORACLE.read_text(encoding="utf-8"))


def _table_rows(table_name: str) -> list[tuple[int, int, object]]:
    """(N, T, row) for every 'N=..,T=..' key of an oracle table; empty when the oracle is absent."""
    if not ORACLE.is_file():
        return []
    rows = []
    for key, row in json.loads(ORACLE.read_text(encoding="utf-8"))[table_name].items():
        match = re.fullmatch(r"N=(\d+),T=(\d+)(,valid)?", key)
        if match:
            rows.append((int(match[1]), int(match[2]), row))
    return rows


UNIFORM_ROWS = _table_rows("valid_mode_sampling_tables")
DENSE_ROWS = _table_rows("dense_valid_sampling_tables_T8")


def test_the_oracle_tables_are_all_found():
    _load_oracle()
    assert len(UNIFORM_ROWS) == 12
    assert len(DENSE_ROWS) == 6


@pytest.mark.parametrize("num_frames,num_seg,row", UNIFORM_ROWS,
                         ids=[f"N{n}-T{t}" for n, t, _ in UNIFORM_ROWS])
def test_uniform_indices_match_paddlevideo_for_videos(num_frames, num_seg, row):
    assert uniform_indices(num_frames, num_seg) == row["valid_video_0based"]


@pytest.mark.parametrize("num_frames,num_seg,row", UNIFORM_ROWS,
                         ids=[f"N{n}-T{t}" for n, t, _ in UNIFORM_ROWS])
def test_uniform_indices_plus_one_are_the_frame_folder_file_numbers(num_frames, num_seg, row):
    file_numbers = row["valid_frame_1based_filenumber"]
    if isinstance(file_numbers, str):  # N < T: the frame-folder reader fails, videos wrap
        assert num_frames < num_seg and "FileNotFoundError" in file_numbers
        return
    assert [index + 1 for index in uniform_indices(num_frames, num_seg)] == file_numbers


@pytest.mark.parametrize("num_frames,num_seg,file_numbers", DENSE_ROWS,
                         ids=[f"N{n}" for n, _, _ in DENSE_ROWS])
def test_dense_indices_match_paddlevideo_file_numbers_minus_one(num_frames, num_seg,
                                                                file_numbers):
    indices = dense_indices(num_frames, num_seg, num_clips=10, span=64)
    assert len(indices) == 80
    assert indices == [number - 1 for number in file_numbers]


def test_dense_train_example_reuses_the_clip_arithmetic():
    """PaddleVideo's dense train sample for N=300 after np.random.seed(0) started at 172."""
    oracle = _load_oracle()
    expected = oracle["dense_valid_sampling_tables_T8"]["N=300,T=8,train,np.random.seed(0)"]
    assert dense_start_count(300) == 237
    assert [i + 1 for i in dense_clip_indices(172, 300)] == expected


def test_segment_arithmetic_for_training():
    assert segment_length(31, 8) == 3
    assert segment_length(7, 8) == 0
    assert dense_start_count(40) == 1  # shorter than the span: every clip starts at 0
    assert dense_clip_indices(0, 40) == [0, 8, 16, 24, 32, 0, 8, 16]  # wraps with % N


def test_uniform_sampling_never_leaves_the_video():
    for num_frames in range(1, 70):
        for num_seg in (1, 8, 16, 32):
            indices = uniform_indices(num_frames, num_seg)
            assert len(indices) == num_seg
            assert all(0 <= i < num_frames for i in indices)


def test_dense_generalises_to_other_clip_shapes():
    assert dense_indices(200, num_seg=4, num_clips=2, span=32) == [0, 8, 16, 24,
                                                                   168, 176, 184, 192]


@pytest.mark.parametrize("call", [
    lambda: uniform_indices(0, 8),
    lambda: uniform_indices(10, 0),
    lambda: dense_indices(10, num_clips=0),
    lambda: dense_indices(10, span=0),
])
def test_invalid_arguments_are_rejected_with_a_named_reason(call):
    with pytest.raises(ValueError, match="must be >= 1"):
        call()


def test_sample_indices_dispatches_on_the_spec_and_the_mode():
    uniform_spec = PreprocessSpec(num_seg=8)
    dense_spec = PreprocessSpec(num_seg=8, sampling="dense")
    assert sample_indices(100, uniform_spec) == uniform_indices(100, 8)
    assert sample_indices(100, dense_spec) == dense_indices(100, 8, 10, 64)
    assert sample_indices(100, dense_spec, mode="uniform") == uniform_indices(100, 8)
    with pytest.raises(ValueError, match="sampling mode"):
        sample_indices(100, uniform_spec, mode="random")
