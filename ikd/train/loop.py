"""The training loop: plain PyTorch (Adam, MultiStepLR), the same in one process and in Ray Train.

`train_loop` is what a Ray Train worker runs and what the run driver (driver.py) runs in-process;
this module holds the per-worker loop and evaluation only. The differences are
passed in: the rank and world size (`Context`), how the trainable module is wrapped (DDP via
`prepare_model`, or nothing) and where epochs are reported (`Reporter`: local checkpoint folders
here, `ray.train.report` in ray_train.py, which Tune will receive as well). Every epoch: train,
per-identity accuracies summed over ranks → `method.end_epoch`, full-val metrics (the confusion
matrix summed over ranks, so rank 0 holds the whole split's values), one line of
`metrics.jsonl`, and a checkpoint (method + optimizer + scheduler state; the RNG streams are
re-derived from (seed, epoch, rank), see data.py) once `train.checkpoint_every_s` has passed
since the last (0: every epoch), so a resumed run trains the same epochs again to the same bits.

Run folders and checkpoints live in runs.py, the run-level driver in driver.py. A non-finite loss stops the run itself (`status:
diverged`, the last good checkpoint kept): it is not an exception, which Ray Train would retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn
from tqdm import tqdm

from ikd.config import Config
from ikd.errors import raise_if_stopped, stop_shared
from ikd.methods import build_method
from ikd.storage import Location
from ikd.train.data import Samples, reseed
from ikd.train.metrics import (
    all_reduce_sum,
    broadcast_buffers,
    confusion,
    per_identity_accuracy,
    summarize,
)
from ikd.train.runs import METRICS, Reporter, read_metrics, set_status, write_metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

FAULT_MARKER = ".fault-injected-epoch-{epoch}"  # a fault test's worker died after this epoch

CPU = torch.device("cpu")


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process sits in a run."""

    rank: int = 0
    world: int = 1
    device: torch.device = CPU
    progress: bool = True
    bar: Callable[..., Any] = tqdm  # progress bar class (Ray workers: ray.experimental.tqdm_ray)


def _accumulate(sums: dict[str, torch.Tensor], out: dict[str, torch.Tensor], size: int) -> None:
    """Sum each batch mean the method returns (loss terms and statistics such as `fused_acc`)
    times the batch size, so the epoch's `train/<name>` is the mean over its samples. The sums
    stay on the method's device (no host sync per step)."""
    for name, value in out.items():
        if name != "logits":
            term = value.detach().double() * size
            sums[name] = sums[name] + term if name in sums else term


def autocast(device: torch.device) -> torch.autocast:
    """bf16 mixed precision on a GPU that has it (2026-11-26, H200: resnet18's step at 256²
    1.31×, vgg16's 1.92× faster than fp32; benchmarks/paper_cost.py); off on the CPU."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


def _all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every rank (all ranks must stop together, or DDP hangs)."""
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0])
    return bool(all_reduce_sum(bad).item() == 0)


@torch.no_grad()
def evaluate(
    predict: Callable[[torch.Tensor], torch.Tensor],
    samples: Samples,
    num_identities: int,
    batch_size: int,
    context: Context,
) -> torch.Tensor:
    """The confusion matrix (N, N) of `predict` on the whole split, summed over ranks."""
    matrix = torch.zeros(num_identities, num_identities, dtype=torch.long)
    for batch in samples.batches(
        batch_size,
        seed=0,
        epoch=0,
        train=False,
        rank=context.rank,
        world=context.world,
        device=context.device,
    ):
        raise_if_stopped()
        with autocast(context.device):
            logits = predict(batch["spectrogram"])
        matrix += confusion(logits.argmax(dim=1).cpu(), batch["identity"].cpu(), num_identities)
    return all_reduce_sum(matrix)


@contextlib.contextmanager
def subnormals_flushed() -> Iterator[None]:
    """float32 values under its normal range (~1e-38, subnormals) read and computed as 0 while
    a student trains. A CPU computes subnormals in microcode, many times slower: a vgg16 whose
    weights weight decay had shrunk (~1e-7) took 330 s an epoch instead of 50, its gradients
    subnormal (benchmarks/README.md, "Subnormal floats"). A healthy run's metrics are the same
    bits (benchmarks/smoke_runs.py, every method).

    Set per thread, and torch's pool threads (OpenMP's, one pool per thread that starts parallel
    work) keep what their starting thread had when they started: entered before the thread's
    first parallel op, as a Tune trial's thread and a Ray Train worker's do, it holds in the
    pool too; `run_flushed` sees to it in a driver's main thread. Turned off on exit in this
    thread."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def run_flushed(train: Callable[[], T]) -> T:
    """`train()` with subnormals flushed (`subnormals_flushed`) in its thread and its pool's.

    In a process's main thread it runs in a thread of its own, whose pool starts flushed: the
    main thread's pool may have started unflushed (`ikd run`'s estimate, a teacher trained in a
    build), and then only the main thread would flush — a driver's re-evaluations and final runs
    computing subnormals in the other thread. The main thread keeps its setting, so a teacher it
    trains later (a second population's build) trains as a fresh build does, its bits naming the
    dataset's teacher. A stop (Ctrl+C, SIGTERM) that reaches the main thread stops the training
    at its next step (`raise_if_stopped`) and is raised once it has."""
    if threading.current_thread() is not threading.main_thread():
        with subnormals_flushed():
            return train()
    outcome: dict[str, Any] = {}
    ended = threading.Event()  # waited on, not `Thread.join`: a join a signal interrupted
    # marks the thread ended while it runs (CPython's bpo-45274 fix), and a second returns at once

    def target() -> None:
        try:
            with subnormals_flushed():
                outcome["value"] = train()
        except BaseException as error:  # raised in the caller's thread below
            outcome["error"] = error
        finally:
            ended.set()

    threading.Thread(target=target, name="ikd-train", daemon=True).start()
    try:
        ended.wait()
    except BaseException as interrupt:  # Ctrl+C, SIGTERM (ikd's Terminated, Ray's SystemExit)
        with stop_shared(interrupt):
            while not ended.is_set():  # the run stops at its next step, however often asked
                with contextlib.suppress(KeyboardInterrupt):
                    ended.wait()
        error = outcome.get("error")
        if error is not None and not isinstance(error, KeyboardInterrupt):
            log.warning("the run ended on %s: %s as it stopped", type(error).__name__, error)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def adam(parameters, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """The paper's optimizer, Adam, as torch's fused kernel: one pass over every parameter per
    step instead of torch's CPU default, a Python loop of small ops per tensor (resnet18's laptop
    step 0.89-0.92x, its Adam step alone 31 against 64 CPU ms: benchmarks/README.md, "The
    optimizer"). The same algorithm and defaults; the last bits of a run may differ.
    `weight_decay`: Adam's L2 term (the paper's runs: none)."""
    return torch.optim.Adam(parameters, lr=lr, fused=True, weight_decay=weight_decay)


def train_loop(
    config: Config,
    run_dir: Location,
    train: Samples,
    val: Samples,
    num_identities: int,
    *,
    context: Context,
    reporter: Reporter,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    fail_at_epochs: tuple[int, ...] = (),
    keep_last: bool = True,
) -> str:
    """Train `config.train.method` to `config.train.epochs`, resuming from the reporter's latest
    checkpoint. Returns the run's status: "complete" or "diverged".

    Args:
        wrap: wraps `method.trainable()` for distributed training (Ray Train's `prepare_model`).
        keep_last: checkpoint the last epoch (False for a run whose checkpoints go when it ends,
            a tuning trial or a re-evaluation: nothing would restore it). The other epochs are
            checkpointed once `train.checkpoint_every_s` has passed since the last one (0: each).
        fail_at_epochs: test hook — the last rank dies once after reporting each of these epochs
            (a marker file in the run folder says it did, so the restarted run goes on).
    """
    t = config.train
    if context.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels once
    reseed(t.seed, -1, 0)  # the initial weights: the same on every rank and in every run
    method = build_method(config, num_identities).to(context.device)
    state = reporter.latest()
    if state is not None:
        method.load_state_dict(state["method"])
    if wrap is not None:
        method.distribute(wrap)
    optimizer = adam(method.trainable().parameters(), t.lr, t.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(t.lr_milestones), gamma=t.lr_decay
    )
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["epoch"] + 1
        log.info("resuming %s at epoch %d", run_dir.name, start + 1)
    main = context.rank == 0
    # the epochs before `start` (those a resumed run does not train again); the file is written
    # whole every epoch (object stores have no append)
    lines = [m for m in read_metrics(run_dir / METRICS) if m["epoch"] < start] if main else []
    per_rank_batch = t.batch_size // context.world  # the config checks it divides
    saved = time.monotonic()  # the last checkpoint's time (or the start's)
    eval_batch = max(per_rank_batch, 256)
    for epoch in range(start, t.epochs):
        began = time.perf_counter()
        reseed(t.seed, epoch, context.rank)
        method.train()
        sums: dict[str, torch.Tensor] = {}
        seen = 0
        # (correct, total) per identity, counted on the method's device
        correct = torch.zeros(2, num_identities, dtype=torch.long, device=context.device)
        batches = train.batches(
            per_rank_batch,
            seed=t.seed,
            epoch=epoch,
            train=True,
            rank=context.rank,
            world=context.world,
            device=context.device,
        )
        steps = len(train) // context.world // per_rank_batch
        title = f"epoch {epoch + 1}/{t.epochs}"
        drawn = context.progress and main  # a bar made and not used would still be drawn
        bar = context.bar(batches, total=steps, desc=title, unit="step") if drawn else batches
        for step, batch in enumerate(bar):
            raise_if_stopped()  # a Ctrl+C the garbage collector swallowed (ikd.errors.stop)
            with autocast(context.device):
                out = method(batch)
            if not _all_finite(out["loss"]):
                _diverged(run_dir, main, epoch, step, float(out["loss"].detach()))
                return "diverged"
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            size = len(batch["identity"])
            _accumulate(sums, out, size)
            seen += size
            labels = batch["identity"]
            hits = (out["logits"].argmax(dim=1) == labels).long()
            correct[0].index_add_(0, labels, hits)
            correct[1].index_add_(0, labels, torch.ones_like(labels))
            if bar is not batches:  # live loss terms (set_description: tqdm_ray has no postfix)
                terms = " ".join(
                    f"{k.removeprefix('loss/')} {float(v) / seen:.3f}"
                    for k, v in sums.items()
                    if k.startswith("loss")
                )
                bar.set_description(f"{title}: {terms}")
        if bar is not batches:
            bar.close()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        broadcast_buffers(method.net)
        correct = all_reduce_sum(correct.cpu())
        train_accuracy = torch.where(
            correct[1] > 0, correct[0] / correct[1].clamp(min=1), torch.nan
        ).to(torch.float64)
        terms = [float(total) for total in sums.values()]  # one host sync per term per epoch
        totals = all_reduce_sum(torch.tensor([seen, *terms], dtype=torch.float64))
        method.eval()
        live = evaluate(
            lambda x: method.net.student(x)[1], val, num_identities, eval_batch, context
        )
        method.end_epoch(epoch, train_accuracy, per_identity_accuracy(live))
        evaluated = method.evaluated_student()
        matrix = (
            live
            if evaluated is method.net.student
            else evaluate(method.predict, val, num_identities, eval_batch, context)
        )
        metrics = {
            "epoch": epoch,
            "lr": lr,
            **{
                f"train/{name}": float(total / max(totals[0], 1))
                for name, total in zip(sums, totals[1:].tolist(), strict=True)
            },
            "train/acc": float(correct[0].sum() / max(int(correct[1].sum()), 1)),
            # val/*: the evaluated model (FAWA's average once engaged) — what tuning optimises
            # and a user deploys; val/live_*: the student being trained.
            **summarize(matrix, "val/"),
            **summarize(live, "val/live_"),
            **method.epoch_record(),
            "seconds": round(time.perf_counter() - began, 3),
        }
        if main:
            lines.append(metrics)
            write_metrics(run_dir / METRICS, lines)
            log.info(
                "epoch %d/%d: loss %.4f, val acc %.4f (worst identity %.4f), %.1f s",
                epoch + 1,
                t.epochs,
                metrics.get("train/loss", math.nan),
                metrics["val/acc"],
                metrics["val/worst_acc"],
                metrics["seconds"],
            )
        checkpoint = {
            "epoch": epoch,
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
        last = epoch == t.epochs - 1
        due = keep_last if last else time.monotonic() - saved >= t.checkpoint_every_s
        reporter.report(metrics, checkpoint if main and due else None)
        if due:
            saved = time.monotonic()
        if epoch in fail_at_epochs and context.rank == context.world - 1:
            _fail_once(run_dir, epoch)
    if main:
        set_status(run_dir, "complete", epochs_done=t.epochs)
    return "complete"


def _diverged(run_dir: Location, main: bool, epoch: int, step: int, loss: float) -> None:
    reason = (
        f"the loss became non-finite (rank 0: {loss:g}) at epoch {epoch + 1}, step {step + 1}; "
        "the last good checkpoint is kept. Lower train.lr or the distillation weights."
    )
    log.error("run %s diverged: %s", run_dir.name, reason)
    if main:
        set_status(run_dir, "diverged", diverged={"epoch": epoch, "step": step, "reason": reason})


def _fail_once(run_dir: Location, epoch: int) -> None:
    marker = run_dir / FAULT_MARKER.format(epoch=epoch)
    if marker.exists():
        return
    marker.write_text("a test asked this worker to die once\n")
    log.warning("fault injection: worker process exits now")
    os._exit(1)
