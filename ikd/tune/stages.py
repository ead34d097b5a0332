"""A study's stages: `tune` (each tuned variant's trials, its best configuration) and `final`
(each variant's best configuration × seeds, test read once at the end of each final run).

    run_study("studies/table3_methods.py", preset="laptop", stages=("tune", "final"),
              results_root=Path("results").resolve())

Both stages are idempotent: a finished trial or final run is a finished run folder and is not
trained again; re-running a stage continues where it stopped. Run folders are the truth:
`best_config.json` is derived from the tuning runs' records (the best finished trial by its last
epoch's `val/acc`), and another study reading it (`Variant.tuned_in`) tunes that study first if
it is absent. The dataset is built if missing and its train and val splits are read once, then
shared with every trial and final run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ikd.cluster import cluster_cpus, init_ray
from ikd.config import load_config
from ikd.data.dataset import dataset_folder, finished_manifest, open_dataset
from ikd.errors import UserError
from ikd.files import read_json, write_json
from ikd.train.data import Samples
from ikd.train.driver import SPLITS, train_driver
from ikd.tune.search import METRIC, trial_history, tune_variant
from ikd.tune.study import Study, Variant, load_study

log = logging.getLogger(__name__)

BEST_CONFIG = "best_config.json"
STAGES = ("tune", "final")


class StudyRun:
    """One study on one preset: its base run spec, shared splits and folders."""

    def __init__(
        self,
        path: Path,
        *,
        preset: str,
        overrides: Mapping[str, Any],
        results_root: Path,
        quick: bool = False,
    ) -> None:
        self.path = Path(path).resolve()
        self.study: Study = load_study(self.path, preset)
        self.preset, self.overrides, self.quick = preset, dict(overrides), quick
        self.results = Path(results_root).resolve() / self.study.name
        config = load_config(preset, self.overrides, warn=False)
        # Trials change their working directory: every root is absolute from here on.
        roots = {
            "data.root": str(Path(config.data.root).resolve()),
            "train.runs_root": str(Path(config.train.runs_root).resolve()),
        }
        self.config = load_config(preset, {**self.overrides, **roots}, warn=False)
        self.spec = {"preset": preset, "study": self.study.name, **self.overrides, **roots}
        self.runs = Path(roots["train.runs_root"]) / self.study.name
        self._splits: dict[str, Samples] | None = None

    @property
    def trials(self) -> int:
        return self.study.test_trials if self.quick else self.study.trials

    @property
    def seeds(self) -> int:
        return self.study.test_seeds if self.quick else self.study.seeds

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The study's variants (a quick run keeps its `test_variants`, if it names any)."""
        keep = self.study.test_variants if self.quick else ()
        return tuple(v for v in self.study.variants if not keep or v.name in keep)

    def splits(self) -> dict[str, Samples]:
        """The train and val splits, read once (the dataset is built first if missing)."""
        if self._splits is None:
            folder = dataset_folder(self.config)
            if finished_manifest(folder) is None:
                from ikd.data.pipeline import build_dataset

                log.info("%s: no finished dataset at %s; building it", self.study.name, folder)
                build_dataset(self.config)
            dataset = open_dataset(folder, self.config)
            self._splits = {name: Samples.from_dataset(dataset, name) for name in SPLITS}
        return self._splits

    # -- tune -----------------------------------------------------------------------------------

    def tune(self) -> dict[str, Any]:
        """Tune every variant that declares a space; write and return best_config.json."""
        init_ray()
        for variant in self.variants:
            if variant.space:
                log.info(
                    "%s: tuning %s (%d trials over %s)",
                    self.study.name,
                    variant.name,
                    self.trials,
                    ", ".join(variant.space),
                )
                tune_variant(
                    {**self.spec, **self.base_overrides(variant), "variant": variant.name},
                    variant.space,
                    trials=self.trials,
                    storage=str(self.runs / "tune-experiments"),
                    name=variant.name,
                    splits=self.splits(),
                    epochs=self.config.train.epochs,
                    threads=self.config.train.threads or _threads(),
                )
        best = {variant.name: self._best(variant) for variant in self.variants if variant.space}
        self.results.mkdir(parents=True, exist_ok=True)
        write_json(self.results / BEST_CONFIG, best)
        return best

    def _best(self, variant: Variant) -> dict[str, Any]:
        """The best complete tuning run of a variant, by its last epoch's val/acc."""
        complete = [
            t
            for t in trial_history(self.runs / "tune", variant.name, variant.space)
            if t.status == "complete" and t.values
        ]
        if not complete:
            raise UserError(f"{self.study.name}: no finished tuning run of {variant.name!r}")
        best = max(complete, key=lambda t: (t.values[-1], t.folder.name))
        return {
            "overrides": best.params,
            METRIC: best.values[-1],
            "run": best.folder.name,
            "finished": len(complete),
        }

    # -- final ----------------------------------------------------------------------------------

    def base_overrides(self, variant: Variant) -> dict[str, Any]:
        """A variant's overrides before its own tuning: another study's tuned configuration
        (tuned first if absent), then the variant's own."""
        base: dict[str, Any] = {}
        if variant.tuned_in is not None:
            study, name = variant.tuned_in
            base = tuned_configuration(
                self.path.parent / f"{study}.py",
                name,
                preset=self.preset,
                overrides=self.overrides,
                results_root=self.results.parent,
                quick=self.quick,
            )
        return {**base, **variant.overrides}

    def final_overrides(self, variant: Variant) -> dict[str, Any]:
        """A variant's final configuration: its base overrides and, if tuned here, its best."""
        overrides = self.base_overrides(variant)
        if variant.space:
            best = read_json(self.results / BEST_CONFIG) or {}
            if variant.name not in best:
                best = self.tune()
            overrides.update(best[variant.name]["overrides"])
        return overrides

    def final(self) -> list[Path]:
        """Every variant's final configuration × seeds, each run evaluated on test once."""
        done = []
        for variant in (v for v in self.variants if v.final):
            overrides = self.final_overrides(variant)
            for seed in range(self.seeds):
                log.info("%s: final %s, seed %d", self.study.name, variant.name, seed)
                done.append(
                    train_driver(
                        {
                            **self.spec,
                            **overrides,
                            "train.seed": seed,
                            "variant": variant.name,
                            "stage": "final",
                            "loop": "plain",
                            "test": True,
                            "progress": False,
                            "splits": self.splits(),
                        }
                    )
                )
        return done


def tuned_configuration(
    path: Path,
    variant: str,
    *,
    preset: str,
    overrides: Mapping[str, Any],
    results_root: Path,
    quick: bool,
) -> dict[str, Any]:
    """Another study's tuned configuration of one variant (its overrides and its best), read
    from that study's best_config.json — tuning that study first if the file is absent."""
    other = StudyRun(
        path, preset=preset, overrides=overrides, results_root=results_root, quick=quick
    )
    names = {v.name: v for v in other.study.variants}
    if variant not in names:
        raise UserError(f"{path}: no variant {variant!r} (it has {list(names)})")
    return other.final_overrides(names[variant])


def run_study(
    path: str | Path,
    *,
    preset: str,
    overrides: Mapping[str, Any] | None = None,
    stages: Sequence[str] = STAGES,
    results_root: Path,
    quick: bool = False,
) -> StudyRun:
    """Run a study's stages in order (each idempotent); returns the study run."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise UserError(f"unknown stage(s) {sorted(unknown)}; choose from {list(STAGES)}")
    run = StudyRun(
        path, preset=preset, overrides=overrides or {}, results_root=results_root, quick=quick
    )
    for stage in STAGES:
        if stage in stages:
            getattr(run, stage)()
    return run


def _threads() -> int:
    """Torch threads per trial: one trial at a time with every CPU of the cluster (measured
    faster than concurrent one-thread trials on 2 cores: benchmarks/README.md, "Tune trials")."""
    return cluster_cpus()
