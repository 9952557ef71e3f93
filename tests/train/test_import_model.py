"""Importing inference models written by PaddleVideo's exporter (train/import_model.py).

The "PaddleVideo exports" are made here the way PaddleVideo's `tools/export_model.py` makes them:
`paddle.jit.save` of the fused network under its `model_name`, input `data_batch_0`, as a PIR
`.json` (Paddle 3 default) or a legacy `.pdmodel` (`FLAGS_enable_pir_api=0`). After the import the
service's predictor must reproduce the network's own output.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import paddle
import pytest
from paddle.static import InputSpec

from serving.core.metadata import load_meta
from serving.core.predictor import Predictor, PredictorSettings
from train.import_model import main
from train.models import build_model
from train.models.layers import fuse_reparam_

REPO_ROOT = Path(__file__).resolve().parents[2]
MV2_RECIPE = REPO_ROOT / "train" / "configs" / "pptsm" / "pptsm_mv2_k400_videos_uniform.yaml"
TOLERANCE = 1e-4


def paddlevideo_export(model: paddle.nn.Layer, folder: Path, stem: str,
                       sample_shape: tuple[int, ...], legacy: bool) -> Path:
    """`paddle.jit.save` with PaddleVideo's file stem and input name."""
    model.eval()
    fuse_reparam_(model)
    spec = InputSpec([None, *sample_shape], "float32", name="data_batch_0")
    static = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)
    if legacy:
        with paddle.pir_utils.DygraphOldIrGuard():
            paddle.jit.save(static, str(folder / stem))
    else:
        paddle.jit.save(static, str(folder / stem))
    return folder


def calibrated(builder: str, calibrate_bn: Callable, sample_shape: tuple[int, ...],
               **kwargs: object) -> paddle.nn.Layer:
    """A model whose BN statistics keep activations at unit scale (meaningful comparisons)."""
    paddle.seed(0)
    model = build_model(builder, **kwargs)
    clips = np.random.RandomState(1).standard_normal((2, *sample_shape)).astype("float32")
    calibrate_bn(model, paddle.to_tensor(clips))
    model.eval()
    return model


def write_labels(path: Path, count: int) -> Path:
    path.write_text("".join(f"{i} class_{i}\n" for i in range(count)), encoding="utf-8")
    return path


def dygraph_logits(model: paddle.nn.Layer, clips: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(clips)).numpy()


V2_SHAPE = (8, 3, 64, 64)


@pytest.fixture(scope="module")
def v2_export(tmp_path_factory: pytest.TempPathFactory,
              calibrate_bn: Callable) -> tuple[paddle.nn.Layer, Path]:
    """A small PP-TSMv2 (5 classes, 8 x 64 px) and its PIR `.json` export, named as PaddleVideo
    names it."""
    model = calibrated("pptsm_v2_lcnet", calibrate_bn, V2_SHAPE, num_classes=5, num_seg=8,
                       width_mult=0.25)
    folder = tmp_path_factory.mktemp("inference")
    return model, paddlevideo_export(model, folder, "ppTSMv2", V2_SHAPE, legacy=False)


def test_pir_json_pptsmv2_export_imports_with_explicit_preprocessing(
        v2_export: tuple[paddle.nn.Layer, Path], tmp_path: Path) -> None:
    model, src = v2_export
    assert sorted(p.name for p in src.iterdir()) == ["ppTSMv2.json", "ppTSMv2.pdiparams"]
    labels = write_labels(tmp_path / "labels.txt", 5)

    code = main(["--src", str(src), "--name", "imported", "--out", str(tmp_path / "repo"),
                 "--num-seg", "8", "--scale-size", "73", "--crop-size", "64",
                 "--labels", str(labels)])

    assert code == 0
    model_dir = tmp_path / "repo" / "imported"
    meta = load_meta(model_dir)
    assert meta.inference.format == "json"
    assert meta.inference.model_file == "serving_server/ppTSMv2.json"
    assert (meta.preprocess.num_seg, meta.preprocess.scale_size, meta.preprocess.crop_size) == \
        (8, 73, 64)
    assert meta.labels == tuple(f"class_{i}" for i in range(5))
    assert meta.inference.output_name == "fetch_name_0"
    assert set(meta.source["sha256"]) == {"ppTSMv2.json", "ppTSMv2.pdiparams"}
    assert (model_dir / "serving_client" / "serving_client_conf.prototxt").is_file()
    clips = np.random.RandomState(2).standard_normal((3, *V2_SHAPE)).astype("float32")
    got = Predictor.from_model_dir(model_dir, PredictorSettings()).predict(clips)
    assert float(np.abs(got - dygraph_logits(model, clips)).max()) < TOLERANCE


def test_legacy_pdmodel_export_imports_with_its_recipe(tmp_path: Path,
                                                       calibrate_bn: Callable) -> None:
    shape = (8, 3, 224, 224)
    model = calibrated("pptsm_mobilenet_v2", calibrate_bn, shape, num_classes=400, num_seg=8)
    src = paddlevideo_export(model, tmp_path / "inference", "ppTSM", shape, legacy=True)

    code = main(["--src", str(src), "--name", "pptsm_mv2", "--out", str(tmp_path / "repo"),
                 "-c", str(MV2_RECIPE)])

    assert code == 0
    model_dir = tmp_path / "repo" / "pptsm_mv2"
    meta = load_meta(model_dir)
    assert meta.inference.format == "pdmodel" and meta.architecture == "pptsm_mobilenet_v2"
    assert meta.num_classes == 400 and meta.labels[0] == "abseiling"
    assert (model_dir / "serving_server" / "ppTSM.pdiparams.info").is_file()
    clips = np.random.RandomState(3).standard_normal((1, *shape)).astype("float32")
    got = Predictor.from_model_dir(model_dir, PredictorSettings()).predict(clips)
    assert float(np.abs(got - dygraph_logits(model, clips)).max()) < TOLERANCE


@pytest.mark.parametrize("flags,message", [
    (["--num-seg", "16", "--crop-size", "64", "--scale-size", "73"],
     r"declared as \[-1, 8, 3, 64, 64\].*\[N, 16, 3, 64, 64\]"),
    (["--num-seg", "8", "--crop-size", "224"], r"declared as \[-1, 8, 3, 64, 64\]"),
])
def test_preprocessing_that_contradicts_the_program_is_refused(
        v2_export: tuple[paddle.nn.Layer, Path], tmp_path: Path, flags: list[str], message: str,
        capsys: pytest.CaptureFixture) -> None:
    labels = write_labels(tmp_path / "labels.txt", 5)
    code = main(["--src", str(v2_export[1]), "--name", "bad", "--out", str(tmp_path / "repo"),
                 "--labels", str(labels), *flags])
    assert code == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "repo" / "bad").exists()


def test_label_count_that_contradicts_the_output_is_refused(
        v2_export: tuple[paddle.nn.Layer, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    labels = write_labels(tmp_path / "labels.txt", 7)
    code = main(["--src", str(v2_export[1]), "--name", "bad", "--out", str(tmp_path / "repo"),
                 "--num-seg", "8", "--crop-size", "64", "--scale-size", "73",
                 "--labels", str(labels)])
    assert code == 1
    assert "output [2, 5], expected [2, 7] (7 class names)" in capsys.readouterr().err
    assert not (tmp_path / "repo" / "bad").exists()


def test_folder_without_an_export_is_refused(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "ppTSM.pdmodel").write_bytes(b"")  # program without parameters
    labels = write_labels(tmp_path / "labels.txt", 5)
    code = main(["--src", str(tmp_path), "--name", "bad", "--out", str(tmp_path / "repo"),
                 "--num-seg", "8", "--labels", str(labels)])
    assert code == 1
    assert "no PaddleVideo export" in capsys.readouterr().err


class ConvBNLeakyReLU(paddle.nn.Layer):
    """The PP-TSM ResNet op pattern that crashes PIR + oneDNN on Paddle 3.3.1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3, padding=1, bias_attr=False)
        self.bn = paddle.nn.BatchNorm2D(4)
        self.act = paddle.nn.LeakyReLU(0.01)
        self.pool = paddle.nn.AdaptiveAvgPool2D(1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        frames = paddle.reshape(x, [-1, 3, 16, 16])
        pooled = self.pool(self.act(self.bn(self.conv(frames))))
        return paddle.mean(paddle.reshape(pooled, [-1, 8, 4]), axis=1)


def test_pir_json_resnet_export_is_refused_before_it_can_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = paddlevideo_export(ConvBNLeakyReLU(), tmp_path / "inference", "ppTSM", (8, 3, 16, 16),
                             legacy=False)
    labels = write_labels(tmp_path / "labels.txt", 4)
    code = main(["--src", str(src), "--name", "bad", "--out", str(tmp_path / "repo"),
                 "--num-seg", "8", "--crop-size", "16", "--scale-size", "18",
                 "--labels", str(labels)])
    assert code == 1
    assert "FLAGS_enable_pir_api=0" in capsys.readouterr().err
