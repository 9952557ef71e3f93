"""Resize, crop, normalise and the composed pipelines against PaddleVideo's outputs."""
from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

from tests.reference_paths import REFERENCE_DIR
from PIL import Image

from serving.core.metadata import PreprocessSpec
from serving.core.preprocess.pipeline import (
    preprocess,
    preprocess_dense,
    preprocess_uniform,
    sample_indices,
)
from serving.core.preprocess import transforms
from serving.core.preprocess.cancel import Cancelled
from serving.core.preprocess.workers import shared_pool
from serving.core.preprocess.transforms import (
    FrameResize,
    ResizeAlongside,
    center_crop_origin,
    crop,
    normalize,
    resize_frames,
    scaled_size,
    three_crop_origins,
)

PREPROCESS_DIR = REFERENCE_DIR / \
    "preprocess"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def oracle() -> dict:
    path = PREPROCESS_DIR / "preprocess_oracle.json"
    if not path.is_file():
        pytest.skip(f"reference oracle not found at {path} (set PPTSM_REFERENCE_DIR)")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def oracle_clip() -> np.ndarray:
    """The oracle's input: 40 random RGB frames, 320 wide and 240 high."""
    return np.random.RandomState(7).randint(0, 256, (40, 240, 320, 3), dtype=np.uint8)


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _sizes(text: str) -> tuple[int, int]:
    width, height = text.split("x")
    return int(width), int(height)


# --- Scale --------------------------------------------------------------------------------

def test_scaled_size_matches_every_row_of_the_resize_table(oracle):
    for size_text, options in oracle["resize_examples_WxH"].items():
        width, height = _sizes(size_text)
        fixed = tuple(options["default(fixed_ratio=True)"]["out_WxH"])
        free = tuple(options["fixed_ratio=False"]["out_WxH"])
        assert scaled_size(width, height, 256) == fixed, size_text
        assert scaled_size(width, height, 256, fixed_ratio=False) == free, size_text


def test_scaled_size_generalises_to_small_models():
    assert scaled_size(320, 240, 73) == (97, 73)  # int(73 * 4 / 3)
    assert scaled_size(240, 320, 73) == (73, 97)
    assert scaled_size(100, 100, 73) == (73, 97)  # square counts as portrait
    assert scaled_size(120, 73, 73) == (120, 73)  # short side already 73: untouched


def test_resize_with_pillow_is_pillow_bilinear_per_frame(oracle_clip):
    frames = oracle_clip[:3]
    resized = resize_frames(frames, (341, 256))
    assert resized.shape == (3, 256, 341, 3) and resized.dtype == np.uint8
    for frame, out in zip(frames, resized):
        expected = np.asarray(Image.fromarray(frame).resize((341, 256), Image.BILINEAR))
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("size", [(341, 256), (107, 80), (256, 256)])
def test_the_rgb_view_of_four_byte_pixels_resizes_like_its_copy(size):
    """The PyAV backend hands over the R, G, B of RGBA pixels, which Pillow maps without a copy;
    the resize must not see the fourth byte, nor map a view that does not start a pixel."""
    rgba = np.random.RandomState(3).randint(0, 256, (240, 320, 4), dtype=np.uint8)
    for view in (rgba[..., :3], rgba[..., 1:]):
        expected = np.asarray(Image.fromarray(np.ascontiguousarray(view)).resize(size,
                                                                                 Image.BILINEAR))
        np.testing.assert_array_equal(FrameResize(size)(view), expected)


def test_resize_to_the_same_size_returns_the_frames_untouched(oracle_clip):
    assert resize_frames(oracle_clip, (320, 240)) is oracle_clip


def test_opencv_resize_is_close_when_enlarging_but_not_when_shrinking(oracle_clip):
    frames = oracle_clip[:2]
    up = np.abs(resize_frames(frames, (341, 256), "opencv").astype(int)
                - resize_frames(frames, (341, 256)).astype(int))
    assert up.max() <= 1
    down = np.abs(resize_frames(frames, (107, 80), "opencv").astype(int)
                  - resize_frames(frames, (107, 80)).astype(int))
    assert down.max() > 10  # Pillow antialiases when shrinking; OpenCV's INTER_LINEAR does not


def test_resize_rejects_bad_input(oracle_clip):
    with pytest.raises(ValueError, match="resize backend"):
        resize_frames(oracle_clip, (10, 10), backend="skimage")
    with pytest.raises(ValueError, match=r"RGB uint8 \[T, H, W, 3\]"):
        resize_frames(oracle_clip.astype(np.float32), (10, 10))


# --- Crops --------------------------------------------------------------------------------

def test_center_crop_origin_matches_the_table(oracle):
    for options in oracle["resize_examples_WxH"].values():
        for option in ("default(fixed_ratio=True)", "fixed_ratio=False"):
            width, height = options[option]["out_WxH"]
            expected = tuple(options[option]["centercrop_x1y1"])
            assert center_crop_origin(width, height, 224) == expected


def test_center_crop_rounds_halves_to_even():
    assert center_crop_origin(341, 256, 224) == (58, 16)  # 58.5 -> 58
    assert center_crop_origin(455, 256, 224) == (116, 16)  # 115.5 -> 116
    assert center_crop_origin(97, 73, 64) == (16, 4)  # 16.5 -> 16, 4.5 -> 4


def test_three_crop_origins_are_left_right_centre(oracle):
    offsets = oracle["dense10x3"]["crop_offsets_x_y_on_341x256"]
    assert three_crop_origins(341, 256, 224) == [tuple(offsets["left"]), tuple(offsets["right"]),
                                                 tuple(offsets["center"])]
    assert three_crop_origins(256, 341, 224) == [(0, 58), (32, 58), (16, 58)]


def test_crop_is_a_window_of_every_frame(oracle_clip):
    window = crop(oracle_clip, (58, 16), 64)
    assert window.shape == (40, 64, 64, 3)
    np.testing.assert_array_equal(window[5], oracle_clip[5, 16:80, 58:122])


def test_crops_that_do_not_fit_are_rejected(oracle_clip):
    with pytest.raises(ValueError, match="does not fit"):
        center_crop_origin(200, 100, 224)
    with pytest.raises(ValueError, match="does not fit"):
        crop(oracle_clip, (300, 0), 64)


# --- Normalisation ------------------------------------------------------------------------

def test_normalize_is_float32_divide_subtract_divide_in_that_order(oracle_clip):
    frames = oracle_clip[:2, :8, :8]
    out = normalize(frames, MEAN, STD)
    assert out.shape == (2, 3, 8, 8) and out.dtype == np.float32 and out.flags.c_contiguous
    x = frames.transpose(0, 3, 1, 2).astype(np.float32)
    mean = np.asarray(MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(STD, np.float32).reshape(3, 1, 1)
    np.testing.assert_array_equal(out, ((x / np.float32(255.0)) - mean) / std)


def test_the_algebraically_equal_formula_differs_which_is_why_the_order_is_fixed(oracle_clip):
    out = normalize(oracle_clip[:4], MEAN, STD)
    x = oracle_clip[:4].transpose(0, 3, 1, 2).astype(np.float32)
    mean = np.asarray(MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(STD, np.float32).reshape(3, 1, 1)
    other = (x - np.float32(255) * mean) / (np.float32(255) * std)
    assert 0 < np.abs(out - other).max() < 1e-6


def _float32_arithmetic(frames: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    x = frames.transpose(0, 3, 1, 2).astype(np.float32)
    return ((x / np.float32(255.0)) - np.asarray(mean, np.float32).reshape(3, 1, 1)) \
        / np.asarray(std, np.float32).reshape(3, 1, 1)


@pytest.mark.parametrize("mean,std", [(MEAN, STD), ((0.5, 0.25, 0.1), (0.3, 0.7, 1.9))])
def test_normalize_gives_the_float32_arithmetic_result_for_every_uint8_value(mean, std):
    """The look-up table is exact for all 256 values of each channel, not only the oracle's."""
    every_value = np.arange(256, dtype=np.uint8)
    frames = np.stack([every_value, every_value[::-1], np.roll(every_value, 7)], axis=-1)
    frames = frames.reshape(2, 8, 16, 3)
    np.testing.assert_array_equal(normalize(frames, mean, std),
                                  _float32_arithmetic(frames, mean, std))


def test_normalize_writes_into_the_rows_it_is_given(oracle_clip):
    frames = crop(oracle_clip[:4], (58, 16), 64)  # a strided view, as the pipelines pass
    batch = np.full((8, 3, 64, 64), np.nan, dtype=np.float32)
    assert normalize(frames, MEAN, STD, out=batch[4:]) is not None
    assert np.isnan(batch[:4]).all()
    np.testing.assert_array_equal(batch[4:], _float32_arithmetic(frames))


def test_normalize_refuses_rows_of_another_shape_or_type(oracle_clip):
    frames = oracle_clip[:2, :8, :8]
    for out in (np.empty((2, 3, 8, 7), np.float32), np.empty((2, 3, 8, 8), np.float64),
                np.empty((2, 3, 8, 16), np.float32)[..., ::2]):
        with pytest.raises(ValueError, match="out must be a C-contiguous float32 array"):
            normalize(frames, MEAN, STD, out=out)


# --- Resizing alongside the decoder --------------------------------------------------------

@pytest.mark.parametrize("max_pending", [0, 1, 2])
def test_resizing_alongside_gives_the_frames_of_frame_resize(oracle_clip, max_pending):
    resize = FrameResize((341, 256))
    alongside = ResizeAlongside(resize, max_pending=max_pending)
    returned = [alongside(frame) for frame in oracle_clip[:6]]
    if max_pending == 0:
        assert not any(isinstance(item, Future) for item in returned)
    frames = alongside.results(returned)
    for frame, resized in zip(oracle_clip[:6], frames):
        np.testing.assert_array_equal(resized, resize(frame))


def test_small_frames_are_resized_in_the_calling_thread(oracle_clip):
    alongside = ResizeAlongside(FrameResize((40, 30)))
    assert isinstance(alongside(oracle_clip[0, :30, :40]), np.ndarray)  # already that size
    assert isinstance(alongside(oracle_clip[0, :48, :64]), np.ndarray)  # below the pool's size


@pytest.mark.skipif(transforms.THREADS < 2, reason="one CPU: every resize runs in the caller")
def test_resizes_still_queued_behind_other_work_are_done_by_the_reader(oracle_clip):
    """A busy pool (other requests' decoders) must not make a read wait for its turn."""
    release = threading.Event()
    blockers = [shared_pool().submit(release.wait) for _ in range(transforms.THREADS)]
    try:
        alongside = ResizeAlongside(FrameResize((341, 256)), max_pending=2)
        returned = [alongside(frame) for frame in oracle_clip[:3]]
        assert sum(isinstance(item, Future) for item in returned) == 2
        with ThreadPoolExecutor(1) as reader:
            frames = reader.submit(alongside.results, returned).result(timeout=60)
    finally:
        release.set()
    assert all(blocker.result(timeout=60) for blocker in blockers)
    for frame, resized in zip(oracle_clip[:3], frames):
        np.testing.assert_array_equal(resized, FrameResize((341, 256))(frame))


@pytest.mark.skipif(transforms.THREADS < 2, reason="one CPU: every resize runs in the caller")
def test_a_cancelled_request_stops_its_pending_resizes(oracle_clip):
    token = threading.Event()
    token.set()
    alongside = ResizeAlongside(FrameResize((341, 256)), token, max_pending=2)
    returned = [alongside(frame) for frame in oracle_clip[:2]]
    with pytest.raises(Cancelled):
        alongside.results(returned)


# --- Composed pipelines -------------------------------------------------------------------

@pytest.mark.parametrize("num_seg,name", [(8, "uniform8"), (16, "uniform16")])
def test_uniform_pipeline_is_bit_exact_with_paddlevideo(oracle, oracle_clip, num_seg, name):
    expected = oracle[name]
    spec = PreprocessSpec(num_seg=num_seg)
    indices = sample_indices(40, spec)
    assert indices == expected["sampled_frames_0based"]
    out = preprocess_uniform(oracle_clip[indices], spec)
    reference = np.load(PREPROCESS_DIR / expected["file"])
    assert out.shape == tuple(expected["shape"]) and out.dtype == np.float32
    assert np.abs(out - reference).max() == 0
    assert _sha256(out) == expected["sha256_of_float32_bytes"]


def test_dense_pipeline_matches_paddlevideo_statistics(oracle, oracle_clip):
    expected = oracle["dense10x3"]
    spec = PreprocessSpec(num_seg=8, sampling="dense")
    indices = sample_indices(40, spec)
    assert [i + 1 for i in indices] == expected["sampled_file_numbers_1based"]
    out = preprocess(oracle_clip[indices], spec)
    assert out.shape == tuple(expected["shape"]) and out.dtype == np.float32
    assert _sha256(out) == expected["sha256_of_float32_bytes"]
    assert float(out.sum(dtype=np.float64)) == pytest.approx(expected["sum"], rel=1e-9)
    assert float(out.mean(dtype=np.float64)) == pytest.approx(expected["mean"], rel=1e-9)
    np.testing.assert_allclose(out.ravel()[:10], expected["first10"], rtol=0, atol=1e-7)


def test_dense_rows_are_crop_major():
    """Row crop*clips*T + clip*T + t holds frame (clip, t) under crop `crop`."""
    spec = PreprocessSpec(num_seg=2, scale_size=73, crop_size=64, sampling="dense",
                          dense_clips=3, dense_crops=3)
    frames = np.zeros((6, 73, 97, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(6, dtype=np.uint8)[:, None, None] * 10  # red = 10 * frame
    frames[:, :, :, 1] = np.arange(97, dtype=np.uint8)[None, None, :]  # green = column
    out = preprocess_dense(frames, spec)
    assert out.shape == (18, 3, 64, 64)
    red = np.round((out[:, 0, 0, 0] * STD[0] + MEAN[0]) * 255).astype(int)
    first_column = np.round((out[:, 1, 0, 0] * STD[1] + MEAN[1]) * 255).astype(int)
    assert red.tolist() == [10 * frame for frame in range(6)] * 3
    w_step = (97 - 64) // 4
    assert first_column.tolist() == [0] * 6 + [4 * w_step] * 6 + [2 * w_step] * 6


def test_small_spec_single_crop_dense_and_uniform_shapes():
    frames = np.random.RandomState(0).randint(0, 256, (8, 120, 160, 3), dtype=np.uint8)
    spec = PreprocessSpec(num_seg=4, scale_size=73, crop_size=64, sampling="dense",
                          dense_clips=2, dense_crops=1, dense_span=16)
    assert preprocess_dense(frames, spec).shape == (8, 3, 64, 64)
    uniform = preprocess_uniform(frames[:4], spec)
    scaled = resize_frames(frames[:4], (97, 73))
    np.testing.assert_array_equal(uniform, normalize(scaled[:, 4:68, 16:80], MEAN, STD))


def test_pipelines_reject_a_wrong_number_of_frames(oracle_clip):
    with pytest.raises(ValueError, match="needs 8 sampled frames"):
        preprocess_uniform(oracle_clip[:7], PreprocessSpec(num_seg=8))
    with pytest.raises(ValueError, match="needs 80 sampled frames"):
        preprocess_dense(oracle_clip, PreprocessSpec(num_seg=8))
    with pytest.raises(ValueError, match="dense_crops"):
        preprocess_dense(oracle_clip[:4], PreprocessSpec(num_seg=2, dense_clips=2, dense_crops=2))
