"""Batch loaders for the clip datasets.

With `num_workers: 0`, Paddle 3.3.1's DataLoader still fills its queue from a background thread,
and an exception raised there (an unreadable clip, a missing frame folder) is printed but never
reaches the training loop, which then waits forever. Single-process loading therefore batches in
the calling thread here, so errors surface where they happen; with workers, Paddle's DataLoader
(which does re-raise a worker's exception) is used.
"""
from __future__ import annotations

from typing import Iterator, Sequence, Union

import numpy as np
import paddle
from paddle.io import BatchSampler, DataLoader, Dataset


class MainThreadLoader:
    """Iterates (clips, labels) tensor batches of `dataset` in the order of `batch_sampler`."""

    def __init__(self, dataset: Dataset, batch_sampler: Sequence[list[int]]) -> None:
        self.dataset = dataset
        self.batch_sampler = batch_sampler

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple[paddle.Tensor, paddle.Tensor]]:
        for indices in self.batch_sampler:
            clips, labels = zip(*(self.dataset[index] for index in indices))
            yield paddle.to_tensor(np.stack(clips)), paddle.to_tensor(np.stack(labels))


Loader = Union[MainThreadLoader, DataLoader]


def build_loader(dataset: Dataset, workers: int, batch_sampler: Sequence[list[int]] | None = None,
                 batch_size: int = 1) -> Loader:
    """Batches by `batch_sampler`, or in order by `batch_size` (the last batch may be short)."""
    if batch_sampler is None:
        batch_sampler = BatchSampler(dataset, batch_size=batch_size, shuffle=False, drop_last=False)
    if workers == 0:
        return MainThreadLoader(dataset, batch_sampler)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                      use_shared_memory=False)
