"""Run folders: names, records, checkpoints — what the plain loop, Ray Train and Tune share.

A run folder `<runs_root>/<study>/<stage>/<variant>-<run hash>-seed<seed>` (no timestamps) holds
`config.json` (the resolved config), `run.json` (status, loop, dataset and teacher provenance),
`metrics.jsonl` (a line per epoch), the last two checkpoints (`checkpoints/epoch-NNNN/` in-process,
`ray/checkpoint_*/` under Ray Train; each `state.pt` + `epoch.json`), and `test.json`, written
once, only when test is asked for. The run driver's dict resolves here to its options, config
and folder (`RunOptions`, `split_spec`, `resolve_run`): without torch, which a report reading
records (`ikd report`) never imports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ikd.config import CONFIG, LOOPS, STAGES, Config, apply_overrides, digest, load_config, suggest
from ikd.errors import ConfigError, UserError
from ikd.method_params import PARAMS
from ikd.provenance import REPOSITORY, REPOSITORY_MARK, git_sha
from ikd.storage import Location, local, location, portable, read_json, write_json

if TYPE_CHECKING:
    from ikd.data.dataset import BuiltDataset
    from ikd.train.data import Samples

RUN, METRICS, TEST = "run.json", "metrics.jsonl", "test.json"
TEST_PREDICTIONS = "test_predictions.parquet"  # a final run's per-window test logits
METRIC = "val/acc"  # what tuning maximises and reports rank by: the evaluated model's val acc
STOPPED = "stopped.json"  # in a tuning run's folder: ASHA stopped it (a resumed study keeps it so)
CHECKPOINTS, STATE, EPOCH = "checkpoints", "state.pt", "epoch.json"
RAY_STORAGE = "ray"  # the run folder's subfolder where Ray Train keeps its checkpoints
KEEP_CHECKPOINTS = 2
DATA_MARK = "<data>"  # run.json's dataset: relative to data.root, which each machine sets


class Reporter(Protocol):
    """Where epochs go: every epoch's metrics with a checkpoint, and the latest one back."""

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None: ...

    def latest(self) -> dict[str, Any] | None: ...


class LocalCheckpoints:
    """The plain loop's reporter: `checkpoints/epoch-NNNN/state.pt`, the last two kept."""

    def __init__(self, run_dir: Location, keep: int = KEEP_CHECKPOINTS) -> None:
        self.folder = run_dir / CHECKPOINTS
        self.keep = keep

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            return
        target = self.folder / f"epoch-{metrics['epoch']:04d}"
        target.remove()  # what a killed writer left (no epoch.json: never restored from)
        write_state(state, target)
        for old in sorted(checkpoint_folders(self.folder, "epoch-*"))[: -self.keep]:
            old.remove()

    def latest(self) -> dict[str, Any] | None:
        done = sorted(checkpoint_folders(self.folder, "epoch-*"))
        return load_state(done[-1]) if done else None


def write_state(state: dict[str, Any], folder: str | os.PathLike | Location, **mark: Any) -> None:
    """A checkpoint folder: state.pt, then epoch.json — the mark that the folder is complete
    (written last, whole), which also finds the newest without loading it."""
    from ikd.models.weights import write_torch

    folder = location(folder)
    write_torch(folder / STATE, state)
    write_json(folder / EPOCH, {"epoch": state["epoch"], **mark})


def checkpoint_folders(folder: Location, pattern: str) -> list[Location]:
    """Complete checkpoint folders matching `pattern` in `folder`."""
    return [p for p in folder.glob(pattern) if (p / EPOCH).exists()]


def checkpoint_epoch(folder: Location) -> int:
    return read_json(folder / EPOCH)["epoch"]


def load_state(folder: str | os.PathLike | Location) -> dict[str, Any]:
    from ikd.models.weights import read_torch

    return read_torch(location(folder) / STATE, weights_only=False)


def variant_name(config: Config) -> str:
    """The default variant: the method, plus the student when it is not the paper's resnet18 (a
    builder's `module:function` as `module.function`: no colon in a folder's name)."""
    student = config.train.student.replace(":", ".")
    return config.train.method if student == "resnet18" else f"{config.train.method}-{student}"


def run_hash(config: Config) -> str:
    """Hash of what a run's results depend on, and nothing else: the chosen method's section
    (not the other methods'), the version of its code, the training settings (student included;
    not where runs live, the seed, threads or how often it checkpoints) and the dataset's
    identity (its data hash).

    Runs of one variant with different seeds share it (the seed is in the run's name). Changing
    another method's setting leaves it alone; bumping the method's `version` changes it, so a
    resumed study never reuses a run of the method's older code. The whole section counts, also
    settings this run leaves idle (`fawa_decay` with `fawa` off, eq. 14's keys in plain vanilla
    KD): two such configs train twice, never share one run — the safe side of "nothing else".
    """
    method = config.train.method
    train = {
        key: value
        for key, value in dataclasses.asdict(config.train).items()
        if key not in ("runs_root", "seed", "threads", "checkpoint_every_s")
        and not (key == "weight_decay" and value == 0)  # runs from before it: their names
    }
    return digest(
        {
            "method": {"name": method, "version": PARAMS[method].version},
            method: dataclasses.asdict(config.method_params()),
            "train": train,
            "data_hash": config.data_hash(),
        }
    )


def run_folder(
    config: Config, study: str = "train", stage: str = "final", variant: str | None = None
) -> Location:
    """<runs_root>/<study>/<stage>/<variant>-<run hash>-seed<seed>, absolute (a path or a URI,
    `ikd.storage`); no timestamps."""
    name = f"{variant or variant_name(config)}-{run_hash(config)}-seed{config.train.seed}"
    return location(config.train.runs_root) / study / stage / name


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


def prepare_run(
    config: Config, dataset: BuiltDataset, run_dir: Location, loop: str, stage: str
) -> dict[str, Any]:
    """Write config.json and run.json; refuse to resume a run whose dataset (teacher included)
    has changed since it started, or that was started by the other loop. Returns the run record
    (a finished run's own)."""
    import torch

    record = {
        "status": "running",
        "run_hash": run_hash(config),
        "seed": config.train.seed,
        "method": config.train.method,
        "method_version": PARAMS[config.train.method].version,
        "student": config.train.student,
        "stage": stage,  # "tune" runs never read the test split
        "loop": loop,  # "ray" or "plain": their checkpoints live in different folders
        "workers": config.train.workers,
        "dataset": portable(str(dataset.folder), {DATA_MARK: config.data.root}),
        "data_hash": dataset.data_hash,
        "synthetic": dataset.synthetic,
        "teacher": dataset.teacher,
        "num_identities": dataset.num_identities,
        "shapes": dataset.manifest["shapes"],
        "versions": {"torch": torch.__version__},
        "git": git_sha(),
    }
    previous = read_json(run_dir / RUN)
    if previous is not None and not same_teacher(previous.get("teacher"), dataset.teacher):
        raise UserError(
            f"{run_dir} was trained against another teacher ({previous['teacher'].get('source')}, "
            f"{previous['teacher'].get('backbone_sha256', '')[:12]}) than {dataset.folder} now "
            "holds; delete the run folder to start it again"
        )
    if previous is not None and previous.get("status") == "running" and previous["loop"] != loop:
        ray = previous["loop"] == "ray"
        raise UserError(
            f"{run_dir} was started {'with' if ray else 'without'} Ray; resume it the same way "
            f"(loop={previous['loop']}: {'drop' if ray else 'add'} --no-ray)"
        )
    if previous is not None and previous.get("status") == "diverged":
        raise DivergedError(run_dir)
    if previous is not None and previous.get("status") == "complete":
        return previous
    # where each start of it trained: the node, and the epoch it (re)started from
    start = {**this_node(), "from_epoch": resume_epoch(run_dir)}
    record["trained_on"] = [*(previous or {}).get("trained_on", []), start]
    write_json(run_dir / CONFIG, portable_config(config))
    write_json(run_dir / RUN, record)
    return record


def this_node() -> dict[str, Any]:
    """The Ray node this process runs on (its id; None outside Ray) and the machine's name."""
    ray = sys.modules.get("ray")  # the Ray layer is not imported for a run without it
    node = ray.get_runtime_context().get_node_id() if ray and ray.is_initialized() else None
    return {"node_id": node, "hostname": socket.gethostname()}


def portable_config(config: Config) -> dict[str, Any]:
    """A run's config.json: the resolved config, its roots inside the repository written as
    `<repo>/…` (a clone elsewhere reads them there: `local_config`)."""
    saved = config.to_dict()
    roots = {REPOSITORY_MARK: REPOSITORY}
    saved["data"]["root"] = portable(saved["data"]["root"], roots)
    saved["train"]["runs_root"] = portable(saved["train"]["runs_root"], roots)
    return saved


def local_config(saved: dict[str, Any], run_dir: Location) -> Config:
    """A run's config.json as a Config on this machine: its runs root is where the folder lies
    now, its data root resolved (`<repo>/…`) — or, where an old record's is not here, the
    default data root, as a study record's is (`StudyRun.from_record`)."""
    saved = {**saved, "data": dict(saved["data"]), "train": dict(saved["train"])}
    root = local(saved["data"]["root"], {REPOSITORY_MARK: REPOSITORY})
    if "://" not in root and not Path(root).is_dir():
        root = Config().data.root
    saved["data"]["root"] = root
    saved["train"]["runs_root"] = str(run_dir.parent.parent.parent)
    return Config.from_dict(saved)


def same_teacher(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two teacher records (`TeacherInfo` as a dict) name the same weights."""
    keys = ("backbone_sha256", "classifier_sha256")
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in keys)


def run_dataset(record: dict[str, Any], config: Config) -> Location:
    """The dataset a run was trained on: its record's folder (`<data>/…` resolved against this
    config's data root); for an old record whose absolute path is not on this machine, the
    config's own dataset folder (`open_dataset` then checks it is the one)."""
    from ikd.data.dataset import dataset_folder

    folder = location(local(record["dataset"], {DATA_MARK: config.data.root}))
    return folder if folder.exists() else dataset_folder(config)


def read_metrics(path: str | os.PathLike | Location) -> list[dict[str, Any]]:
    """A metrics.jsonl's epoch lines (none when absent; a line cut short by a kill is skipped)."""
    lines = []
    for line in (location(path).read_bytes_if_any() or b"").decode().splitlines():
        try:
            metrics = json.loads(line)
        except ValueError:
            continue
        if isinstance(metrics, dict) and "epoch" in metrics:
            lines.append(metrics)
    return lines


def write_metrics(path: Location, lines: list[dict[str, Any]]) -> None:
    """metrics.jsonl written whole (object stores have no append): a line per epoch."""
    path.write_text("".join(json.dumps(metrics) + "\n" for metrics in lines))


def run_status(run_dir: Location, record: dict[str, Any] | None = None) -> str:
    """How a run ended: "complete", "diverged", "stopped" (by ASHA, `stopped.json`), or
    "interrupted" (still "running" in its record: a killed driver's); "missing" without a
    record."""
    record = read_json(run_dir / RUN) if record is None else record
    status = (record or {}).get("status", "missing")
    if status == "running":
        return "stopped" if (run_dir / STOPPED).exists() else "interrupted"
    return status


def set_status(run_dir: Location, status: str, **fields: Any) -> None:
    record = read_json(run_dir / RUN) or {}
    write_json(run_dir / RUN, {**record, "status": status, **fields})


class DivergedError(UserError):
    """A run stopped itself on a non-finite loss (run.json says where)."""

    def __init__(self, run_dir: Location) -> None:
        record = read_json(run_dir / RUN) or {}
        super().__init__(f"{run_dir}: {record.get('diverged', {}).get('reason', 'diverged')}")


def run_checkpoints(run_dir: Location) -> list[Location]:
    """A run's checkpoint folders, whichever loop (plain or Ray) wrote them."""
    return checkpoint_folders(run_dir / CHECKPOINTS, "epoch-*") + checkpoint_folders(
        run_dir / RAY_STORAGE, "checkpoint_*"
    )


def drop_checkpoints(run_dir: Location) -> None:
    """Remove every checkpoint of a run that never resumes (a finished or stopped tuning run):
    ~135 MB each for resnet18 with Adam's state would only fill the disk over a study."""
    (run_dir / CHECKPOINTS).remove()
    (run_dir / RAY_STORAGE).remove()


def resume_epoch(run_dir: Location) -> int:
    """The epoch a (re)started run trains first: one past its newest complete checkpoint's (the
    metric lines can run past it when checkpoints come at an interval)."""
    done = run_checkpoints(run_dir)
    return max(map(checkpoint_epoch, done)) + 1 if done else 0


def latest_checkpoint(run_dir: Location) -> dict[str, Any]:
    """The newest checkpoint of a run, whichever loop (plain or Ray) wrote it."""
    candidates = run_checkpoints(run_dir)
    if not candidates:
        raise UserError(f"{run_dir}: no checkpoint (is it a run folder of `ikd train`?)")
    return load_state(max(candidates, key=checkpoint_epoch))


def keep_model_only(run_dir: Location) -> None:
    """A finished run never resumes: keep its newest checkpoint's model (what `ikd eval` and an
    export load) without the optimizer's and scheduler's state, and drop the older ones — a
    study's final runs would otherwise keep ~270 MB each for resnet18."""
    candidates = run_checkpoints(run_dir)
    if not candidates:
        return
    newest = max(candidates, key=checkpoint_epoch)
    if not read_json(newest / EPOCH).get("model_only"):
        state = load_state(newest)  # each file is rewritten whole: a kill leaves a loadable one
        write_state({"method": state["method"], "epoch": state["epoch"]}, newest, model_only=True)
    for old in candidates:
        if old != newest:
            old.remove()
