"""The catalogue of motion classes the synthetic generator can draw.

A class drives one or two of an object's degrees of freedom (horizontal position `x`, vertical
position `y`, `size`, heading `angle`) from one end of a random sweep to the other over the clip;
every degree it does not drive stays still. A dataset picks its classes from this catalogue by
name (`classes:` in the generator YAML), so the label list is the dataset's, not the code's.

Directions are in image coordinates: x to the right, y downwards, angle clockwise on screen.
Every class has an opposite (its time reversal) in the catalogue, which is what a model that
ignores frame order cannot tell it from.
"""
from __future__ import annotations

from dataclasses import dataclass

DEGREES = ("x", "y", "size", "angle")


@dataclass(frozen=True)
class MotionClass:
    """A class: which degrees of freedom change over the clip, and in which direction."""

    name: str
    drives: tuple[tuple[str, int], ...]  # (degree, +1 or -1) pairs

    def direction(self, degree: str) -> int:
        """+1 or -1 if the class drives `degree`, else 0."""
        return dict(self.drives).get(degree, 0)


MOTION_CLASSES: tuple[MotionClass, ...] = (
    MotionClass("move_left", (("x", -1),)),
    MotionClass("move_right", (("x", +1),)),
    MotionClass("move_up", (("y", -1),)),
    MotionClass("move_down", (("y", +1),)),
    MotionClass("move_up_right", (("x", +1), ("y", -1))),
    MotionClass("move_down_left", (("x", -1), ("y", +1))),
    MotionClass("move_up_left", (("x", -1), ("y", -1))),
    MotionClass("move_down_right", (("x", +1), ("y", +1))),
    MotionClass("rotate_cw", (("angle", +1),)),
    MotionClass("rotate_ccw", (("angle", -1),)),
    MotionClass("grow", (("size", +1),)),
    MotionClass("shrink", (("size", -1),)),
)
KNOWN_CLASS_NAMES: tuple[str, ...] = tuple(motion.name for motion in MOTION_CLASSES)
_BY_NAME = {motion.name: motion for motion in MOTION_CLASSES}


def motion_class(name: str) -> MotionClass:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown class {name!r}; known: {', '.join(KNOWN_CLASS_NAMES)}") from None


def opposite_class(name: str) -> str:
    """The class that shows `name`'s motion played backwards (`move_left` -> `move_right`)."""
    reversed_drives = tuple((degree, -sign) for degree, sign in motion_class(name).drives)
    return next(motion.name for motion in MOTION_CLASSES if motion.drives == reversed_drives)
