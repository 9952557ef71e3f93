"""OpenCV backend, the last resort: grabs frames in order and converts only the wanted ones.

OpenCV cannot seek reliably to a frame, so it decodes every frame up to the last wanted one
(`grab` decodes without the colour conversion, `retrieve` converts). It reads from a
temporary file, as its FFmpeg capture only opens paths. Rotation metadata is ignored, as
decord and PyAV (and so PaddleVideo) ignore it, so all backends return the same pixels.
"""
from __future__ import annotations

import cv2
import numpy as np

from serving.preprocess.temp_video_file import temporary_video_file
from serving.preprocess.video_source import (
    BackendCannotOpen,
    OpenRequest,
    StreamEnded,
    VideoSource,
)


class OpenCVSource(VideoSource):
    BACKEND = "opencv"
    decode_failures = (cv2.error,)

    def __init__(self, request: OpenRequest) -> None:
        super().__init__(request.probe)
        with temporary_video_file(request.data, request.temp_dir) as path:
            self._capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise BackendCannotOpen("opencv: the FFmpeg capture cannot open the video")
        self._capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        self._position = -1  # index of the last grabbed frame

    def _decode_sorted(self, indices: list[int]) -> list[np.ndarray]:
        if indices[0] <= self._position:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._position = -1
        out: list[np.ndarray] = []
        for target in indices:
            while self._position < target:
                if not self._capture.grab():
                    raise StreamEnded(self._position + 1)
                self._position += 1
            converted, bgr = self._capture.retrieve()
            if not converted:
                raise StreamEnded(self._position)
            out.append(np.ascontiguousarray(bgr[:, :, ::-1]))
        return out

    def _release(self) -> None:
        self._capture.release()
