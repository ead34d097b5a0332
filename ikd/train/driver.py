"""The run driver: one run from a plain dict — what the CLI, a Ray Tune trainable and tests call.

    from ikd.train.driver import train_driver
    run_dir = train_driver({"preset": "smoke", "loop": "plain", "train.method": "baseline"})

The dict has Ray's `train_driver_fn(config: dict)` shape: dotted config overrides (any key with a
dot, e.g. ``"identitykd.tau": 0.1`` or ``"train.epochs": "3"``) beside the options that are not
config keys (`RunOptions`; the dict's resolution, `resolve_run`, lives torch-free in
train/runs.py, where a report reads it too). The driver resolves the config and the dataset, names
and prepares the run folder, trains in this process or with Ray Train, stops on divergence, and
evaluates the test split once when asked. A finished run is not trained again; an interrupted one resumes from its
last checkpoint, the same way it started.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ikd.config import CONFIG, Config
from ikd.data import schema
from ikd.data.dataset import BuiltDataset, dataset_folder, open_dataset
from ikd.errors import ConfigError, UserError
from ikd.methods import Method, build_method
from ikd.storage import Location, location, read_json, write_json
from ikd.train.data import Samples
from ikd.train.loop import Context, run_flushed, train_loop
from ikd.train.metrics import confusion, summarize
from ikd.train.runs import (
    METRICS,
    RUN,
    SPLITS,
    TEST,
    TEST_PREDICTIONS,
    DivergedError,
    LocalCheckpoints,
    Reporter,
    RunOptions,
    latest_checkpoint,
    local_config,
    prepare_run,
    read_metrics,
    resolve_run,
    run_dataset,
)

log = logging.getLogger(__name__)


def train_driver(spec: Mapping[str, Any]) -> Location:
    """Train (or resume, or confirm) one run and return its folder.

    Signature: ``train_driver(spec: dict) -> Location``, where `spec` holds dotted config overrides
    (``"train.method": "identitykd"``, ``"identitykd.tau": 0.1``; strings are parsed by the
    field's type) plus the `RunOptions` keys: ``preset``, ``study``, ``variant``, ``stage``
    ("tune" | "reeval" | "final"), ``dataset``, ``test``, ``loop`` ("ray" | "plain"), ``progress``,
    ``max_failures``, ``on_epoch``, ``splits`` and the test hook ``fail_at_epochs``. Relative
    ``data.root``/``train.runs_root``/``dataset`` resolve against the current directory (a URI stays as it is, `ikd.storage`): a caller
    that changes it (Ray Tune's trials do) passes absolute ones.

    Raises:
        UserError: an unknown key, no finished dataset or one built with other data settings,
            a run resumed with the other loop, a diverged run (`DivergedError`), or Ray Train
            out of restarts.
    """
    options, config, run_dir = resolve_run(spec)
    dataset = open_dataset(options.dataset or dataset_folder(config), config)
    record = prepare_run(config, dataset, run_dir, options.loop, options.stage)
    if record["status"] == "complete" and options.on_epoch is not None:
        for metrics in read_metrics(run_dir / METRICS):
            options.on_epoch(metrics)
    if record["status"] == "running":
        if options.loop == "ray":
            from ikd.cluster import init_ray  # the Ray layer, only when asked for
            from ikd.train.ray_train import fit_with_ray

            init_ray()
            status = fit_with_ray(
                config,
                dataset,
                run_dir,
                progress=options.progress,
                fail_at_epochs=tuple(options.fail_at_epochs),
                max_failures=options.max_failures,
            )
        else:
            status = _fit_in_process(config, dataset, run_dir, options)
        if status == "diverged":
            raise DivergedError(run_dir)
    if options.test:
        evaluate_run(run_dir, "test")
    return run_dir


def _fit_in_process(
    config: Config, dataset: BuiltDataset, run_dir: Location, options: RunOptions
) -> str:
    """The plain loop in this process, one worker, checkpoints in the run folder; subnormals
    flushed (`run_flushed`: from the main thread, the loop runs in a thread of its own)."""
    # set in the caller's thread: a thread `run_flushed` starts takes it, and so does the test
    # split's evaluation that follows here
    if config.train.threads:
        torch.set_num_threads(config.train.threads)

    def fit() -> str:
        device = torch.device(
            "cuda" if config.train.device != "cpu" and torch.cuda.is_available() else "cpu"
        )
        splits = options.splits or {name: Samples.from_dataset(dataset, name) for name in SPLITS}
        return train_loop(
            config,
            run_dir,
            splits["train"],
            splits["val"],
            dataset.num_identities,
            context=Context(device=device, progress=options.progress),
            reporter=_Notifying(LocalCheckpoints(run_dir), options.on_epoch, run_dir / METRICS),
            keep_last=options.stage == "final",  # a trial's and a re-evaluation's go when they end
        )

    return run_flushed(fit)


@dataclasses.dataclass(frozen=True)
class _Notifying:
    """A reporter that hands each epoch's metrics on (`on_epoch`) once its checkpoint is saved;
    resuming, it first replays the epochs up to the checkpoint it resumes from."""

    inner: Reporter
    on_epoch: Callable[[dict[str, Any]], None] | None
    metrics: Location

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        self.inner.report(metrics, state)
        if self.on_epoch is not None:
            self.on_epoch(metrics)

    def latest(self) -> dict[str, Any] | None:
        state = self.inner.latest()
        if state is not None and self.on_epoch is not None:
            for metrics in read_metrics(self.metrics):
                if metrics["epoch"] <= state["epoch"]:
                    self.on_epoch(metrics)
        return state


def load_run(run_dir: str | Location) -> tuple[Config, Method, dict[str, Any], int]:
    """A run's config, its method restored from the newest checkpoint (eval mode), its run
    record, and the checkpoint's epoch."""
    run_dir = location(run_dir)
    saved = read_json(run_dir / CONFIG)
    record = read_json(run_dir / RUN)
    if saved is None or record is None:
        raise UserError(f"{run_dir}: not a run folder (no {CONFIG} / {RUN})")
    try:
        config = local_config(saved, run_dir)
    except ConfigError as error:
        raise UserError(
            f"{run_dir}: its {CONFIG} does not load in this version of ikd ({error}); "
            "train the run again"
        ) from None
    method = build_method(config, record["num_identities"])
    state = latest_checkpoint(run_dir)
    method.load_state_dict(state["method"])
    return config, method.eval(), record, state["epoch"]


def evaluate_run(run_dir: str | Location, split: str) -> dict[str, Any]:
    """Gait-only metrics of a run's newest checkpoint on `split`: `<split>/acc`, … of the
    evaluated model (FAWA's average once engaged) and `<split>/live_acc`, … of the live student.
    The test split is evaluated once, and only for a finished run of the final stage (the
    dataset refuses the test split to any other): its per-window predictions
    (`test_predictions.parquet`: key, identity, walk, window, the evaluated model's logits) and
    `test.json` are written the first time, and `test.json` is returned unchanged afterwards."""
    run_dir = location(run_dir)
    if split == "test" and (run_dir / TEST).exists():
        log.info("%s: %s exists; the test split is evaluated once", run_dir.name, TEST)
        return read_json(run_dir / TEST)
    record = read_json(run_dir / RUN) or {}
    if split == "test" and record and record.get("stage", "final") != "final":
        raise UserError(f"{run_dir}: a tuning run never reads the test split")
    config, method, record, epoch = load_run(run_dir)
    if split == "test" and record.get("status") != "complete":
        raise UserError(f"{run_dir}: the run is {record.get('status')}; test only a finished run")
    dataset = open_dataset(run_dataset(record, config), config)
    samples = Samples.from_dataset(dataset, split, final_run=record if split == "test" else None)
    n = dataset.num_identities
    logits = window_logits(method.predict, samples)
    matrix = confusion(logits.argmax(dim=1), samples.identity, n)
    live = method.net.student
    live_matrix = (
        matrix
        if method.evaluated_student() is live
        else confusion(
            window_logits(lambda x: live(x)[1], samples).argmax(dim=1), samples.identity, n
        )
    )
    metrics = {
        "split": split,
        "epoch": epoch,
        **summarize(matrix, f"{split}/"),  # the evaluated model (FAWA's average once engaged)
        **summarize(live_matrix, f"{split}/live_"),  # the live student
        **method.epoch_record(),
    }
    if split == "test":
        write_predictions(run_dir / TEST_PREDICTIONS, samples, logits)
        write_json(run_dir / TEST, metrics)
    return metrics


@torch.no_grad()
def window_logits(
    predict: Callable[[torch.Tensor], torch.Tensor], samples: Samples, batch_size: int = 256
) -> torch.Tensor:
    """`predict`'s logits (n, N) of every window of a split, in key order (one process)."""
    batches = samples.batches(batch_size, seed=0, epoch=0, train=False)
    return torch.cat([predict(batch["spectrogram"]) for batch in batches])


def write_predictions(path: Location, samples: Samples, logits: torch.Tensor) -> None:
    """Per-window predictions as Parquet — key, identity, walk, window (int64) and logits (N
    float32 per row) — written whole, for confusion matrices, walk-level votes and paired tests
    without retraining."""
    key = samples.key.numpy()
    identity, walk, window = schema.key_parts(key)
    flat = pa.array(logits.float().numpy().ravel())
    table = pa.table(
        {
            schema.KEY: key,
            schema.IDENTITY: identity,
            schema.WALK: walk,
            schema.WINDOW: window,
            "logits": pa.FixedSizeListArray.from_arrays(flat, logits.shape[1]),
        }
    )
    path.write_with(lambda handle: pq.write_table(table, handle))
