"""The rendering of one clip of the synthetic dataset.

Each clip shows one object whose pose has four degrees of freedom: horizontal position, vertical
position, size and heading. Its class (`synthetic_classes`) drives one or two of them from one end
of a random sweep to the other over the clip (`move_left` drives x downwards, `move_up_right` x
upwards and y downwards, `grow` size upwards, ...). The others are frozen at a uniformly random
point of a sweep drawn from the same distribution. Hence a frame taken at a random time has the
same distribution of position, size, heading and appearance for every class: no single frame
tells the classes apart, only the change between frames does.

(A frame at a *known* time does carry a hint, e.g. `move_left` starts right of its sweep centre;
that cannot be avoided for a motion that must stay inside the frame, and it is still the change
over time that a model has to pick up from the sampled frames.)
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from train.data.synthetic_appearance import (
    RGB,
    add_distractors,
    distinct_colour,
    draw_object,
    make_background,
)
from train.data.synthetic_classes import MotionClass, motion_class
from train.data.synthetic_settings import ClipSettings


# Sensor noise cycles through a few pre-drawn fields: per-pixel Gaussian draws for every frame
# would dominate the rendering time, and a handful of fields already flicker like a real sensor.
_NOISE_FIELDS = 4


@dataclass(frozen=True)
class Pose:
    """Where the object is and how it looks geometrically at one instant (pixels, radians)."""

    x: float
    y: float
    radius: float
    angle: float


@dataclass(frozen=True, eq=False)  # holds an image: identity, not value, comparison
class ClipScene:
    """One clip fully decided: rendering it needs only noise, so the look and the motion can be
    inspected (and tested) before any pixel is drawn."""

    class_name: str
    fps: int
    num_frames: int
    backdrop: np.ndarray  # [H, W, 3] uint8 RGB, the background with its static distractors
    shape: str
    body_colour: RGB
    cap_colour: RGB
    start: Pose
    end: Pose
    noise_sigma: float

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.backdrop.shape[1], self.backdrop.shape[0]

    def pose_at(self, frame_index: int) -> Pose:
        """Linear in time for position and heading, geometric for size, so growing and shrinking
        look equally fast at every moment."""
        progress = frame_index / (self.num_frames - 1)

        def lerp(first: float, last: float) -> float:
            return first + (last - first) * progress

        return Pose(
            x=lerp(self.start.x, self.end.x),
            y=lerp(self.start.y, self.end.y),
            radius=self.start.radius * (self.end.radius / self.start.radius) ** progress,
            angle=lerp(self.start.angle, self.end.angle),
        )


def _sweep(degree: str, motion: MotionClass, extent: float, frozen_point: float) -> tuple[float, float]:
    """Start and end offset of one degree of freedom: a driven one crosses its sweep (centred on
    zero; a class driving two degrees crosses 1/sqrt(2) of each, so that a diagonal move covers
    about the distance of a straight one), any other stays at a random point of the same sweep."""
    direction = motion.direction(degree)
    if direction:
        half = direction * extent / 2 / math.sqrt(len(motion.drives))
        return -half, half
    offset = (frozen_point - 0.5) * extent
    return offset, offset


def sample_scene(class_name: str, settings: ClipSettings, rng: np.random.Generator) -> ClipScene:
    """Draws a clip of `class_name`. The random draws are made in the same order whatever the class,
    so the same generator state gives the same look for every class, and only the motion differs."""
    motion = motion_class(class_name)
    width, height = settings.resolutions[int(rng.integers(len(settings.resolutions)))]
    fps = int(rng.integers(settings.fps_range[0], settings.fps_range[1] + 1))
    num_frames = round(rng.uniform(*settings.duration_range_s) * fps)

    backdrop, backdrop_colours = make_background(str(rng.choice(settings.backgrounds)), width, height, rng)
    fewest, most = settings.distractor_count_range
    add_distractors(backdrop, int(rng.integers(fewest, most + 1)), settings.shapes,
                    settings.distractor_diameter_range, backdrop_colours, rng)
    shape = str(rng.choice(settings.shapes))
    body_colour = distinct_colour(rng, backdrop_colours)
    cap_colour = distinct_colour(rng, [body_colour, *backdrop_colours])

    centre_x = width * (0.5 + rng.uniform(-settings.centre_jitter, settings.centre_jitter))
    centre_y = height * (0.5 + rng.uniform(-settings.centre_jitter, settings.centre_jitter))
    mid_radius = rng.uniform(*settings.object_diameter_range) * min(width, height) / 2
    extents = {
        "x": rng.uniform(*settings.travel_range) * width,
        "y": rng.uniform(*settings.travel_range) * height,
        "size": math.log(rng.uniform(*settings.scale_ratio_range)),
        "angle": math.radians(rng.uniform(*settings.rotation_range_deg)),
    }
    frozen_points = dict(zip(extents, rng.random(len(extents))))
    heading = rng.uniform(0, 2 * math.pi)
    noise_sigma = rng.uniform(*settings.noise_sigma_range)

    x0, x1 = _sweep("x", motion, extents["x"], frozen_points["x"])
    y0, y1 = _sweep("y", motion, extents["y"], frozen_points["y"])
    s0, s1 = _sweep("size", motion, extents["size"], frozen_points["size"])
    a0, a1 = _sweep("angle", motion, extents["angle"], frozen_points["angle"])
    return ClipScene(
        class_name=class_name,
        fps=fps,
        num_frames=num_frames,
        backdrop=backdrop,
        shape=shape,
        body_colour=body_colour,
        cap_colour=cap_colour,
        start=Pose(centre_x + x0, centre_y + y0, mid_radius * math.exp(s0), heading + a0),
        end=Pose(centre_x + x1, centre_y + y1, mid_radius * math.exp(s1), heading + a1),
        noise_sigma=noise_sigma,
    )


def iter_scene_frames(scene: ClipScene, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yields the clip's RGB uint8 frames one by one (a long clip is never held whole)."""
    width, height = scene.size
    noise = (rng.standard_normal((_NOISE_FIELDS, height, width, 3), dtype=np.float32)
             * scene.noise_sigma).round()
    # Signed noise split into its positive and negative parts, so that adding it is two saturating
    # uint8 operations (exactly clip(frame + noise, 0, 255), several times faster).
    brighten = np.clip(noise, 0, 255).astype(np.uint8)
    darken = np.clip(-noise, 0, 255).astype(np.uint8)
    noise_order = rng.integers(_NOISE_FIELDS, size=scene.num_frames)
    for index in range(scene.num_frames):
        frame = scene.backdrop.copy()
        pose = scene.pose_at(index)
        draw_object(frame, scene.shape, (pose.x, pose.y), pose.radius, pose.angle,
                    scene.body_colour, scene.cap_colour)
        field = noise_order[index]
        yield cv2.subtract(cv2.add(frame, brighten[field]), darken[field])


def render_scene(scene: ClipScene, rng: np.random.Generator) -> np.ndarray:
    """The whole clip as one array [T, H, W, 3] uint8 RGB."""
    return np.stack(list(iter_scene_frames(scene, rng)))


def render_clip(class_name: str, params: ClipSettings, rng: np.random.Generator) -> np.ndarray:
    """A fresh random clip of `class_name` drawn from the ranges in `params`, [T, H, W, 3] uint8 RGB:
    for tests and for training code that wants clips in memory rather than files."""
    return render_scene(sample_scene(class_name, params, rng), rng)
