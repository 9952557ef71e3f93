"""The one way a model folder comes into being: the exporter, the importer and the int8
quantiser all write through `StagedModelFolder`.

A model folder is what the service, the tools and stock Paddle Serving tools load:

    serving_server/<stem>.pdmodel | .json, <stem>.pdiparams   the inference program
    serving_server/serving_server_conf.prototxt               Paddle Serving's model description
    serving_client/serving_client_conf.prototxt               (the same text, as its converter writes)
    model_meta.json                                           preprocessing, labels, provenance
    openvino/int8.xml, int8.bin                               optional: OpenVINO int8 (NNCF)
    label_list.txt                                            "<index> <name>" per line

Everything is written into a staging folder beside the target first. The writer loads it from
there (a Predictor on the staged files) and checks it, and only then `publish` swaps it in, so a
failed export, import or quantisation never touches the model being served; the staging folder
is left behind for inspection. The swap renames the old folder aside, renames the new one into
place and only then deletes the old one: at no moment is a half-deleted or half-written folder
at the target path.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from serving.core.metadata import ModelMeta
from serving.core.serving_conf import write_serving_confs

SERVER_SUBDIR = "serving_server"  # where the program lives inside the model folder
LABEL_LIST_FILENAME = "label_list.txt"


def label_list_text(labels: tuple[str, ...]) -> str:
    """The label list in PaddleVideo's "<index> <name>" form, one class per line."""
    return "".join(f"{index} {label}\n" for index, label in enumerate(labels))


@dataclass(frozen=True)
class StagedModelFolder:
    """A model folder being written at `path`, to replace `target` once it has been checked."""

    target: Path
    path: Path

    @classmethod
    def begin(cls, target: str | Path, purpose: str) -> "StagedModelFolder":
        """An empty `.<name>.<purpose>-tmp/` (with its `serving_server/`) beside `target`. The
        purpose ("export", "quantize") is in the name so that two writers of the same target
        never share a staging folder; a stale one from a crashed run is cleared first."""
        target = Path(target)
        staging = target.with_name(f".{target.name}.{purpose}-tmp")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / SERVER_SUBDIR).mkdir(parents=True)
        return cls(target, staging)

    @classmethod
    def begin_from(cls, source: str | Path, purpose: str) -> "StagedModelFolder":
        """A staged copy of the existing folder `source`, to replace it once checked: for
        writers that add to a model folder instead of making a new one (the OpenVINO int8
        program of `serving.tools.quantize --engine openvino` goes into the fp32 folder)."""
        staged = cls.begin(source, purpose)
        shutil.copytree(source, staged.path, dirs_exist_ok=True)
        return staged

    @property
    def server_dir(self) -> Path:
        """Where the program files go."""
        return self.path / SERVER_SUBDIR

    def save_meta(self, meta: ModelMeta) -> Path:
        """Writes (or rewrites) the metadata, so the staged program can be loaded and checked
        before `publish`."""
        return meta.save(self.path)

    def publish(self, meta: ModelMeta) -> Path:
        """Writes the final metadata, label list and serving confs, then replaces `target` with
        the staged folder. Returns `target`."""
        self.save_meta(meta)
        (self.path / LABEL_LIST_FILENAME).write_text(label_list_text(meta.labels),
                                                      encoding="utf-8")
        write_serving_confs(self.path, meta)
        _swap_in(self.path, self.target)
        return self.target


def _swap_in(staging: Path, target: Path) -> None:
    """Moves `staging` to `target`, replacing what was there by two renames (the old folder
    goes aside first and is deleted last), and puts the old folder back if the second rename
    fails."""
    previous = target.with_name(f".{target.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    had_previous = target.exists()
    if had_previous:
        target.rename(previous)
    try:
        staging.rename(target)
    except OSError:
        if had_previous:
            previous.rename(target)
        raise
    shutil.rmtree(previous, ignore_errors=True)
