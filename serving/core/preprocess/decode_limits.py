"""Upper bounds on what one uploaded video may cost to decode, checked before the cost is paid.

A service that decodes untrusted uploads must bound memory and time: the payload size, the
declared pixels per frame (a tiny file can declare 30000x30000 frames: a decompression bomb),
the frame count and the duration. Two more bound what the sampled frames cost, estimated from
the probe before any frame is decoded: the decoded frames one request holds at once
(`max_decoded_bytes`: a one-frame 4K video sampled 30 times must not become 30 full-size
copies) and the decoding work (`max_decode_pixels`: frames decoded from each keyframe x pixels
per frame, which a file of one keyframe and thousands of tiny predicted frames makes huge).
Each violation raises LimitExceededError naming the configuration key, so an operator knows
which setting to raise.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from serving.core.errors import LimitExceededError

# Frames decoded x pixels per frame that one request's sampled frames may cost. The worst normal
# case is a 4K H.264 clip whose 16 sampled frames each sit near the end of a 250-frame GOP, or
# one decoded in order: at most every frame of a 20 s 4K clip at 60 fps (1200 x 8.3 Mpx =
# 1.0e10) or 250 frames from each of 16 keyframes of a 1080p one (4000 x 2.1 Mpx = 8.3e9).
DEFAULT_DECODE_PIXELS = 12_000_000_000


@dataclass(frozen=True)
class DecodeLimits:
    """Defaults admit 20 minutes of 4K (4096x2160) video at 30 fps in a 200 MiB upload, and
    sampling it the way PP-TSM does (see DEFAULT_DECODE_PIXELS for the decoding budget)."""

    max_bytes: int = 200 * 1024 * 1024
    max_pixels_per_frame: int = 4096 * 2160
    max_frames: int = 36_000
    max_duration_s: float = 1200.0
    # RGB bytes of decoded frames one request may hold at once (full-size frames being
    # decoded, plus the resized frames kept for the model).
    max_decoded_bytes: int = 512 * 1024 * 1024
    max_decode_pixels: int = DEFAULT_DECODE_PIXELS
    # Windows one timeline request may classify (each one a network input): 20 minutes at the
    # default 10 s window and 5 s stride is 239.
    max_windows: int = 600

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{item.name}: must be a number > 0, got {value!r}")

    def check_bytes(self, size: int) -> None:
        if size > self.max_bytes:
            raise LimitExceededError(
                f"video: {size} bytes exceeds the limit of {self.max_bytes} (max_bytes)",
                limit_name="max_bytes", limit=self.max_bytes)

    def check_frame_size(self, width: int, height: int) -> None:
        if width * height > self.max_pixels_per_frame:
            raise LimitExceededError(
                f"video: {width}x{height} frames ({width * height} pixels) exceed the limit of "
                f"{self.max_pixels_per_frame} pixels per frame (max_pixels_per_frame)",
                limit_name="max_pixels_per_frame", limit=self.max_pixels_per_frame)

    def check_frames(self, count: int, *, at_least: bool = False) -> None:
        """`at_least` words the message for a count that stopped early at the limit."""
        if count > self.max_frames:
            amount = f"at least {count}" if at_least else str(count)
            raise LimitExceededError(
                f"video: {amount} frames exceeds the limit of {self.max_frames} (max_frames)",
                limit_name="max_frames", limit=self.max_frames)

    def check_duration(self, seconds: float) -> None:
        if seconds > self.max_duration_s:
            raise LimitExceededError(
                f"video: {seconds:.1f} s exceeds the limit of {self.max_duration_s:g} s "
                f"(max_duration_s)", limit_name="max_duration_s", limit=self.max_duration_s)

    def check_held_frames(self, full_size: tuple[int, int], full_count: int,
                          kept_size: tuple[int, int], kept_count: int) -> None:
        """LimitExceededError (max_decoded_bytes) when a read would hold `full_count` RGB frames
        of `full_size` (width, height) and `kept_count` of `kept_size` at once."""
        size = 3 * (full_count * full_size[0] * full_size[1]
                    + kept_count * kept_size[0] * kept_size[1])
        if size > self.max_decoded_bytes:
            held = [f"{count} RGB frames of {width}x{height}" for count, (width, height)
                    in ((full_count, full_size), (kept_count, kept_size)) if count]
            raise LimitExceededError(
                f"video: the sampled frames need {' and '.join(held)} at once ({size} bytes), "
                f"over the limit of {self.max_decoded_bytes} bytes of decoded frames per "
                f"request (max_decoded_bytes)", limit_name="max_decoded_bytes",
                limit=self.max_decoded_bytes)

    def check_windows(self, count: int) -> None:
        """A timeline of `count` windows (window_s and stride_s over the video's length)."""
        if count > self.max_windows:
            raise LimitExceededError(
                f"timeline: {count} windows exceed the limit of {self.max_windows} per request "
                f"(request_limits.max_windows); use a longer stride_s or window_s",
                limit_name="max_windows", limit=self.max_windows)

    def check_decode_pixels(self, frames: int, width: int, height: int) -> None:
        """Decoding `frames` frames of width x height (the cost of the sampled frames)."""
        pixels = frames * width * height
        if pixels > self.max_decode_pixels:
            raise LimitExceededError(
                f"video: the sampled frames need {frames} frames of {width}x{height} decoded "
                f"({pixels} pixels), over the limit of {self.max_decode_pixels} "
                f"(max_decode_pixels); the video has too few keyframes for its length",
                limit_name="max_decode_pixels", limit=self.max_decode_pixels)
