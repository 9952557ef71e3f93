"""Where a request's preprocessing time goes, step by step (`make bench ARGS="--sections
preprocess"`, or on its own: `python -m bench.preprocess_steps [--quick] [--repeats N]`).

Each step runs alone, in one thread, on what the step before produced, with the service's own
functions: probe, open (PyAV), seek + decode of the sampled frames (one decoder, frames kept
as libav frames), colour conversion to RGB (libswscale, decode_pyav.rgb_pixels), the Scale
resize of each distinct frame, the copy into one row per sampled index (dense sampling repeats
frames), then the crop(s) and normalisation to float32 [rows, 3, S, S], the network's layout.
Below them, the two stages as the service runs them: `sample` (open + decode + convert +
resize, the resize overlapping the decoding on the shared pool, two decoders from 640x360 up;
and again with every resize in the decoder's thread, as before that overlap) and `normalize`.
The stages overlap work that the steps time one after another.

Clips: the benchmark's 10 s MPEG-4 Part 2 clips at 320x240 and 1280x720 (bench/clips.py),
PP-TSMv2 16f's preprocessing (uniform: 16 frames; dense: 10 clips x 16 frames x 3 crops).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from bench.clips import SIZES, bench_clip
from bench.report import Table, plt
from serving.core.metadata import PreprocessSpec
from serving.core.preprocess import transforms
from serving.core.preprocess.decode import DecodeLimits, open_video
from serving.core.preprocess.decode_pyav import SeekingDecoder, rgb_pixels
from serving.core.preprocess.pipeline import SAMPLING_MODES, preprocess, sample_indices
from serving.core.preprocess.video_probe import probe_video
from serving.core.preprocess.video_source import distinct_indices, gather_rows
from serving.core.spread import Spread
from serving.core.stages import model_resize, network_views, sample_frames

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = PreprocessSpec(num_seg=16)  # PP-TSMv2 16f, the served model's preprocessing
STEPS = ("probe", "open", "seek + decode", "colour conversion", "resize",
         "rows per sampled index", "crop + normalise")
STAGES = ("sample stage (as served)", "sample stage, resize in the decoder's thread",
          "normalize stage (as served)")


@dataclass(frozen=True)
class StepTiming:
    clip: str
    mode: str
    step: str
    frames: int  # frames the step handles (distinct decoded frames, or network rows)
    ms: Spread


def _timed(work: Callable[[], object], repeats: int) -> tuple[Spread, object]:
    """Median (min-max) ms of `work` over `repeats` runs after one warm-up; its last result."""
    result = work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - started) * 1000.0)
    return Spread.of(times), result


@contextmanager
def resizes_in_decoder_thread() -> Iterator[None]:
    """The sample stage as it was before resizes overlapped the decoding: the before / after of
    that change in one run."""
    pending = transforms.MAX_PENDING_RESIZES
    transforms.MAX_PENDING_RESIZES = 0
    try:
        yield
    finally:
        transforms.MAX_PENDING_RESIZES = pending


def views_per_frame(mode: str) -> int:
    """Network rows each sampled frame becomes: one centre crop, or the dense crops."""
    return SPEC.dense_crops if mode == "dense" else 1


def step_timings(video: bytes, clip: str, mode: str, repeats: int) -> list[StepTiming]:
    """Every step of STEPS, then both STAGES, for one clip and sampling mode."""
    limits = DecodeLimits()
    rows: list[StepTiming] = []

    def add(step: str, frames: int, work: Callable[[], object]) -> object:
        spread, result = _timed(work, repeats)
        rows.append(StepTiming(clip, mode, step, frames, spread))
        return result

    probe = add("probe", 0, lambda: probe_video(video, limits))
    with open_video(video, limits=limits, backend="pyav") as source:
        indices = sample_indices(source.num_frames, SPEC, mode)
        resize = model_resize(source, SPEC)
    wanted = distinct_indices(indices, probe.num_frames)
    index_of_pts = {stamp: index for index, stamp in enumerate(probe.frame_pts or ())}
    add("open", 0, lambda: open_video(video, limits=limits, backend="pyav").close())

    def decode() -> list[av.VideoFrame]:
        decoder = SeekingDecoder(video, limits, probe, index_of_pts)
        try:
            return decoder.decode(wanted, lambda index, frame: frame)
        finally:
            decoder.close()

    decoded = add("seek + decode", len(wanted), decode)
    rgb = add("colour conversion", len(wanted),
              lambda: [rgb_pixels(frame) for frame in decoded])
    scaled = add("resize", len(wanted), lambda: [resize(frame) for frame in rgb])
    by_index = dict(zip(wanted, scaled, strict=True))
    sampled = add("rows per sampled index", len(indices), lambda: gather_rows(indices, by_index))
    add("crop + normalise", len(indices) * views_per_frame(mode),
        lambda: preprocess(sampled, SPEC, mode))

    def sample_stage() -> np.ndarray:
        with open_video(video, limits=limits) as served:
            return sample_frames(served, SPEC, mode)

    frames = add(STAGES[0], len(wanted), sample_stage)
    with resizes_in_decoder_thread():
        add(STAGES[1], len(wanted), sample_stage)
    add(STAGES[2], len(indices) * views_per_frame(mode),
        lambda: network_views(frames, SPEC, mode))
    return rows


def run(out: Path, seconds: float, repeats: int) -> list[StepTiming]:
    """Both modes on the benchmark's clips of every size in SIZES."""
    timings: list[StepTiming] = []
    for width, height in SIZES:
        clip = bench_clip(out, width, height, seconds)
        for mode in SAMPLING_MODES:
            timings += step_timings(clip.read(), clip.label, mode, repeats)
            print(f"  stepped {clip.label} {mode}", file=sys.stderr, flush=True)
    return timings


NOTE = ("PP-TSMv2 16f preprocessing (uniform: 16 frames; dense: 10 clips x 16 frames x 3 crops); "
        "each step alone in one thread on the previous step's output, then the two stages as "
        "served (which overlap work the steps time one after another), the sample stage also "
        "with every resize in the decoder's thread (before / after the overlap, one run).")


def steps_table(timings: list[StepTiming], note: str = NOTE) -> Table:
    return Table(
        "Preprocessing, step by step (ms, median (min-max))",
        ("clip", "sampling", "step", "frames or rows", "ms"),
        [(t.clip, t.mode, t.step, t.frames or "", t.ms) for t in timings], note)


def plot_steps(timings: list[StepTiming], path: Path) -> None:
    """Horizontal bars: each step's median, one panel per clip and sampling mode."""
    columns = list(dict.fromkeys((t.clip, t.mode) for t in timings))
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 4), squeeze=False)
    for ax, (clip, mode) in zip(axes[0], columns):
        rows = [t for t in timings if (t.clip, t.mode) == (clip, mode)]
        ax.barh([t.step for t in rows], [t.ms.median for t in rows])
        ax.invert_yaxis()
        ax.set_title(f"{clip}, {mode}", fontsize=9)
        ax.set_xlabel("ms")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s clips, 3 repeats")
    parser.add_argument("--repeats", type=int, help="timed runs per step (default 10, quick 3)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "output" / "bench" / "clips",
                        help="where the clips are cached")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 10)
    print(steps_table(run(args.out, 2.0 if args.quick else 10.0, repeats)).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
