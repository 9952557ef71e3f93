"""The benchmark's video clips, written once and cached.

The issue's reference figures were taken on 10 s clips at 25 fps in MPEG-4 Part 2 as OpenCV's
`mp4v` writer produces them (a key frame every 12 frames), at 320x240 and 1280x720. These clips
are made the same way, with the synthetic dataset's own scene renderer (a moving shape on a
grainy background with sensor noise), so decoding works on ordinary P-frames, not on a static
picture that would decode unrealistically fast.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.data.synthetic_motion import iter_scene_frames, sample_scene
from train.data.synthetic_settings import load_generator_config
from train.data.synthetic_video_file import write_video

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR_CONFIG = REPO_ROOT / "train" / "configs" / "data" / "synthetic_default.yaml"
FPS = 25
SIZES = ((320, 240), (1280, 720))


@dataclass(frozen=True)
class BenchClip:
    path: Path
    width: int
    height: int
    seconds: float

    @property
    def frames(self) -> int:
        return round(self.seconds * FPS)

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height} {self.seconds:g} s"

    def read(self) -> bytes:
        return self.path.read_bytes()


def bench_clip(folder: Path, width: int, height: int, seconds: float) -> BenchClip:
    """The clip of that size and length, rendered on first use (a few seconds at 720p)."""
    clip = BenchClip(folder / f"clip_{width}x{height}_{seconds:g}s.mp4", width, height, seconds)
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
    write_video(partial, iter_scene_frames(scene, rng), FPS, "mp4v")
    partial.rename(clip.path)
    return clip
