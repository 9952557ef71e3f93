"""What the synthetic clips look like: shapes, backgrounds, distractors and colours.

Nothing here depends on the action class. Every appearance choice is drawn from the same
distribution for all classes, so appearance can never give the class away; only the motion
(`synthetic_motion`) does. Images are RGB uint8 throughout.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

RGB = tuple[int, int, int]

# Fixed-point precision handed to OpenCV's polygon filler: sub-pixel vertex positions keep slow
# motion smooth instead of jumping a whole pixel at a time.
_SUBPIXEL_BITS = 4
_SUBPIXEL_SCALE = 1 << _SUBPIXEL_BITS

# The object's "cap" is the part beyond this distance from its centre, towards its heading (unit
# radius). It is painted in a second colour so that the heading, and hence rotation, is visible even
# for a circle or a shape with rotational symmetry.
_CAP_START = 0.25


def _regular_polygon(corners: int, start_deg: float = 0.0) -> np.ndarray:
    angles = np.deg2rad(start_deg) + np.arange(corners) * (2 * math.pi / corners)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int, inner_radius: float) -> np.ndarray:
    angles = np.arange(2 * points) * (math.pi / points)
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner_radius)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _plus_sign(arm_half_width: float) -> np.ndarray:
    w = arm_half_width
    quarter = [(1.0, -w), (1.0, w), (w, w)]
    outline = []
    for turn in range(4):
        c, s = math.cos(turn * math.pi / 2), math.sin(turn * math.pi / 2)
        outline.extend((x * c - y * s, x * s + y * c) for x, y in quarter)
    return np.array(outline)


# Unit outlines (circumradius 1) whose heading is +x: a vertex, arm or edge centre lies on the +x
# axis so the cap sits symmetrically on it.
SHAPE_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular_polygon(48),
    "square": _regular_polygon(4, start_deg=45.0),
    "triangle": _regular_polygon(3),
    "pentagon": _regular_polygon(5),
    "star": _star(5, inner_radius=0.5),
    "cross": _plus_sign(arm_half_width=0.32),
}
SHAPE_NAMES: tuple[str, ...] = tuple(SHAPE_OUTLINES)

# The half-plane x > _CAP_START in unit coordinates, as a rectangle larger than any outline.
_CAP_REGION = np.array([(_CAP_START, -1.5), (1.5, -1.5), (1.5, 1.5), (_CAP_START, 1.5)])


def _placed(unit_points: np.ndarray, centre: tuple[float, float], radius: float, angle: float) -> np.ndarray:
    """Unit points rotated by `angle` (radians, clockwise on screen since y points down),
    scaled and moved to `centre`, as OpenCV fixed-point int32 vertices."""
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    points = unit_points @ rotation.T * radius + np.asarray(centre)
    return np.round(points * _SUBPIXEL_SCALE).astype(np.int32)


def _fill(image: np.ndarray, vertices: np.ndarray, colour: RGB | int) -> None:
    cv2.fillPoly(image, [vertices], colour, lineType=cv2.LINE_AA, shift=_SUBPIXEL_BITS)


def draw_object(
    image: np.ndarray,
    shape: str,
    centre: tuple[float, float],
    radius: float,
    angle: float,
    body_colour: RGB,
    cap_colour: RGB,
) -> None:
    """Paints a two-coloured shape onto `image` in place, anti-aliased and at sub-pixel position.

    The shape is rendered into an alpha mask over its bounding box only, then blended, so the
    cost does not grow with the frame size and the cap never spills outside the outline.
    """
    height, width = image.shape[:2]
    margin = radius + 2
    x0, y0 = max(int(centre[0] - margin), 0), max(int(centre[1] - margin), 0)
    x1, y1 = min(int(centre[0] + margin) + 1, width), min(int(centre[1] + margin) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    local_centre = (centre[0] - x0, centre[1] - y0)
    alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
    _fill(alpha, _placed(SHAPE_OUTLINES[shape], local_centre, radius, angle), 255)
    paint = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    paint[:] = body_colour
    _fill(paint, _placed(_CAP_REGION, local_centre, radius, angle), cap_colour)
    weight = alpha.astype(np.float32) * (1.0 / 255.0)
    region = image[y0:y1, x0:x1]
    region[:] = cv2.blendLinear(paint, region, weight, 1.0 - weight)


def random_colour(rng: np.random.Generator) -> RGB:
    r, g, b = rng.integers(0, 256, size=3)
    return int(r), int(g), int(b)


def distinct_colour(rng: np.random.Generator, avoid: list[RGB], candidates: int = 24) -> RGB:
    """The candidate colour farthest (in RGB) from every colour in `avoid`.

    Picking the best of a fixed number of random candidates keeps the object clearly visible on
    any background while colours stay varied and the number of random draws stays fixed, which
    keeps generation deterministic without rejection loops.
    """
    options = rng.integers(0, 256, size=(candidates, 3))
    distances = np.linalg.norm(options[:, None, :] - np.asarray(avoid)[None, :, :], axis=2).min(axis=1)
    r, g, b = options[int(np.argmax(distances))]
    return int(r), int(g), int(b)


def _shifted(colour: RGB, rng: np.random.Generator, low: int, high: int) -> RGB:
    """A colour near `colour`, so textures stay low-contrast next to the object."""
    shift = rng.integers(low, high + 1) * rng.choice([-1, 1])
    r, g, b = np.clip(np.asarray(colour) + shift, 0, 255)
    return int(r), int(g), int(b)


def _blend(first: RGB, second: RGB, weight: np.ndarray) -> np.ndarray:
    """Per-pixel mix of two colours; `weight` in [0, 1] is the share of `second`."""
    w = weight[..., None].astype(np.float32)
    mixed = np.asarray(first, np.float32) * (1.0 - w) + np.asarray(second, np.float32) * w
    return (mixed + 0.5).astype(np.uint8)


def _solid(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, list[RGB]]:
    colour = random_colour(rng)
    return np.full((height, width, 3), colour, np.uint8), [colour]


def _gradient(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, list[RGB]]:
    first, second = random_colour(rng), random_colour(rng)
    direction = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    ramp = xs * math.cos(direction) + ys * math.sin(direction)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    return _blend(first, second, ramp), [first, second]


def _blobs(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, list[RGB]]:
    first = random_colour(rng)
    second = _shifted(first, rng, 40, 90)
    cells = rng.integers(3, 7, size=2)
    coarse = rng.random((int(cells[0]), int(cells[1]))).astype(np.float32)
    field = np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    return _blend(first, second, field), [first, second]


def _grain(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, list[RGB]]:
    base = random_colour(rng)
    sigma = rng.uniform(6.0, 14.0)
    # Softened a little: pixel-sized grain multiplies the size of every (intra-coded) frame.
    grain = cv2.GaussianBlur(rng.standard_normal((height, width, 3), dtype=np.float32), (3, 3), 0.8) * sigma
    return np.clip(np.asarray(base, np.float32) + grain + 0.5, 0, 255).astype(np.uint8), [base]


def _checker(width: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, list[RGB]]:
    first = random_colour(rng)
    second = _shifted(first, rng, 20, 50)
    tile = int(rng.integers(10, 41))
    ys, xs = np.mgrid[0:height, 0:width]
    return _blend(first, second, ((xs // tile + ys // tile) % 2).astype(np.float32)), [first, second]


_BACKGROUND_PAINTERS = {
    "solid": _solid,
    "gradient": _gradient,
    "blobs": _blobs,
    "grain": _grain,
    "checker": _checker,
}
BACKGROUND_KINDS: tuple[str, ...] = tuple(_BACKGROUND_PAINTERS)


def make_background(
    kind: str, width: int, height: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[RGB]]:
    """A static background image and the colours it is made of (for choosing contrasting objects)."""
    try:
        painter = _BACKGROUND_PAINTERS[kind]
    except KeyError:
        raise ValueError(f"unknown background kind {kind!r}; known: {', '.join(BACKGROUND_KINDS)}") from None
    return painter(width, height, rng)


def add_distractors(
    image: np.ndarray,
    count: int,
    shapes: tuple[str, ...],
    diameter_range: tuple[float, float],
    avoid: list[RGB],
    rng: np.random.Generator,
) -> None:
    """Paints `count` static shapes anywhere on `image`: clutter that never moves, so a model has to
    find what changes rather than what is there. `diameter_range` is a fraction of the short side."""
    height, width = image.shape[:2]
    short_side = min(width, height)
    for _ in range(count):
        radius = rng.uniform(*diameter_range) * short_side / 2
        centre = (rng.uniform(0, width), rng.uniform(0, height))
        body = distinct_colour(rng, avoid)
        draw_object(image, str(rng.choice(shapes)), centre, radius, rng.uniform(0, 2 * math.pi),
                    body, distinct_colour(rng, [body]))
