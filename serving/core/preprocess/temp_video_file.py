"""A short-lived file holding an uploaded video, for decoders that only read from a path.

decord reads from memory through a callback that segfaults on truncated AVI files (seen with
decord 0.6: 9 of 60 damaged test files crashed the process), and OpenCV's FFmpeg capture only
opens paths. Both keep their file descriptor once open, so the file is deleted as soon as the
decoder has opened it: no upload outlives its request on disk, even if the process dies later.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def temporary_video_file(data: bytes, temp_dir: Path | None) -> Iterator[Path]:
    """Writes `data` to a private file in `temp_dir` (None: system default); always deletes it."""
    descriptor, name = tempfile.mkstemp(prefix="upload-", suffix=".video", dir=temp_dir)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
