"""The error classes under one base (serving.core.errors.PPTSMError), with their codes kept.

Raised by the real components: a non-video through the core's decoder, a bad metadata file, a
bad list file, a bad service config; each must be a PPTSMError whose message is meant for a
person, and the client-facing ones keep err_no 51-55."""
from __future__ import annotations

from pathlib import Path

import pytest

from serving.core import errors
from serving.core.errors import (
    CodedError,
    DecodeError,
    PPTSMError,
    VideoInputError,
    outcome_of,
)
from serving.core.list_file import ListFileError, read_list_file
from serving.core.metadata import MetadataError, load_meta
from serving.core.predictor import PredictorError, PredictorSettings
from serving.core.preprocess.decode import open_video


def test_codes_and_outcomes_are_unchanged() -> None:
    codes = {cls.__name__: (cls.CODE, cls.OUTCOME) for cls in (
        errors.InvalidInputError, errors.DecodeError, errors.LimitExceededError,
        errors.InternalError, errors.DeadlineExceededError)}
    assert codes == {"InvalidInputError": (51, "invalid_input"),
                     "DecodeError": (52, "decode_error"),
                     "LimitExceededError": (53, "limit_exceeded"),
                     "InternalError": (54, "internal_error"),
                     "DeadlineExceededError": (55, "timeout")}
    assert [outcome_of(n) for n in (0, 51, 53, 503, 3001)] == [
        "ok", "invalid_input", "limit_exceeded", "unavailable", "framework_error"]


def test_a_non_video_is_a_video_input_error_with_its_code() -> None:
    with pytest.raises(VideoInputError) as caught:
        open_video(b"this is not a video container" * 100)
    error = caught.value
    assert isinstance(error, DecodeError) and isinstance(error, CodedError)
    assert isinstance(error, PPTSMError)
    assert error.code == 52 and error.message.startswith("video")


def test_core_errors_share_the_base(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as meta_error:
        load_meta(tmp_path)
    bad_list = tmp_path / "bad.list"
    bad_list.write_text("clip.mp4 not-a-number\n")
    with pytest.raises(ListFileError) as list_error:
        read_list_file(bad_list)
    with pytest.raises(PredictorError) as predictor_error:
        PredictorSettings(device="tpu").validate()
    for caught in (meta_error, list_error, predictor_error):
        assert isinstance(caught.value, PPTSMError)
    # still the built-in kinds that existing handlers catch
    assert isinstance(meta_error.value, ValueError) and isinstance(list_error.value, ValueError)
    assert isinstance(predictor_error.value, RuntimeError)


def test_tool_and_service_errors_share_the_base(tmp_path: Path) -> None:
    from serving.pipeline.env_overrides import EnvOverrideError
    from serving.pipeline.service import ConfigError
    from serving.tools.launcher import LaunchError
    from serving.tools.quantize import QuantizeError
    from train.export import ExportError
    from train.import_model import ModelImportError

    for cls in (ConfigError, EnvOverrideError, LaunchError, QuantizeError, ExportError,
                ModelImportError):
        assert issubclass(cls, PPTSMError), cls
