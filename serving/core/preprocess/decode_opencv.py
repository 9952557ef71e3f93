"""OpenCV backend, the last resort: grabs frames in order and converts only the wanted ones.

OpenCV cannot seek reliably to a frame, so it decodes every frame up to the last wanted one
(`grab` decodes without the colour conversion, `retrieve` converts). It reads from a
temporary file, as its FFmpeg capture only opens paths. Rotation metadata is ignored, as
decord and PyAV (and so PaddleVideo) ignore it, so all backends return the same pixels.

The file holds bytes the probe accepted, and the capture is opened with the same demuxer
allow-list and with `file` as its only protocol (OpenCV reads OPENCV_FFMPEG_CAPTURE_OPTIONS,
"key;value|key;value", at every open), so it never runs a demuxer the probe did not accept and
never opens another file or URL. Its codec takes no options, so libavcodec's max_pixels
cannot be set, and its `retrieve` scales every frame to the first frame's size: a frame-size
change mid-stream is invisible here. PyAV, first in the `auto` order, refuses such streams
before OpenCV would see them (it hands over only on a library failure).
"""
from __future__ import annotations

import os
import threading

import cv2
import numpy as np

from serving.core.preprocess.temp_video_file import temporary_video_file
from serving.core.preprocess.video_probe import ACCEPTED_FORMATS
from serving.core.preprocess.video_source import (
    BackendCannotOpen,
    Finish,
    OpenRequest,
    StreamEnded,
    VideoSource,
)

CAPTURE_OPTIONS_VARIABLE = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
CAPTURE_OPTIONS = f"format_whitelist;{ACCEPTED_FORMATS}|protocol_whitelist;file"
# The variable is process-wide: set it under a lock for each open, so that nothing else in the
# process can leave another value there for this capture.
_open_lock = threading.Lock()


def open_capture(path: str) -> cv2.VideoCapture:
    """An FFmpeg capture of the file at `path`, limited as the module docstring says."""
    with _open_lock:
        os.environ[CAPTURE_OPTIONS_VARIABLE] = CAPTURE_OPTIONS
        return cv2.VideoCapture(path, cv2.CAP_FFMPEG)


class OpenCVSource(VideoSource):
    BACKEND = "opencv"
    decode_failures = (cv2.error,)

    def __init__(self, request: OpenRequest) -> None:
        super().__init__(request)
        with temporary_video_file(request.data, request.temp_dir) as path:
            self._capture = open_capture(str(path))
        if not self._capture.isOpened():
            raise BackendCannotOpen("opencv: the FFmpeg capture cannot open the video")
        self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        self._position = -1  # index of the last grabbed frame

    def decode_cost(self, indices: list[int]) -> int:
        """Always in order, from the start when it must go back."""
        return indices[-1] + 1 if indices[0] <= self._position else indices[-1] - self._position

    def _decode_sorted(self, indices: list[int], finish: Finish) -> list[np.ndarray]:
        if indices[0] <= self._position:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._position = -1
        out: list[np.ndarray] = []
        for target in indices:
            while self._position < target:
                self.tick()
                if not self._capture.grab():
                    raise StreamEnded(self._position + 1)
                self._position += 1
            converted, bgr = self._capture.retrieve()
            if not converted:
                raise StreamEnded(self._position)
            self.check_decoded_size(bgr.shape[1], bgr.shape[0])
            out.append(finish(target, np.ascontiguousarray(bgr[:, :, ::-1])))
        return out

    def _release(self) -> None:
        self._capture.release()
