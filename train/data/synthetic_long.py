"""Long synthetic videos: a sequence of the dataset's motions with known boundaries.

A long video is cut like an edited film: M segments (shots), each showing one class for a random
length, consecutive segments of different classes. A segment is an ordinary clip of its class drawn
by `sample_scene` (same looks, same sweep of the motion) lasting the whole segment. Resolution and
frame rate are fixed per video. The ground truth is the list of segments with their exact frame
ranges, written beside the video as `<name>.timeline.json`.

What a timeline window sees, and so what a model must have learnt to read it (nothing here is
tuned to a model's answers):
- The sweep takes the segment's length, so a window of W s inside a segment of L s sees W / L of
  one sweep, slower than every training clip (clip.duration_range_s) once L exceeds the longest of
  them. The default segments (10-30 s, `synthetic.DEFAULT_SEGMENT_SECONDS`) show a 10 s window a
  third to all of a sweep; a recipe's `augment.temporal_crop` trains on such parts of the clips.
  Longer segments need a lower crop bound, or a model that reads slower motion.
- A window across a boundary sees the end of one scene, cut to the start of another: with 10 s
  windows every 5 s, two windows per boundary, about a third of all windows at the default
  lengths. The clip dataset has no cuts; a recipe's `augment.cut` trains on them.
- Cutting a segment into several sweeps (to keep the training clips' speed) was tried and
  rejected: it adds a cut inside the segment at each sweep's restart, and the demo model misread
  many of the windows that spanned one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from train.data.synthetic_motion import ClipScene, iter_scene_frames, sample_scene
from train.data.synthetic_settings import MIN_FRAMES_PER_CLIP, ClipSettings, SettingsError
from train.data.synthetic_video_file import CODECS

TIMELINE_SUFFIX = ".timeline.json"


@dataclass(frozen=True)
class LongVideoSettings:
    """How many long videos, of how many segments, of which lengths; resolution and frame rate
    are drawn per video from the clip settings unless fixed here."""

    count: int
    segments: int
    segment_range_s: tuple[float, float]
    resolution: tuple[int, int] | None = None  # (width, height)
    fps: int | None = None
    codec: str = "mp4v"

    def __post_init__(self) -> None:
        if self.count < 1 or self.segments < 1:
            raise SettingsError(f"long videos: count and segments must be >= 1, got "
                                f"{self.count} and {self.segments}")
        low, high = self.segment_range_s
        if not 0 < low <= high:
            raise SettingsError(f"long videos: segment lengths need 0 < low <= high, got [{low}, {high}]")
        if self.fps is not None and self.fps < 1:
            raise SettingsError(f"long videos: fps must be >= 1, got {self.fps}")
        if self.codec not in CODECS:
            raise SettingsError(f"long videos: unknown codec {self.codec!r}; known: {', '.join(CODECS)}")

    def check_against(self, clip: ClipSettings) -> None:
        """Raises SettingsError, before any video is drawn, for a fixed resolution or frame rate
        that the clip settings' own checks refuse (odd sizes, widths decord cannot decode, too
        few frames)."""
        try:
            dataclasses.replace(clip, resolutions=(self.resolution,) if self.resolution else clip.resolutions,
                                fps_range=(self.fps, self.fps) if self.fps else clip.fps_range)
        except SettingsError as error:
            raise SettingsError(f"long videos (resolution {self.resolution}, fps {self.fps}): "
                                f"{error}") from None


@dataclass(frozen=True)
class TimelineSegment:
    """One segment of the ground truth: frames [start_frame, end_frame) show `label`."""

    start_frame: int
    end_frame: int
    class_id: int
    label: str

    def to_dict(self, fps: int) -> dict[str, Any]:
        """The timeline file's entry: seconds as the service's timeline answers them, plus the
        exact frame range they come from."""
        return {"start_s": round(self.start_frame / fps, 6), "end_s": round(self.end_frame / fps, 6),
                "start_frame": self.start_frame, "end_frame": self.end_frame,
                "class_id": self.class_id, "label": self.label}


@dataclass(frozen=True, eq=False)  # holds scenes (images): identity, not value, comparison
class LongVideoPlan:
    """A long video fully decided before any pixel is drawn: its segments and the scene of each."""

    fps: int
    size: tuple[int, int]  # (width, height)
    segments: tuple[TimelineSegment, ...]
    scenes: tuple[ClipScene, ...]  # one per segment

    @property
    def num_frames(self) -> int:
        return self.segments[-1].end_frame

    def timeline(self) -> list[dict[str, Any]]:
        return [segment.to_dict(self.fps) for segment in self.segments]


def _class_sequence(count: int, num_classes: int, rng: np.random.Generator) -> list[int]:
    """Random class ids, each different from the one before, so every boundary is a change."""
    ids = [int(rng.integers(num_classes))]
    while len(ids) < count:
        other = int(rng.integers(num_classes - 1))
        ids.append(other + (other >= ids[-1]))
    return ids


def plan_long_video(classes: Sequence[str], clip: ClipSettings, settings: LongVideoSettings,
                    rng: np.random.Generator) -> LongVideoPlan:
    """Draws one long video: resolution, frame rate, and the class, length (at least
    MIN_FRAMES_PER_CLIP frames) and scene of each segment (`sample_scene` of its class at the
    video's size and frame rate, lasting the segment)."""
    size = settings.resolution or clip.resolutions[int(rng.integers(len(clip.resolutions)))]
    fps = settings.fps or int(rng.integers(clip.fps_range[0], clip.fps_range[1] + 1))
    video_clip = dataclasses.replace(clip, resolutions=(size,), fps_range=(fps, fps))
    segments, scenes = [], []
    start = 0
    for class_id in _class_sequence(settings.segments, len(classes), rng):
        length = max(MIN_FRAMES_PER_CLIP, round(rng.uniform(*settings.segment_range_s) * fps))
        scene = sample_scene(classes[class_id], video_clip, rng)
        scenes.append(dataclasses.replace(scene, num_frames=length))
        segments.append(TimelineSegment(start, start + length, class_id, classes[class_id]))
        start += length
    return LongVideoPlan(fps, size, tuple(segments), tuple(scenes))


def iter_long_video_frames(plan: LongVideoPlan, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The video's RGB uint8 frames, segment after segment (never held whole)."""
    for scene in plan.scenes:
        yield from iter_scene_frames(scene, rng)
