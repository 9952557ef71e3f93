"""Upper bounds on what one uploaded video may cost to decode, checked before the cost is paid.

A service that decodes untrusted uploads must bound memory and time: the payload size, the
declared pixels per frame (a tiny file can declare 30000x30000 frames: a decompression bomb),
the frame count and the duration. Each violation raises LimitExceededError naming the
configuration key, so an operator knows which setting to raise.
"""
from __future__ import annotations

from dataclasses import dataclass

from serving.errors import LimitExceededError


@dataclass(frozen=True)
class DecodeLimits:
    """Defaults admit 20 minutes of 4K (4096x2160) video at 30 fps in a 200 MiB upload."""

    max_bytes: int = 200 * 1024 * 1024
    max_pixels_per_frame: int = 4096 * 2160
    max_frames: int = 36_000
    max_duration_s: float = 1200.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels_per_frame", "max_frames", "max_duration_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DecodeLimits.{name} must be > 0, got {getattr(self, name)}")

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
