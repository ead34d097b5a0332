"""The training loop: plain PyTorch (Adam, MultiStepLR), the same in one process and in Ray Train.

`train_loop` is what a Ray Train worker runs and what `fit` runs in-process; the differences are
passed in: the rank and world size (`Context`), how the trainable module is wrapped (DDP via
`prepare_model`, or nothing) and where epochs are reported (`Reporter`: local checkpoint folders
here, `ray.train.report` in ray_train.py, which Tune will receive as well). Every epoch: train,
per-identity accuracies summed over ranks → `method.end_epoch`, full-val metrics (the confusion
matrix summed over ranks, so rank 0 holds the whole split's values), one line of
`metrics.jsonl`, one checkpoint (method + optimizer + scheduler state; the RNG streams are
re-derived from (seed, epoch, rank), see data.py).

A run folder `<runs_root>/<study>/<variant>-<run hash>-seed<seed>` holds `config.json` (the
resolved config), `run.json` (status, dataset and teacher provenance), `metrics.jsonl`,
checkpoints (the last two), and `test.json`, written once, only when test is asked for.
A non-finite loss stops the run itself (`status: diverged`, the last good checkpoint kept): it is
not an exception, which Ray Train would retry.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from ikd.config import DATA_SECTIONS, Config, apply_overrides
from ikd.data.dataset import dataset_folder, read_json, read_manifest, write_json
from ikd.errors import UserError
from ikd.methods import Method, build_method
from ikd.train.data import Samples, reseed
from ikd.train.metrics import (
    all_reduce_sum,
    broadcast_buffers,
    confusion,
    per_identity_accuracy,
    summarize,
)

log = logging.getLogger(__name__)

CONFIG, RUN, METRICS, TEST = "config.json", "run.json", "metrics.jsonl", "test.json"
CHECKPOINTS, STATE, EPOCH = "checkpoints", "state.pt", "epoch.json"
KEEP_CHECKPOINTS = 2
CPU = torch.device("cpu")


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process sits in a run."""

    rank: int = 0
    world: int = 1
    device: torch.device = CPU
    progress: bool = True


class Reporter(Protocol):
    """Where epochs go: every epoch's metrics with a checkpoint, and the latest one back."""

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None: ...

    def latest(self) -> dict[str, Any] | None: ...


class LocalCheckpoints:
    """The plain loop's reporter: `checkpoints/epoch-NNNN/state.pt`, the last two kept."""

    def __init__(self, run_dir: Path, keep: int = KEEP_CHECKPOINTS) -> None:
        self.folder = run_dir / CHECKPOINTS
        self.keep = keep

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            return
        target = self.folder / f"epoch-{metrics['epoch']:04d}"
        partial = target.with_name(target.name + ".part")  # a killed writer leaves no half one
        shutil.rmtree(partial, ignore_errors=True)
        write_state(state, partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        for old in sorted(checkpoint_folders(self.folder, "epoch-*"))[: -self.keep]:
            shutil.rmtree(old)

    def latest(self) -> dict[str, Any] | None:
        done = sorted(checkpoint_folders(self.folder, "epoch-*"))
        return load_state(done[-1]) if done else None


def write_state(state: dict[str, Any], folder: Path) -> None:
    """A checkpoint folder: state.pt and, to find the newest without loading it, epoch.json."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / STATE)
    write_json(folder / EPOCH, {"epoch": state["epoch"]})


def checkpoint_folders(folder: Path, pattern: str) -> list[Path]:
    """Complete checkpoint folders matching `pattern` in `folder`."""
    return [p for p in folder.glob(pattern) if (p / EPOCH).exists()]


def checkpoint_epoch(folder: Path) -> int:
    return read_json(folder / EPOCH)["epoch"]


def load_state(folder: str | os.PathLike) -> dict[str, Any]:
    return torch.load(Path(folder) / STATE, map_location="cpu", weights_only=False)


def variant_name(config: Config) -> str:
    """The default variant: the method, plus the student when it is not the paper's resnet18."""
    student = config.train.student
    return config.train.method if student == "resnet18" else f"{config.train.method}-{student}"


def run_folder(config: Config, study: str = "train", variant: str | None = None) -> Path:
    """<runs_root>/<study>/<variant>-<run hash>-seed<seed>, absolute; no timestamps."""
    name = f"{variant or variant_name(config)}-{config.run_hash()}-seed{config.train.seed}"
    return (Path(config.train.runs_root) / study / name).resolve()


def check_dataset(config: Config, folder: Path) -> dict[str, Any]:
    """The manifest of a finished dataset built with this config's data settings, or a UserError
    naming what differs."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("status") != "complete":
        raise UserError(
            f"{folder}: no finished dataset there; build it with `ikd data build --preset {config.preset}`"
        )
    if manifest["data_hash"] != config.data_hash():
        built = Config.from_dict(manifest["config"]).to_dict()
        ours = config.to_dict()
        differences = [
            f"{section}.{key}={built[section][key]!r} (run: {ours[section][key]!r})"
            for section in DATA_SECTIONS
            if section != "preset"
            for key in ours[section]
            if section != "data" or key != "root"
            if built[section][key] != ours[section][key]
        ]
        if built["preset"] != ours["preset"]:
            differences.insert(0, f"preset={built['preset']!r} (run: {ours['preset']!r})")
        raise UserError(
            f"{folder} was built with other data settings than this run's: "
            + ", ".join(differences or ["the dataset format"])
        )
    return manifest


def prepare_run(config: Config, folder: Path, run_dir: Path, loop: str) -> dict[str, Any]:
    """Check the dataset, write config.json and run.json; refuse to resume a run whose dataset
    (teacher included) has changed since it started. Returns the run record."""
    manifest = check_dataset(config, folder)
    record = {
        "status": "running",
        "run_hash": config.run_hash(),
        "seed": config.train.seed,
        "method": config.train.method,
        "student": config.train.student,
        "loop": loop,  # "ray" or "plain": their checkpoints live in different folders
        "workers": config.train.workers,
        "dataset": str(folder),
        "data_hash": manifest["data_hash"],
        "synthetic": manifest["synthetic"],
        "teacher": manifest["teacher"],
        "num_identities": manifest["shapes"]["num_identities"],
        "shapes": manifest["shapes"],
        "versions": {"torch": torch.__version__},
    }
    previous = read_json(run_dir / RUN)
    if previous is not None and previous.get("teacher") != manifest["teacher"]:
        raise UserError(
            f"{run_dir} was trained against another teacher ({previous['teacher'].get('source')}, "
            f"{previous['teacher'].get('backbone_sha256', '')[:12]}) than {folder} now holds; "
            "delete the run folder to start it again"
        )
    if previous is not None and previous.get("status") == "running" and previous["loop"] != loop:
        raise UserError(
            f"{run_dir} was started {'with' if previous['loop'] == 'ray' else 'without'} Ray; "
            f"resume it the same way ({'drop' if previous['loop'] == 'ray' else 'add'} --no-ray)"
        )
    if previous is not None and previous.get("status") == "diverged":
        raise DivergedError(run_dir)
    if previous is not None and previous.get("status") == "complete":
        return previous
    write_json(run_dir / CONFIG, config.to_dict())
    write_json(run_dir / RUN, record)
    return record


def _accumulate(sums: dict[str, float], out: dict[str, torch.Tensor], size: int) -> None:
    for name, value in out.items():
        if name.startswith("loss"):
            sums[name] = sums.get(name, 0.0) + float(value.detach()) * size


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
        batch_size, seed=0, epoch=0, train=False, rank=context.rank, world=context.world
    ):
        logits = predict(batch["spectrogram"].to(context.device))
        matrix += confusion(logits.argmax(dim=1), batch["identity"], num_identities)
    return all_reduce_sum(matrix)


def train_loop(
    config: Config,
    run_dir: Path,
    train: Samples,
    val: Samples,
    num_identities: int,
    *,
    context: Context,
    reporter: Reporter,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    fail_at_epoch: int | None = None,
) -> str:
    """Train `config.train.method` to `config.train.epochs`, resuming from the reporter's latest
    checkpoint. Returns the run's status: "complete" or "diverged".

    Args:
        wrap: wraps `method.trainable()` for distributed training (Ray Train's `prepare_model`).
        fail_at_epoch: test hook — the last rank dies once after reporting this epoch (its marker
            file lives in the run folder, so the restarted run goes on).
    """
    t = config.train
    reseed(t.seed, -1, 0)  # the initial weights: the same on every rank and in every run
    method = build_method(config, num_identities).to(context.device)
    state = reporter.latest()
    if state is not None:
        method.load_state_dict(state["method"])
    if wrap is not None:
        method.distribute(wrap)
    optimizer = torch.optim.Adam(method.trainable().parameters(), lr=t.lr)
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
    if main:
        _truncate_metrics(run_dir / METRICS, start)
    per_rank_batch = t.batch_size // context.world  # the config checks it divides
    eval_batch = max(per_rank_batch, 256)
    for epoch in range(start, t.epochs):
        began = time.perf_counter()
        reseed(t.seed, epoch, context.rank)
        method.train()
        sums: dict[str, float] = {}
        seen = 0
        correct = torch.zeros(2, num_identities, dtype=torch.long)  # (correct, total) per identity
        batches = train.batches(
            per_rank_batch,
            seed=t.seed,
            epoch=epoch,
            train=True,
            rank=context.rank,
            world=context.world,
        )
        steps = len(train) // context.world // per_rank_batch
        bar = tqdm(
            batches,
            total=steps,
            desc=f"epoch {epoch + 1}/{t.epochs}",
            unit="step",
            leave=False,
            disable=not (context.progress and main),
        )
        for step, batch in enumerate(bar):
            batch = {name: value.to(context.device) for name, value in batch.items()}
            out = method(batch)
            if not _all_finite(out["loss"]):
                _diverged(run_dir, main, epoch, step, float(out["loss"]))
                return "diverged"
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            size = len(batch["identity"])
            _accumulate(sums, out, size)
            seen += size
            labels = batch["identity"].cpu()
            hits = (out["logits"].argmax(dim=1).cpu() == labels).long()
            correct[0].index_add_(0, labels, hits)
            correct[1].index_add_(0, labels, torch.ones_like(labels))
            bar.set_postfix({k.removeprefix("loss/"): f"{v / seen:.3f}" for k, v in sums.items()})
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        broadcast_buffers(method.net)
        correct = all_reduce_sum(correct)
        train_accuracy = torch.where(
            correct[1] > 0, correct[0] / correct[1].clamp(min=1), torch.nan
        ).to(torch.float64)
        totals = all_reduce_sum(torch.tensor([seen, *sums.values()], dtype=torch.float64))
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
            **summarize(matrix, "val"),
            "val/live_acc": summarize(live, "live")["live/acc"],
            "seconds": round(time.perf_counter() - began, 3),
        }
        if main:
            with (run_dir / METRICS).open("a") as lines:
                lines.write(json.dumps(metrics) + "\n")
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
        reporter.report(metrics, checkpoint if main else None)
        if fail_at_epoch == epoch and context.rank == context.world - 1:
            _fail_once(run_dir)
    if main:
        _set_status(run_dir, "complete", epochs_done=t.epochs)
    return "complete"


def _truncate_metrics(path: Path, start: int) -> None:
    """Drop metric lines of epochs that a resumed run will train again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["epoch"] < start:
                kept.append(line)
        except (ValueError, KeyError):  # a line cut short by a kill
            continue
    partial = path.with_name(path.name + ".part")
    partial.write_text("".join(line + "\n" for line in kept))
    os.replace(partial, path)


def _set_status(run_dir: Path, status: str, **fields: Any) -> None:
    record = read_json(run_dir / RUN) or {}
    write_json(run_dir / RUN, {**record, "status": status, **fields})


def _diverged(run_dir: Path, main: bool, epoch: int, step: int, loss: float) -> None:
    reason = (
        f"the loss became non-finite (rank 0: {loss:g}) at epoch {epoch + 1}, step {step + 1}; "
        "the last good checkpoint is kept. Lower train.lr or the distillation weights."
    )
    log.error("run %s diverged: %s", run_dir.name, reason)
    if main:
        _set_status(run_dir, "diverged", diverged={"epoch": epoch, "step": step, "reason": reason})


def _fail_once(run_dir: Path) -> None:
    marker = run_dir / ".fault-injected"
    if marker.exists():
        return
    marker.write_text("a test asked this worker to die once\n")
    log.warning("fault injection: worker process exits now")
    os._exit(1)


def fit(
    config: Config,
    *,
    dataset: Path | None = None,
    run_dir: Path | None = None,
    study: str = "train",
    variant: str | None = None,
    evaluate_test: bool = False,
    progress: bool = True,
) -> Path:
    """Train in this process (no Ray, one worker) and return the run folder. A finished run is
    not trained again; an interrupted one resumes from its last checkpoint."""
    config = apply_overrides(config, {"train.workers": 1})
    folder = dataset or dataset_folder(config)
    run_dir = run_dir or run_folder(config, study, variant)
    record = prepare_run(config, folder, run_dir, "plain")
    if record["status"] == "running":
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        device = torch.device(
            "cuda" if config.train.device != "cpu" and torch.cuda.is_available() else "cpu"
        )
        status = train_loop(
            config,
            run_dir,
            Samples.from_folder(folder, "train"),
            Samples.from_folder(folder, "val"),
            record["num_identities"],
            context=Context(device=device, progress=progress),
            reporter=LocalCheckpoints(run_dir),
        )
        if status == "diverged":
            raise DivergedError(run_dir)
    if evaluate_test:
        evaluate_run(run_dir, "test")
    return run_dir


class DivergedError(UserError):
    """A run stopped itself on a non-finite loss (run.json says where)."""

    def __init__(self, run_dir: Path) -> None:
        record = read_json(run_dir / RUN) or {}
        super().__init__(f"{run_dir}: {record.get('diverged', {}).get('reason', 'diverged')}")


def latest_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The newest checkpoint of a run, whichever loop (plain or Ray) wrote it."""
    candidates = checkpoint_folders(run_dir / CHECKPOINTS, "epoch-*")
    candidates += checkpoint_folders(run_dir / "ray", "checkpoint_*")
    if not candidates:
        raise UserError(f"{run_dir}: no checkpoint (is it a run folder of `ikd train`?)")
    return load_state(max(candidates, key=checkpoint_epoch))


def load_run(run_dir: Path) -> tuple[Config, Method, dict[str, Any], int]:
    """A run's config, its method restored from the newest checkpoint (eval mode), its run
    record, and the checkpoint's epoch."""
    run_dir = Path(run_dir)
    saved = read_json(run_dir / CONFIG)
    record = read_json(run_dir / RUN)
    if saved is None or record is None:
        raise UserError(f"{run_dir}: not a run folder (no {CONFIG} / {RUN})")
    config = Config.from_dict(saved)
    method = build_method(config, record["num_identities"])
    state = latest_checkpoint(run_dir)
    method.load_state_dict(state["method"])
    return config, method.eval(), record, state["epoch"]


def evaluate_run(run_dir: Path, split: str) -> dict[str, Any]:
    """Gait-only metrics of a run's newest checkpoint on `split`. The test split is evaluated
    once: its `test.json` is written the first time and returned unchanged afterwards."""
    run_dir = Path(run_dir)
    if split == "test" and (run_dir / TEST).exists():
        log.info("%s: test.json exists; the test split is evaluated once", run_dir.name)
        return json.loads((run_dir / TEST).read_text())
    _, method, record, epoch = load_run(run_dir)
    if split == "test" and record.get("status") != "complete":
        raise UserError(f"{run_dir}: the run is {record.get('status')}; test only a finished run")
    samples = Samples.from_folder(Path(record["dataset"]), split)
    matrix = evaluate(method.predict, samples, record["num_identities"], 256, Context())
    metrics = {"split": split, "epoch": epoch, **summarize(matrix, split)}
    if split == "test":
        write_json(run_dir / TEST, metrics)
    return metrics
