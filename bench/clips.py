"""The benchmark's video clips, written once and cached.

The issue's reference figures were taken on 10 s clips at 25 fps in MPEG-4 Part 2 as OpenCV's
`mp4v` writer produces them (a key frame every 12 frames), at 320x240 and 1280x720. These clips
are made the same way, with the synthetic dataset's own scene renderer (a moving shape on a
grainy background with sensor noise), so decoding works on ordinary P-frames, not on a static
picture that would decode unrealistically fast. The same scenes are also written as H.264
(libx264 through PyAV, a key frame every 12 frames, 2 B-frames), the codec most uploads use:
its B-frames make sparse decoding decode frames that are never shown.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.video_corpus import encode_video
from train.data.synthetic_motion import iter_scene_frames, sample_scene
from train.data.synthetic_settings import load_generator_config
from train.data.synthetic_video_file import write_video

REPO_ROOT = Path(__file__).resolve().parents[1]
GENERATOR_CONFIG = REPO_ROOT / "train" / "configs" / "data" / "synthetic_default.yaml"
FPS = 25
SIZES = ((320, 240), (1280, 720))
CODECS = ("mp4v", "h264")
# A key frame every 12 frames (as the mp4v clips), 2 B-frames, no extra key frames at cuts.
H264_OPTIONS = {"g": "12", "bf": "2", "sc_threshold": "0", "preset": "veryfast"}


@dataclass(frozen=True)
class BenchClip:
    path: Path
    width: int
    height: int
    seconds: float
    codec: str = "mp4v"

    @property
    def frames(self) -> int:
        return round(self.seconds * FPS)

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height} {self.seconds:g} s {self.codec}"

    def read(self) -> bytes:
        return self.path.read_bytes()


def bench_clip(folder: Path, width: int, height: int, seconds: float,
               codec: str = "mp4v") -> BenchClip:
    """The clip of that size, length and codec, rendered on first use (a few seconds at 720p)."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
    suffix = "" if codec == "mp4v" else f"_{codec}"
    clip = BenchClip(folder / f"clip_{width}x{height}_{seconds:g}s{suffix}.mp4", width, height,
                     seconds, codec)
    if clip.path.is_file():
        return clip
    folder.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.replace(
        load_generator_config(GENERATOR_CONFIG).settings.clip, resolutions=((width, height),),
        fps_range=(FPS, FPS), duration_range_s=(seconds, seconds), backgrounds=("grain",),
        noise_sigma_range=(3.0, 3.0))
    rng = np.random.default_rng(width * height)
    scene = sample_scene("move_right", settings, rng)
    partial = clip.path.with_name(".partial-" + clip.path.name)
    frames = iter_scene_frames(scene, rng)
    if codec == "h264":
        encode_video(partial, codec="libx264", container="mp4", width=width, height=height,
                     fps=FPS, options=H264_OPTIONS, frames=frames)
    else:
        write_video(partial, frames, FPS, "mp4v")
    partial.rename(clip.path)
    return clip
