"""Tune trials: overhead per trial of both execution shapes, and trial layouts on 2 cores.

    python benchmarks/bench_tune.py overhead [--root DIR] [--trials 4] [--epochs 2]
    python benchmarks/bench_tune.py layout [--root DIR] [--trials 4]   # needs the laptop dataset

`overhead` (smoke preset, its dataset built under --root first): the same trials — fixed
configurations, one at a time, FIFO — as (a) `ikd.tune.search.trial`, the plain loop in the
trial's process with the splits read once by the driver and shared through the object store,
and (b) `trial_with_ray_train`, Ray Train (1 worker) inside each trial. A trial's overhead is its
share of the Tuner's wall time less the training its run recorded (the `seconds` of its epochs):
start-up, data hand-off, reporting, checkpoints.

`layout` (laptop preset, baseline, full 10-epoch trials): `--trials` trials as 1 trial at a time
with 2 torch threads against 2 concurrent trials with 1 thread each; trials per hour.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

LRS = [1e-4, 2e-4, 3e-4, 5e-4, 7e-4, 1e-3, 1.5e-3, 2e-3]


def _tuner_wall(trainable, shared, resources, trials, concurrent, storage, name) -> float:
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, **shared), resources),
        param_space={"train.lr": tune.grid_search(LRS[:trials])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0),
    )
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(errors[0])
    return wall


def _training_seconds(runs: Path) -> tuple[int, float]:
    """(runs, the seconds their epochs recorded) under a runs folder."""
    from ikd.train.runs import METRICS, read_metrics

    folders = [p.parent for p in runs.rglob(METRICS)]
    return len(folders), sum(m["seconds"] for f in folders for m in read_metrics(f / METRICS))


def overhead(root: Path, trials: int, epochs: int) -> None:

    from ikd.cluster import init_ray
    from ikd.config import load_config
    from ikd.data.dataset import dataset_folder, open_dataset
    from ikd.data.pipeline import build_dataset
    from ikd.train.data import Samples
    from ikd.tune.search import trial, trial_with_ray_train

    common = {
        "data.root": str(root / "datasets"),
        "teacher.source": "trained",
        "train.method": "identitykd",
        "train.epochs": epochs,
        "train.batch_size": 8,
        "train.threads": 1,
    }
    init_ray(2)
    config = load_config("smoke", common, warn=False)
    build_dataset(config, progress=False)
    start = time.perf_counter()
    dataset = open_dataset(dataset_folder(config), config)
    splits = {name: Samples.from_dataset(dataset, name) for name in ("train", "val")}
    read = time.perf_counter() - start
    rows = []
    for shape, trainable, shared, resources in (
        ("plain loop in the trial", trial, {"splits": splits}, {"cpu": 1}),
        ("Ray Train inside the trial", trial_with_ray_train, {}, {"cpu": 0.5}),
    ):
        runs = root / "runs" / shape.split()[0]
        spec = {"preset": "smoke", **common, "train.runs_root": str(runs)}
        shared = {**shared, "spec": spec}
        wall = _tuner_wall(trainable, shared, resources, trials, 1, root / "tune", shape)
        count, training = _training_seconds(runs)
        assert count == trials, (shape, count)
        rows.append((shape, wall / trials, training / trials, (wall - training) / trials))
    print(
        f"smoke preset, identitykd, {epochs} epochs, {trials} trials one at a time; "
        f"the driver read both splits once in {read:.2f} s\n"
    )
    print("| shape | wall per trial (s) | training (s) | overhead per trial (s) |")
    print("|---|---|---|---|")
    for shape, wall, training, extra in rows:
        print(f"| {shape} | {wall:.1f} | {training:.1f} | **{extra:.1f}** |")


def layout(root: Path, trials: int) -> None:

    from ikd.cluster import init_ray
    from ikd.config import load_config
    from ikd.data.dataset import dataset_folder, open_dataset
    from ikd.train.data import Samples
    from ikd.tune.search import trial

    init_ray(2)
    config = load_config("laptop", warn=False)
    dataset = open_dataset(dataset_folder(config), config)
    splits = {name: Samples.from_dataset(dataset, name) for name in ("train", "val")}
    print(f"laptop preset, baseline, {config.train.epochs} epochs, {trials} trials\n")
    print("| layout | wall (s) | trials per hour |\n|---|---|---|")
    for label, threads, concurrent in (
        ("1 trial × 2 threads", 2, 1),
        ("2 trials × 1 thread", 1, 2),
    ):
        spec = {
            "preset": "laptop",
            "train.method": "baseline",
            "train.threads": threads,
            "data.root": str(Path(config.data.root).resolve()),
            "train.runs_root": str(root / "runs" / f"layout-{threads}"),
        }
        shared = {"spec": spec, "splits": splits}
        wall = _tuner_wall(
            trial, shared, {"cpu": threads}, trials, concurrent, root / "tune", label
        )
        print(f"| {label} | {wall:.0f} | {3600 * trials / wall:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("overhead")
    one.add_argument("--root", type=Path, default=Path("bench-tune"))
    one.add_argument("--trials", type=int, default=4)
    one.add_argument("--epochs", type=int, default=2)
    two = sub.add_parser("layout")
    two.add_argument("--root", type=Path, default=Path("bench-tune"))
    two.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = args.root.resolve()
    if args.command == "overhead":
        overhead(root, args.trials, args.epochs)
    else:
        layout(root, args.trials)
    print(json.dumps({"root": str(root)}))


if __name__ == "__main__":
    main()
