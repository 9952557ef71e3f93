"""serving.core.model_folder: the one writer of model folders (export, import, quantize).

Real files on disk: the folder a publish leaves behind, what it replaces and what a writer that
fails before publishing leaves untouched. The whole export / import / quantize paths are
covered by tests/train/test_import_model.py, tests/train/test_training.py and
tests/core/test_precision.py, which now write through this module."""
from __future__ import annotations

from pathlib import Path

import pytest

from serving.core.metadata import InferenceSpec, ModelMeta, load_meta
from serving.core.model_folder import (
    LABEL_LIST_FILENAME,
    SERVER_SUBDIR,
    StagedModelFolder,
    label_list_text,
)
from serving.core.serving_conf import CLIENT_CONF, SERVER_CONF
from tests.serving_helpers import TINY_LABELS, TINY_PREPROCESS


def _meta(name: str) -> ModelMeta:
    spec = TINY_PREPROCESS
    return ModelMeta(
        name=name, version="1", architecture="pptsm_v2_lcnet", labels=TINY_LABELS,
        preprocess=spec,
        inference=InferenceSpec(
            format="pdmodel", model_file=f"{SERVER_SUBDIR}/ppTSMv2.pdmodel",
            params_file=f"{SERVER_SUBDIR}/ppTSMv2.pdiparams", input_name="data_batch_0",
            input_shape=(-1, spec.num_seg, 3, spec.crop_size, spec.crop_size),
            output_name="linear_1.tmp_1", output_shape=(-1, len(TINY_LABELS))))


def _stage(target: Path, name: str, purpose: str = "export") -> StagedModelFolder:
    staged = StagedModelFolder.begin(target, purpose)
    (staged.server_dir / "ppTSMv2.pdmodel").write_bytes(name.encode())
    return staged


def test_publish_writes_a_complete_folder_and_clears_the_staging(tmp_path: Path) -> None:
    target = tmp_path / "model"
    staged = _stage(target, "first")
    assert staged.path == tmp_path / ".model.export-tmp" and staged.server_dir.is_dir()
    assert staged.publish(_meta("first")) == target
    assert load_meta(target).name == "first"
    assert (target / LABEL_LIST_FILENAME).read_text() == "0 waving\n1 clapping\n2 jumping\n"
    server_text = (target / SERVER_CONF).read_text()
    assert server_text == (target / CLIENT_CONF).read_text()
    assert 'alias_name: "data_batch_0"' in server_text and "shape: 3" in server_text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging, no .previous


def test_publish_replaces_the_previous_folder_whole(tmp_path: Path) -> None:
    target = tmp_path / "model"
    _stage(target, "first").publish(_meta("first"))
    (target / "stale.txt").write_text("from the first model")
    _stage(target, "second", purpose="quantize").publish(_meta("second"))
    assert load_meta(target).name == "second"
    assert (target / SERVER_SUBDIR / "ppTSMv2.pdmodel").read_bytes() == b"second"
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_writer_that_fails_before_publishing_leaves_the_model_in_place(tmp_path: Path) -> None:
    target = tmp_path / "model"
    _stage(target, "served").publish(_meta("served"))
    staged = _stage(target, "broken")
    with pytest.raises(ValueError, match="labels"):
        staged.publish(ModelMeta(**{**_meta("broken").__dict__, "labels": ("only one",)}))
    assert load_meta(target).name == "served"
    assert (target / SERVER_SUBDIR / "ppTSMv2.pdmodel").read_bytes() == b"served"
    assert staged.path.is_dir()  # kept for inspection
    # the next writer starts from an empty staging folder
    again = StagedModelFolder.begin(target, "export")
    assert list(again.path.rglob("*")) == [again.server_dir]


def test_label_list_is_paddlevideos_format() -> None:
    assert label_list_text(("a b", "c")) == "0 a b\n1 c\n"
