"""Data-parallel training: how samples are split between processes, the single-process path, and
a real 2-process run under `paddle.distributed.launch` on CPU (gloo collectives)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from tests.tiny_recipe import DEMO_RECIPE, REPO_ROOT, as_cli, tiny_overrides
from train import eval as eval_cli
from train.engine.distributed import DistContext, shard_indices


@pytest.mark.parametrize("num_samples,world_size", [(10, 3), (8, 2), (1, 2)])
def test_validation_shards_cover_every_sample_once(num_samples: int, world_size: int) -> None:
    shards = [shard_indices(num_samples, rank, world_size) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(num_samples))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_training_batches_of_two_ranks_are_disjoint_and_follow_the_epoch() -> None:
    dataset = list(range(16))
    samplers = [DistContext(rank, 2).train_sampler(dataset, 4) for rank in range(2)]

    def epoch_batches(epoch: int) -> list[list[list[int]]]:
        for sampler in samplers:
            sampler.set_epoch(epoch)
        return [list(sampler) for sampler in samplers]

    first = epoch_batches(0)
    rank0, rank1 = ([i for batch in batches for i in batch] for batches in first)
    assert len(first[0]) == len(first[1]) == 2 and not set(rank0) & set(rank1)
    assert sorted(rank0 + rank1) == dataset
    assert epoch_batches(0) == first  # a resumed epoch sees the same batches
    assert epoch_batches(1) != first


def test_single_process_context_changes_nothing() -> None:
    ctx = DistContext()
    network = paddle.nn.Linear(2, 2)
    data = list(range(5))
    logits, labels = np.ones((5, 2)), np.arange(5)
    assert ctx.is_main and ctx.wrap(network) is network and ctx.shard(data) is data
    gathered = ctx.gather(logits, labels)
    assert gathered[0] is logits and gathered[1] is labels
    assert len([i for batch in ctx.train_sampler(data, 2) for i in batch]) == 4  # drop_last


def test_two_cpu_processes_train_with_gloo(quick_dataset: Path, tmp_path: Path) -> None:
    """`python -m paddle.distributed.launch --nproc_per_node 2 train/train.py ...`: each process
    takes half of every epoch, validation is sharded and gathered, rank 0 writes the files."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
               "--log_dir", str(tmp_path / "logs"), "train/train.py", "-c", str(DEMO_RECIPE),
               "--no-progress", *as_cli(tiny_overrides(quick_dataset, out, 1))]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=420)
    logs = "".join(p.read_text(errors="replace")[-1500:]
                   for p in sorted((tmp_path / "logs").glob("workerlog.*")))
    assert done.returncode == 0, done.stdout[-1500:] + logs
    worker_logs = [(tmp_path / "logs" / f"workerlog.{rank}").read_text() for rank in (0, 1)]
    assert "done: 1 epochs" in worker_logs[0]  # the summary comes from rank 0 only
    assert "done:" not in worker_logs[1]
    state = json.loads((out / "latest.json").read_text())
    assert state["global_step"] == 16 // (2 * 4)  # 16 clips, 2 processes x batch 4
    assert state["history"][0]["val_clips"] == 8  # both shards of the 8 validation clips

    # The gathered validation top-1 is the whole list's: the saved model scores the same alone.
    report_dir = tmp_path / "eval"
    args = ["-c", str(DEMO_RECIPE), "-k", str(out / "best.pdparams"), "--split", "val",
            "--out", str(report_dir), "--no-progress",
            *as_cli(tiny_overrides(quick_dataset, out, 1))]
    assert eval_cli.main(args) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["num_samples"] == 8
    assert report["top1"] == pytest.approx(state["history"][0]["val_top1"])


def test_nproc_spawns_workers_that_share_the_terminal(quick_dataset: Path, tmp_path: Path) -> None:
    """`python -m train.train ... --nproc 2` spawns the two gloo workers itself: the same sharded
    run as under the launcher, with rank 0's summary on the caller's stdout (once)."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "train.train", "-c", str(DEMO_RECIPE), "--nproc", "2",
               "--no-progress", *as_cli(tiny_overrides(quick_dataset, out, 1))]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    assert "training with 2 data-parallel processes" in done.stdout
    assert done.stdout.count("done: 1 epochs") == 1
    state = json.loads((out / "latest.json").read_text())
    assert state["global_step"] == 16 // (2 * 4)  # 16 clips, 2 processes x batch 4
    assert state["history"][0]["val_clips"] == 8


def test_nproc_must_be_a_positive_integer(quick_dataset: Path, tmp_path: Path, capsys) -> None:
    from train import train as train_cli

    args = ["-c", str(DEMO_RECIPE), *as_cli(tiny_overrides(quick_dataset, tmp_path, 1)),
            "-o", "train.processes=two"]
    assert train_cli.main(args) == 2
    assert "train.processes" in capsys.readouterr().err


def test_killing_the_command_stops_its_spawned_workers(quick_dataset: Path, tmp_path: Path) -> None:
    """SIGKILL of `train.train --nproc 2` (nothing of it can clean up) still ends both workers."""
    import signal
    import time

    command = [sys.executable, "-m", "train.train", "-c", str(DEMO_RECIPE), "--nproc", "2",
               "--no-progress", *as_cli(tiny_overrides(quick_dataset, tmp_path / "run", 50))]
    parent = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert "training with 2 data-parallel processes" in parent.stdout.readline()

    def children() -> list[int]:
        return [pid for pid in _pids() if _stat_fields(pid)[1:2] == [str(parent.pid)]]

    deadline = time.monotonic() + 60
    while len(children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    workers = children()
    assert len(workers) >= 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [pid for pid in alive if _running(pid)]
    assert not alive, f"workers {alive} outlived the killed command"


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]; [] once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except (FileNotFoundError, ProcessLookupError):
        return []


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    return _stat_fields(pid)[:1] not in ([], ["Z"])
