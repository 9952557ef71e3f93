"""The sampled frames of many overlapping windows of one video, in one forward pass: each
distinct frame is decoded once and resized once, and every window that samples it shares it.

Holding every sampled frame of a 20-minute video at once would cost gigabytes, so the pass is
cut into reads: a read decodes the wanted frames of a range of the video (sorted, sparse, with
the source's own seek logic), then the windows that end inside it are handed out and the frames
no later window needs are dropped. A read may only end where the next one costs nothing extra:
where the source's decoding cost of the two reads equals that of one read (a seeking decoder:
the next wanted frame lies past a keyframe; raw frames: anywhere). A decoder that reads in
order from the start has no such place, and its windows come out of a single read.

`plan_reads` decides the reads before any frame is decoded, so the decoding budget
(max_decode_pixels) and the frames held at once (max_decoded_bytes) are checked up front by
`check_reads`.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from serving.core.preprocess.decode_limits import DecodeLimits
from serving.core.preprocess.raw_frames import RawFrames
from serving.core.preprocess.transforms import FrameResize
from serving.core.preprocess.video_source import VideoSource, gather_rows

# Whether one read may end at the first frame and the next begin at the second at no extra cost.
FreeCut = Callable[[int, int], bool]


@dataclass(frozen=True)
class Read:
    """One read of the pass: the distinct ascending `frames` to decode, the windows (positions
    in the plan) complete once they are decoded, and the first frame still needed after them."""

    frames: list[int]
    windows: range
    keep_from: int


def plan_reads(window_indices: Sequence[Sequence[int]], free_cut: FreeCut,
               windows_per_read: int) -> list[Read]:
    """Reads covering every window's frames in ascending order, each decoding at least the
    frames of `windows_per_read` more windows, cut only where `free_cut` allows. The windows
    must come in order of start (their first and last frames never decrease)."""
    if windows_per_read < 1:
        raise ValueError(f"windows_per_read must be >= 1, got {windows_per_read}")
    wanted = sorted({index for indices in window_indices for index in indices})
    firsts = [min(indices) for indices in window_indices]
    lasts = [max(indices) for indices in window_indices]
    reads: list[Read] = []
    done, position = 0, 0
    while done < len(window_indices):
        target = lasts[min(done + windows_per_read, len(lasts)) - 1]
        end = bisect.bisect_right(wanted, target)
        while end < len(wanted) and not free_cut(wanted[end - 1], wanted[end]):
            end += 1
        complete = bisect.bisect_right(lasts, wanted[end - 1])
        keep_from = firsts[complete] if complete < len(firsts) else wanted[-1] + 1
        reads.append(Read(wanted[position:end], range(done, complete), keep_from))
        done, position = complete, end
    return reads


def peak_held_frames(reads: Sequence[Read]) -> int:
    """Resized frames held at once during the pass: those kept from earlier reads, plus a
    read's frames and the rows the source gathers them into."""
    peak, kept = 0, []
    for read in reads:
        peak = max(peak, len(kept) + 2 * len(read.frames))
        kept = [index for index in (*kept, *read.frames) if index >= read.keep_from]
    return peak


def free_cut_of(source: VideoSource | RawFrames) -> FreeCut:
    """The source's own cost model decides where a read may end (see the module docstring)."""
    if isinstance(source, RawFrames):
        return lambda before, after: True
    return lambda before, after: (source.decode_cost([before, after])
                                  == source.decode_cost([before]) + source.decode_cost([after]))


def check_reads(source: VideoSource | RawFrames, reads: Sequence[Read], resize: FrameResize,
                limits: DecodeLimits) -> None:
    """LimitExceededError naming the limit if the whole pass would decode more than
    max_decode_pixels or hold more than max_decoded_bytes of frames at once."""
    wanted = [index for read in reads for index in read.frames]
    full_size = (source.width, source.height)
    in_flight = 0
    if isinstance(source, VideoSource) and wanted:
        source.check_decode_cost(source.decode_cost(wanted))
        in_flight = source.frames_in_flight(max(len(read.frames) for read in reads))
    limits.check_held_frames(full_size, in_flight, resize.size, peak_held_frames(reads))


def window_frames(source: VideoSource | RawFrames, reads: Sequence[Read],
                  window_indices: Sequence[Sequence[int]],
                  resize: FrameResize) -> Iterator[tuple[int, np.ndarray]]:
    """(window position, its resized frames [T, h, w, 3]) for every window, in order, reading
    the video once along `reads`."""
    kept: dict[int, np.ndarray] = {}
    for read in reads:
        if read.frames:
            kept.update(zip(read.frames, source.read(read.frames, resize)))
        for window in read.windows:
            yield window, gather_rows(window_indices[window], kept)
        for index in [index for index in kept if index < read.keep_from]:
            del kept[index]


def distinct_frame_count(reads: Sequence[Read]) -> int:
    """Frames the pass decodes, each once."""
    return sum(len(read.frames) for read in reads)

