"""Ray Train (V2) around the plain loop: DDP over gloo on CPUs, nccl on GPUs, fault tolerant.

The run driver (driver.py) prepares the run and calls `fit_with_ray` when `loop` is "ray".

The worker function is `loop.train_loop` with four Ray lines: the rank and device from the
train context, `prepare_model` wrapping only `method.trainable()`, the splits read through the
Ray Data reader (`pipeline.read_split`), and `ray.train.report` with a checkpoint every epoch.
A worker that dies is restarted by `FailureConfig` and the run resumes from its last checkpoint;
data order, face views and RNG streams are functions of (seed, epoch, rank), so the resumed run
ends with the same metrics as an unbroken one (tests/test_ray_train.py).

Every worker reads the whole split (`DataConfig(datasets_to_split=[])`) and takes its share of
each epoch's seeded permutation: Ray Data's streaming split hands blocks to whichever worker asks
first, which no resumed run could reproduce.

Sizing: the splits are read (materialised in the object store) before the workers start, so no
read task ever waits for CPUs the workers hold — on 2 CPUs, reading inside the workers deadlocked
(DESIGN.md §7). The workers share the cluster's CPUs less half a CPU for Ray's own tasks; torch
threads per worker = its CPU share, rounded (`train.threads` overrides).
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import ray
import ray.train
import torch
from ray.experimental import tqdm_ray
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    DataConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
    TrainingFailedError,
)
from ray.train.torch import TorchTrainer, get_device, prepare_model
from ray.tune.trainable.trainable_fn_utils import _in_tune_session

from ikd.cluster import TRIAL_DRIVER_CPUS, cluster_cpus, largest_node_cpus, on_gpus
from ikd.config import Config, apply_overrides
from ikd.data import schema
from ikd.data.dataset import BuiltDataset, open_dataset
from ikd.data.pipeline import read_split
from ikd.errors import UserError
from ikd.storage import Location, location, read_json, write_json
from ikd.train.data import Samples
from ikd.train.loop import Context, subnormals_flushed, train_loop
from ikd.train.runs import (
    KEEP_CHECKPOINTS,
    RAY_STORAGE,
    RUN,
    checkpoint_epoch,
    checkpoint_folders,
    load_state,
    resume_epoch,
    this_node,
    write_state,
)

log = logging.getLogger(__name__)

MAX_FAILURES = 3


class RayReporter:
    """`ray.train.report` every epoch: rank 0 attaches the checkpoint, every rank reports. The
    run folder's name goes with the metrics (a Tune trial's records find its run by it)."""

    def __init__(self, run: str) -> None:
        self.run = run

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        metrics = {**metrics, "run": self.run}
        if state is None:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory() as folder:  # Ray uploads it to the run storage
            write_state(state, folder)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))

    def latest(self) -> dict[str, Any] | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return load_state(folder)


def _worker(setup: dict[str, Any]) -> None:
    logging.basicConfig(
        level=setup["log_level"],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    with subnormals_flushed():
        _train_worker(setup)


def _train_worker(setup: dict[str, Any]) -> None:
    torch.set_num_threads(setup["threads"])
    context = ray.train.get_context()
    shapes = schema.Shapes(**setup["shapes"])
    if setup["dataset"] is not None:  # read on this worker's node from the storage
        dataset = open_dataset(setup["dataset"])
        splits = {name: Samples.from_dataset(dataset, name) for name in ("train", "val")}
    else:  # through Ray Data and the object store
        splits = {
            name: Samples.from_batches(
                ray.train.get_dataset_shard(name).iter_batches(
                    batch_size=4096, batch_format="numpy"
                ),
                shapes,
            )
            for name in ("train", "val")
        }
    run_dir = location(setup["run_dir"])
    rank, start = context.get_world_rank(), resume_epoch(run_dir)
    node = {"rank": rank, **this_node(), "from_epoch": start}
    write_json(run_dir / WORKER_NODES / f"rank{rank}-from{start}.json", node)
    train_loop(
        Config.from_dict(setup["config"]),
        run_dir,
        splits["train"],
        splits["val"],
        shapes.num_identities,
        context=Context(
            rank=context.get_world_rank(),
            world=context.get_world_size(),
            device=get_device(),
            progress=setup["progress"],
            bar=tqdm_ray.tqdm,  # drawn by the driver, not forwarded line by line
        ),
        reporter=RayReporter(run_dir.name),
        wrap=prepare_model,
        fail_at_epochs=tuple(setup["fail_at_epochs"]),
    )


def scaling(config: Config) -> tuple[ScalingConfig, int]:
    """Ray Train's scaling for the config on this cluster, and the torch threads per worker:
    `resources.cpus_per_worker` CPUs each or, by default, an equal share of what the run may use
    (the cluster less 0.5 CPU for Ray Data's read tasks; in a Tune trial, its share of the
    concurrent trials less the trial's own process), at most the largest node's; on GPUs,
    `resources.gpus_per_worker` each."""
    r = config.resources
    workers = config.train.workers
    use_gpu = on_gpus(config, workers)
    if _in_tune_session():
        share = cluster_cpus() / r.concurrent_trials - TRIAL_DRIVER_CPUS
    else:
        share = cluster_cpus() - 0.5
    per_worker = r.cpus_per_worker or max(0.25, min(share / workers, largest_node_cpus() - 0.5))
    threads = config.train.threads or max(1, round(per_worker))
    resources = {"CPU": per_worker, **({"GPU": r.gpus_per_worker} if use_gpu else {})}
    return (
        ScalingConfig(
            num_workers=workers,
            use_gpu=use_gpu,
            resources_per_worker=resources,
            placement_strategy=r.placement,
        ),
        threads,
    )


def _cause(error: TrainingFailedError) -> str:
    """One line on why Ray Train gave up: a failing rank's error, or the controller's.

    A worker whose process died (Ray's failed health check) is named before the ranks that then
    failed in a collective with it (gloo: "Connection reset by peer"); then the lowest rank.
    """
    failures = getattr(error, "worker_failures", None) or {}
    if failures:
        rank, failure = min(
            failures.items(),
            key=lambda item: (not type(item[1]).__name__.startswith("WorkerHealthCheck"), item[0]),
        )
        more = f" (+{len(failures) - 1} more rank(s))" if len(failures) > 1 else ""
    else:
        rank, failure, more = None, getattr(error, "controller_failure", error), ""
    lines = str(failure).strip().splitlines()
    where = f"rank {rank}" if rank is not None else "the Ray Train controller"
    return f"{where}: {type(failure).__name__}: {lines[0] if lines else ''}{more}"


WORKER_NODES = "worker_nodes"  # each rank's node per (re)start, until folded into run.json


def _record_worker_nodes(run_dir: Location) -> None:
    """Add where each rank trained (a file per rank and start, written by the workers) to
    run.json's `trained_on`, after the driver's own entry."""
    folder = run_dir / WORKER_NODES
    starts = [read_json(path) for path in folder.glob("rank*.json")]
    if not starts:
        return
    starts.sort(key=lambda node: (node["from_epoch"], node["rank"]))
    record = read_json(run_dir / RUN) or {}
    write_json(run_dir / RUN, {**record, "trained_on": [*record.get("trained_on", []), *starts]})
    folder.remove()


def _prune_checkpoints(run_dir: Location) -> None:
    """Keep the newest two checkpoints: after a worker failure Ray leaves older ones behind, and
    a rank killed while saving leaves a folder without its epoch.json (never restored from)."""
    folder = run_dir / RAY_STORAGE
    done = sorted(checkpoint_folders(folder, "checkpoint_*"), key=checkpoint_epoch)
    for old in done[:-KEEP_CHECKPOINTS]:
        old.remove()
    for partial in set(folder.glob("checkpoint_*")) - set(done):
        partial.remove()


def fit_with_ray(
    config: Config,
    dataset: BuiltDataset,
    run_dir: Location,
    *,
    progress: bool = True,
    fail_at_epochs: tuple[int, ...] = (),
    max_failures: int = MAX_FAILURES,
) -> str:
    """Train a prepared run (driver.py) with `train.workers` Ray Train workers, resuming from its
    newest checkpoint. Returns the run's status: "complete" or "diverged"."""
    scaling_config, threads = scaling(config)
    if scaling_config.use_gpu:
        config = apply_overrides(config, {"train.device": "cuda"})
    from_storage = dataset.reads_from_storage(config.resources.data)
    log.info(
        "Ray Train: %d worker(s), %s each, %d torch thread(s)%s; data %s",
        config.train.workers,
        scaling_config.resources_per_worker,
        threads,
        ", GPUs" if scaling_config.use_gpu else "",
        f"read by each worker from {dataset.folder}" if from_storage else "via the object store",
    )
    callbacks = []
    if _in_tune_session():  # a Tune trial running Ray Train (Ray's Train V2 pattern)
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "config": config.to_dict(),
            "run_dir": str(run_dir),
            "shapes": dataset.manifest["shapes"],
            "dataset": str(dataset.folder) if from_storage else None,
            "threads": threads,
            "progress": progress,
            "fail_at_epochs": fail_at_epochs,
            "log_level": logging.getLogger().getEffectiveLevel(),
        },
        scaling_config=scaling_config,
        run_config=RunConfig(
            name=RAY_STORAGE,
            storage_path=run_dir.path,
            storage_filesystem=run_dir.ray_filesystem,
            # a controller that keeps failing (e.g. a placement group that never fits) ends the
            # run instead of retrying forever (DESIGN.md §7)
            failure_config=FailureConfig(max_failures=max_failures, controller_failure_limit=3),
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            callbacks=callbacks,
        ),
        # Materialised here, with the whole cluster: read tasks inside the workers would
        # wait for CPUs the workers hold (seen on 2 CPUs, DESIGN.md §7). Read from the storage
        # by each worker instead at the paper preset's size (resources.data).
        datasets={}
        if from_storage
        else {
            name: read_split(dataset, name, decode=False).materialize() for name in ("train", "val")
        },
        dataset_config=DataConfig(datasets_to_split=[]),
    )
    # Ray 2.60's trainer takes SIGINT over on each fit from the main thread (a "graceful abort"
    # of the run) and never hands it back: ikd's Ctrl+C (`ikd.errors.stop`) would be lost for the
    # rest of the command, and a Ctrl+C after the run would exit 0. The process's handler stays
    # (tests/test_cluster.py checks it, should a later Ray register it another way).
    trainer._register_sigint_handler = lambda controller: None
    try:
        trainer.fit()  # a re-run restores the newest checkpoint of <run_dir>/ray by itself
    except TrainingFailedError as error:
        _record_worker_nodes(run_dir)
        log.error("Ray Train: %s", error)  # the workers' errors, many lines
        raise UserError(
            f"{run_dir}: training failed with {max_failures} restart(s) allowed ({_cause(error)}; "
            "the log above has the details). Run the same command again to resume from the "
            "last checkpoint."
        ) from None
    _record_worker_nodes(run_dir)
    _prune_checkpoints(run_dir)
    return read_json(run_dir / RUN)["status"]
