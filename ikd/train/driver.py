"""The run driver: one run from a plain dict — what the CLI, a Ray Tune trainable and tests call.

    from ikd.train.driver import train_driver
    run_dir = train_driver({"preset": "smoke", "loop": "plain", "train.method": "baseline"})

The dict has Ray's `train_driver_fn(config: dict)` shape: dotted config overrides (any key with a
dot, e.g. ``"identitykd.tau": 0.1`` or ``"train.epochs": "3"``) beside the options that are not
config keys (`RunOptions`). The driver resolves the config and the dataset, names and prepares the
run folder, trains in this process or with Ray Train, stops on divergence, and evaluates the test
split once when asked. A finished run is not trained again; an interrupted one resumes from its
last checkpoint, the same way it started.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ikd.config import CONFIG, LOOPS, STAGES, Config, apply_overrides, load_config, suggest
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
    TEST,
    TEST_PREDICTIONS,
    DivergedError,
    LocalCheckpoints,
    Reporter,
    latest_checkpoint,
    local_config,
    prepare_run,
    read_metrics,
    run_dataset,
    run_folder,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What a run needs besides its config (the keys of the driver's dict without a dot)."""

    preset: str = "laptop"  # sizes (ikd.config.PRESETS)
    study: str = "train"  # run folder group: <runs_root>/<study>/<stage>/…
    variant: str | None = None  # name in the run folder (default: method[-student])
    stage: str = "final"  # "tune", "reeval" (val only; the test split is refused) or "final"
    dataset: str | None = None  # a built dataset folder (default: the config's)
    test: bool = False  # evaluate the test split once when trained (final stage only)
    loop: str = "ray"  # "ray": Ray Train workers (train.workers); "plain": this process
    progress: bool = True  # progress bars
    max_failures: int = 3  # Ray Train restarts of a dead worker
    # The plain loop hands every epoch's metrics here, in order, once its checkpoint is written
    # (a Tune function trainable passes `ray.tune.report`); epochs a resumed or finished run has
    # already trained are replayed from its metrics.jsonl first.
    on_epoch: Callable[[dict[str, Any]], None] | None = None
    # The train and val splits already in memory (loop=plain): a study reads them once and hands
    # them to every trial through Ray's object store instead of each trial re-reading Parquet.
    splits: Mapping[str, Samples] | None = None
    fail_at_epochs: tuple[int, ...] = ()  # test hook: the last rank dies once after each

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage={self.stage!r}; choose from {list(STAGES)}")
        if self.loop not in LOOPS:
            raise ConfigError(f"loop={self.loop!r}; choose from {list(LOOPS)}")
        if self.test and self.stage != "final":
            raise ConfigError(
                f"a tuning run never reads the test split (stage={self.stage} with test)"
            )
        if self.on_epoch is not None and self.loop != "plain":
            raise ConfigError(
                "on_epoch is for loop=plain (under Ray Train, a Tune trial hooks into the "
                "trainer's own reports)"
            )
        if self.fail_at_epochs and self.loop != "ray":
            raise ConfigError("fail_at_epochs is a Ray Train test hook (loop=ray)")
        if self.splits is not None and (self.loop != "plain" or set(self.splits) != SPLITS):
            raise ConfigError(f"splits are for loop=plain and hold {sorted(SPLITS)}")


def split_spec(spec: Mapping[str, Any]) -> tuple[RunOptions, dict[str, Any]]:
    """The driver's dict → (options, dotted config overrides); an unknown option raises naming
    the nearest valid one."""
    names = [f.name for f in dataclasses.fields(RunOptions)]
    options = {key: value for key, value in spec.items() if "." not in key}
    for key in options:
        if key not in names:
            raise ConfigError(
                f"unknown run option {key!r}{suggest(key, names)} (config keys have a dot)"
            )
    return RunOptions(**options), {key: value for key, value in spec.items() if "." in key}


SPLITS = {"train", "val"}  # what training reads; the test split is a final run's alone


def resolve_run(spec: Mapping[str, Any]) -> tuple[RunOptions, Config, Location]:
    """The driver's dict → (options, the run's resolved config, its run folder), without
    touching the dataset or the folder.

    Remembered for a dict of plain values whose roots are local folders (a report resolves each
    tuning run's folder once per variant it reads, thousands of times): the key holds what the
    result depends on besides the dict, the working directory and $HOME (relative and `~`
    roots; the methods' code versions are fixed in a process). An object store's root is
    resolved each time (its filesystem reads the environment's endpoint and credentials)."""
    if not all(type(v) in _PLAIN and "://" not in str(v) for v in spec.values()):
        return _resolve(spec)
    # repr: 1, 1.0 and True, or 0.0 and -0.0, resolve differently
    key = (os.getcwd(), os.environ.get("HOME"), frozenset((k, repr(v)) for k, v in spec.items()))
    resolved = _RESOLVED.get(key)
    if resolved is None:
        if len(_RESOLVED) >= 4096:
            _RESOLVED.clear()
        resolved = _RESOLVED[key] = _resolve(spec)
    return resolved


_PLAIN = (str, int, float, bool, type(None))
_RESOLVED: dict[tuple, tuple[RunOptions, Config, Location]] = {}


def _resolve(spec: Mapping[str, Any]) -> tuple[RunOptions, Config, Location]:
    options, overrides = split_spec(spec)
    config = load_config(options.preset, overrides, warn=False)
    if options.loop == "plain":
        config = apply_overrides(config, {"train.workers": 1})
    return options, config, run_folder(config, options.study, options.stage, options.variant)


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
