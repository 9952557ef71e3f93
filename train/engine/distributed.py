"""Data-parallel training across processes started by `python -m paddle.distributed.launch`.

The launcher sets PADDLE_TRAINERS_NUM / PADDLE_TRAINER_ID for every process; with more than one,
`setup_distributed` joins the collective group (NCCL on GPUs, gloo on CPUs). Each process then
trains on its shard of every epoch (`DistributedBatchSampler`), gradients are averaged by
`paddle.DataParallel`, and validation is sharded too: each process scores its share of the clips
and the logits are gathered, so every process sees the same top-1. Only rank 0 writes files.
A single process (world size 1) takes the same code path with no communication.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn as nn
from paddle.io import Dataset, DistributedBatchSampler, Subset

from train.engine.layer_modes import batch_norms


def shard_indices(num_samples: int, rank: int, world_size: int) -> list[int]:
    """The samples rank `rank` evaluates: every world_size-th, so shards differ by at most one
    sample and together cover every sample exactly once."""
    return list(range(rank, num_samples, world_size))


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, network: nn.Layer, find_unused_parameters: bool = False) -> nn.Layer:
        """The network to call in training steps (gradient averaging when distributed);
        `find_unused_parameters` when some parameters get no gradient in some steps (a frozen
        backbone), which the gradient averaging must then not wait for."""
        if self.world_size == 1:
            return network
        return paddle.DataParallel(network, find_unused_parameters=find_unused_parameters)

    def train_sampler(self, dataset: Dataset, batch_size: int) -> DistributedBatchSampler:
        """Shuffled batches of this rank's share; `set_epoch(e)` makes the order a function of
        the epoch (the same on every rank, and again after a resume)."""
        return DistributedBatchSampler(dataset, batch_size, num_replicas=self.world_size,
                                       rank=self.rank, shuffle=True, drop_last=True)

    def shard(self, dataset: Dataset) -> Dataset:
        if self.world_size == 1:
            return dataset
        return Subset(dataset, shard_indices(len(dataset), self.rank, self.world_size))

    def gather(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Concatenates each array over all ranks (rank order)."""
        if self.world_size == 1:
            return arrays
        gathered: list[tuple[np.ndarray, ...]] = []
        dist.all_gather_object(gathered, arrays)
        return tuple(np.concatenate(parts) for parts in zip(*gathered))

    def average_bn_statistics(self, model: nn.Layer) -> None:
        """Averages BN running statistics over ranks: each rank's come from its own shard, and
        DataParallel synchronises gradients only, not buffers."""
        if self.world_size == 1:
            return
        for norm in batch_norms(model):
            for buffer in (norm._mean, norm._variance):
                dist.all_reduce(buffer)
                buffer.set_value(buffer / self.world_size)


def setup_distributed() -> DistContext:
    """Joins the launcher's process group when there is one; a plain run is rank 0 of 1."""
    world_size = dist.get_world_size()
    if world_size > 1:
        dist.init_parallel_env()
    return DistContext(dist.get_rank(), world_size)
