"""Contrastive terms over the global batch (DESIGN.md §5): a 2-worker step (gloo, 2 processes)
gives every method the same loss terms and the same gradients as a 1-worker step on the same
global batch — with respect to the embeddings and to every trainable parameter.

Each rank computes its share of the batch (rows in rank order, as `global_batch` concatenates
them) through DDP, as training does (`Method.distribute`); DDP averages parameter gradients over
ranks, so every rank's must equal the 1-worker gradient (the embeddings' gradient, which DDP
does not average, is W times the 1-worker one). The stand-in student has no BatchNorm, whose
per-rank statistics are another matter (README, "Training on several workers").
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_methods import CASES, build, make_batch
from torch.nn.parallel import DistributedDataParallel

WORLD = 2
# MKD's push term is active only for pairs above its cosine margin; the fixed batch's random
# embeddings sit near cos 0, so a negative margin makes every pair count.
OVERRIDES = {"mkd": ("mkd.margin=-0.5",)}


def step(case: str, rank: int, world: int) -> dict[str, object]:
    """One training step's terms and gradients on this rank's share of the fixed batch (through
    DDP when a process group is up)."""
    method = build(case, *OVERRIDES.get(case, ()), seed=0, batchnorm=False).train()
    if dist.is_initialized():
        method.distribute(DistributedDataParallel)
    batch = make_batch()
    share = len(batch["identity"]) // world
    batch = {k: v[rank * share : (rank + 1) * share] for k, v in batch.items()}
    out = method._runner(batch["spectrogram"], batch["teacher_embedding"])  # Method.forward's
    out["student_embedding"].retain_grad()
    terms = method.losses(out, batch)
    terms["loss"].backward()
    return {
        "terms": {k: float(v.detach()) for k, v in terms.items()},
        "embedding_grad": out["student_embedding"].grad.detach().clone(),
        "grads": {n: p.grad.detach().clone() for n, p in method.trainable().named_parameters()},
    }


def _rank(rank: int, world: int, port: int, folder: str) -> None:
    """A spawned worker: one process group, every case's step, results to a file."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = {case: step(case, rank, world) for case in CASES}
    finally:
        dist.destroy_process_group()
    torch.save(results, Path(folder) / f"rank{rank}.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict[str, dict[str, object]]]:
    folder = tmp_path_factory.mktemp("ranks")
    mp.spawn(_rank, args=(WORLD, free_port(), str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("case", list(CASES))
def test_a_two_worker_step_equals_a_one_worker_step_on_the_same_global_batch(case, ranks):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = step(case, rank=0, world=1)
    finally:
        torch.set_num_threads(threads)
    two = [r[case] for r in ranks]
    close = dict(rtol=1e-4, atol=1e-6)  # float32 sums in another order
    for name, value in one["terms"].items():
        mean = sum(r["terms"][name] for r in two) / WORLD
        assert mean == pytest.approx(value, rel=1e-5, abs=1e-7), name
    embedding_grad = torch.cat([r["embedding_grad"] for r in two]) / WORLD
    torch.testing.assert_close(embedding_grad, one["embedding_grad"], **close)
    for name, grad in one["grads"].items():
        for rank in two:  # DDP has averaged them: every rank holds the same
            torch.testing.assert_close(rank["grads"][name], grad, **close, msg=name)


@pytest.mark.parametrize(
    ("case", "term"),
    [("identitykd", "loss/cs"), ("cfkd", "loss/student_teacher"), ("mkd", "loss/margin")],
)
def test_without_the_gather_a_shard_would_see_a_different_contrast(case, term):
    """The test above has teeth: each rank's shard alone gives other contrastive terms."""
    whole = step(case, rank=0, world=1)["terms"]
    shards = [step(case, rank=r, world=WORLD)["terms"] for r in range(WORLD)]  # no group
    alone = sum(s[term] for s in shards) / WORLD
    assert abs(alone - whole[term]) > 1e-4  # float noise: ~1e-7
