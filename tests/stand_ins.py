"""Tiny stand-in networks for tests whose subject is not the network (STYLE.md: timm's tests)."""

import os
import time
from pathlib import Path

import torch
from torch import nn

# the seconds each forward pass of `slow_backbone` waits, read from the environment of the process
# that builds it: tests/cluster_jobs.py sets it on its nodes only, so the same runs (the same run
# hashes) train at full speed in the test process
WAIT = "IKD_TEST_FORWARD_WAIT_S"
# a folder where the runs of one Ray job meet: `slow_backbone`, built in a Ray worker of a
# cluster of 2 nodes or more, waits until a run of the same job has been built on another node
# (at most MEET_S). The cluster jobs' study runs two trials at once, one on each node: without
# it, a trial on a node slow to start its first worker (its working dir unpacked, torch
# imported: seconds on a busy machine) could still be starting when the other's trial ended,
# and Tune (reusing actors) ran it on that one.
MEET = "IKD_TEST_MEET_DIR"
MEET_S = 120.0


def tiny_backbone(batchnorm: bool = True) -> tuple[nn.Module, int]:
    """A student backbone (`ikd.models.students.STUDENTS` builder shape): conv → BatchNorm (so
    FAWA's integer buffers exist; `batchnorm=False`: none, so a sample's features do not depend on
    its batch) → 8 pooled features. ~250 parameters instead of resnet18's 11 M."""
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.BatchNorm2d(8) if batchnorm else nn.Identity(),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return backbone, 8


def _meet(folder: str) -> None:
    import ray

    if not ray.is_initialized() or sum(node["Alive"] for node in ray.nodes()) < 2:
        return
    context = ray.get_runtime_context()
    here, node = Path(folder) / context.get_job_id(), context.get_node_id()
    here.mkdir(parents=True, exist_ok=True)
    (here / node).touch()
    deadline = time.monotonic() + MEET_S
    while time.monotonic() < deadline and all(p.name == node for p in here.iterdir()):
        time.sleep(0.1)


class _Wait(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seconds = float(os.environ.get(WAIT, "0"))
        if os.environ.get(MEET):
            _meet(os.environ[MEET])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


def slow_backbone() -> tuple[nn.Module, int]:
    """`tiny_backbone` whose forward pass also waits `$IKD_TEST_FORWARD_WAIT_S` seconds, as a
    `train.student` (`package.module:function`): runs whose epochs last seconds, so that a node
    can be killed mid-run (tests/cluster_jobs.py), without the CPU a real network burns, and with
    checkpoints of kilobytes (mobilenet's, with Adam's state: 53 MB, written to S3 each epoch).
    With `$IKD_TEST_MEET_DIR`, it is built once a run of its Ray job has been on another node
    (`MEET`). The waits change no number the run computes."""
    backbone, width = tiny_backbone()
    return nn.Sequential(_Wait(), backbone), width
