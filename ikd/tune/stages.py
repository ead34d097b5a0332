"""A study's stages: `tune` (each tuned variant's trials, its best configuration), `final`
(each variant's best configuration × seeds, test read once at the end of each final run) and
`report` (the results folder rendered from the run records, `ikd.report.render`).

    run_study("studies/table3_methods.py", preset="laptop", stages=STAGES,
              results_root=Path("results").resolve())

Every stage is idempotent: a finished trial or final run is a finished run folder and is not
trained again; re-running a stage continues where it stopped. `<results>/<study>/study.json`
records how the study was run (preset, overrides, storage, commands, wall time per stage), so
`ikd report` re-renders it from its records alone. Run folders are the truth:
`best_config.json` is derived from the tuning runs' records (the best finished trial by its last
epoch's `val/acc`), and another study reading a variant's (`Variant.tuned_in`) tunes that
variant first if it is absent (that variant alone: Table 5 does not wait for Table 3's
baselines). The dataset is built if missing and its train and val splits are read once, then
shared with every trial and final run.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ikd.config import apply_overrides, load_config
from ikd.data.dataset import BuiltDataset, dataset_folder, finished_manifest, open_dataset
from ikd.errors import UserError, raise_if_stopped
from ikd.provenance import REPOSITORY, REPOSITORY_MARK, git_sha, hardware, versions
from ikd.report.records import RunRecord, read_run
from ikd.report.render import PROVENANCE, RUNS_TABLE, runs_table
from ikd.report.stats import pick_by_mean
from ikd.space import inside, values_of
from ikd.storage import (
    Location,
    absolute,
    local,
    location,
    portable,
    read_json,
    sha256_file,
    staged,
    write_json,
)
from ikd.study import Figure, Study, Table, Variant, load_study
from ikd.train.runs import (
    RUN,
    SPLITS,
    DivergedError,
    drop_checkpoints,
    keep_model_only,
    resolve_run,
)
from ikd.tune.trials import (
    ASHA_REDUCTION,
    METRIC,
    TPE_STARTUP,
    asha_grace,
    trial_history,
    tuning_folder,
    unchanging,
)

if TYPE_CHECKING:  # the torch layer, imported where a study trains: `ikd report` needs no torch
    from ikd.train.data import Samples

log = logging.getLogger(__name__)

BEST_CONFIG = "best_config.json"
STUDY_RECORD = "study.json"  # in <results>/<study>/: how the study was run
RUNS = "runs"  # <results>/runs/<study>/{tune,final}/…: a study's run folders by default
RESULTS_MARK = "<results>"  # study.json's paths inside the results root start with it
_INNER: list[float] = []  # per stage running in this process, outermost first: nested seconds
STAGES = ("tune", "final", "report")
REEVAL = "reeval"  # the run stage of a tuned variant's best trials trained with more seeds
# Their seeds start here, where no final run's do: the final runs' test ACC is not picked on
# their own seeds' val luck.
REEVAL_SEED = 1000


class NotTunedError(UserError):
    """A variant's tuned configuration is not there yet (and the caller may not tune)."""


class StudyRun:
    """One study on one preset: its base run spec, shared splits and folders."""

    def __init__(
        self,
        path: Path,
        *,
        preset: str,
        overrides: Mapping[str, Any],
        results_root: str | Path | Location,
        quick: bool = False,
        storage: str | None = None,
        optuna_storage: str | None = None,
    ) -> None:
        self.path = Path(path).resolve()
        self.study: Study = load_study(self.path, preset)
        self.preset, self.quick = preset, quick
        self.overrides = dict(overrides)
        if quick:  # the study file's test epochs, unless the command sets them
            self.overrides.setdefault("train.epochs", self.study.test_epochs)
        self.results = location(results_root) / self.study.name  # a folder or an object store's
        if storage is None and "train.runs_root" not in self.overrides:
            storage = str(self.results.parent / RUNS)  # a study's runs live with its results
        if storage is not None:
            self.overrides["train.runs_root"] = storage
        self.storage, self.optuna_storage = storage, optuna_storage
        # the study's own overrides (a second population) over the command's; the command's
        # alone are what a `tuned_in` configuration is read with, where its study ran
        own = {**self.overrides, **self.study.overrides}
        config = load_config(preset, own, warn=False)
        if config.data.captures and self.study.resamples_population:
            raise UserError(
                f"{self.study.name}: it trains on another synthetic population "
                f"({self.study.overrides}); with data.captures set there is none to draw"
            )
        # Trials change their working directory: every root is absolute (or a URI) from here on.
        roots = {
            "data.root": absolute(config.data.root),
            "train.runs_root": absolute(config.train.runs_root),
        }
        self.config = load_config(preset, {**own, **roots}, warn=False)
        # One-worker trials, re-evaluations and final runs train in the process that runs them
        # (a trial's, a task's or this one: `train_runs`); more workers per trial
        # (resources.workers_per_trial) train with Ray Train from there.
        workers = self.config.resources.workers_per_trial
        self.loop = "plain" if workers == 1 else "ray"
        self.spec = {"preset": preset, "study": self.study.name, **own, **roots,
                     "loop": self.loop, **({"train.workers": workers} if workers > 1 else {})}  # fmt: skip
        self.runs = location(roots["train.runs_root"]) / self.study.name
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

    def dataset(self) -> BuiltDataset:
        """The study's dataset, built first if missing."""
        folder = dataset_folder(self.config)
        if finished_manifest(folder) is None:
            from ikd.data.pipeline import build_dataset

            log.info("%s: no finished dataset at %s; building it", self.study.name, folder)
            build_dataset(self.config)
        return open_dataset(folder, self.config)

    def splits(self) -> dict[str, Samples] | None:
        """The train and val splits, read once to share with every trial and final run; None
        where each run reads them from the storage itself (`resources.data`, and always for Ray
        Train runs)."""
        if self._splits is None:
            dataset = self.dataset()
            if self.loop == "ray" or dataset.reads_from_storage(self.config.resources.data):
                log.info("%s: each run reads its data from %s", self.study.name, dataset.folder)
                self._splits = {}
            else:
                from ikd.train.data import Samples

                self._splits = {name: Samples.from_dataset(dataset, name) for name in SPLITS}
        return self._splits or None

    # -- tune -----------------------------------------------------------------------------------

    def tune(self, only: str | None = None) -> dict[str, Any]:
        """Tune every variant that declares a space (`only`: that variant alone, as another
        study reading its configuration asks); write and return best_config.json, which names
        every variant tuned so far."""
        from ikd.cluster import init_ray, trial_shape
        from ikd.tune.search import tune_variant

        if only is not None and only not in {v.name for v in self.variants}:
            raise UserError(f"{self.study.name}: no variant {only!r} to tune in this run")
        init_ray()
        resources, threads = trial_shape(self.config)
        for variant in self.variants:
            if variant.space and only in (None, variant.name):
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
                    storage=self.runs / "tune-experiments",
                    name=variant.name,
                    splits=self.splits(),
                    epochs=self.config.train.epochs,
                    resources=resources,
                    threads=threads,
                    concurrent=self.config.resources.concurrent_trials,
                    optuna_storage=self.optuna_storage,
                    first=self.start_point(variant),
                    asha=self.study.asha,
                )
                self.reevaluate(variant)
        kept = {} if only is None else read_json(self.results / BEST_CONFIG) or {}
        best = {
            variant.name: self._best(variant)
            if only in (None, variant.name)
            else kept[variant.name]
            for variant in self.variants
            if variant.space and (only in (None, variant.name) or variant.name in kept)
        }
        write_json(self.results / BEST_CONFIG, best)
        return best

    def start_point(self, variant: Variant, tune: bool = True) -> dict[str, Any] | None:
        """The first trial of a variant's search: the values of its space in the configuration
        it starts from (`tuned_in`), when they lie in the space; None for a variant tuned from
        the defaults. (`tune=False`: `NotTunedError` where that configuration is not tuned.)"""
        if variant.tuned_in is None:
            return None
        config = apply_overrides(self.config, self.base_overrides(variant, tune)).to_dict()
        point = values_of(variant.space, config)
        if not inside(variant.space, point):
            log.warning("%s: %s starts outside its space (%s); its search starts at random",
                        self.study.name, variant.name, point)  # fmt: skip
            return None
        return point

    def tuning_spec(self, variant: Variant) -> dict[str, Any]:
        """The run driver's dict a variant's trials start from (their parameters on top)."""
        return {**self.spec, **self.base_overrides(variant, tune=False), "variant": variant.name}

    def trials_of(self, variant: Variant) -> list:
        """The variant's tuning runs (`ikd.tune.trials.Trial`), this study's own only."""
        return trial_history(
            self.runs / "tune", variant.name, variant.space, self.tuning_spec(variant)
        )

    def _best(self, variant: Variant) -> dict[str, Any]:
        """A variant's configuration: of its best complete tuning runs by their last epoch's
        val/acc, the one with the best mean val/acc over its seeds (the tuning run's and its
        re-evaluations', `reevaluate`); the single-seed pick is recorded beside it."""
        ranked = self._ranked(variant)
        if not ranked:
            raise UserError(f"{self.study.name}: no finished tuning run of {variant.name!r}")
        start = self._start_trial(variant)
        if start is not None and start not in {t.folder.name for t in ranked}:
            log.warning("%s: %s's first trial, the configuration its search starts from, did not "
                        "complete (stopped early or diverged): its pick may fall below that "
                        "configuration", self.study.name, variant.name)  # fmt: skip
        scores = self.reevaluated(variant, ranked)
        name = pick_by_mean(scores)
        best = next(t for t in ranked if t.folder.name == name)
        return {
            "overrides": best.params,
            METRIC: sum(scores[name]) / len(scores[name]),
            "run": name,
            "finished": len(ranked),
            "seeds": len(scores[name]),
            "reevaluated": scores,  # run → val/acc of each seed, the tuning run's first
            "single_seed_pick": ranked[0].folder.name,
        }

    def reevaluated(self, variant: Variant, ranked: list | None = None) -> dict[str, list[float]]:
        """The val/acc of each seed of the variant's re-evaluated trials, the tuning run's first
        (the finished seeds only), by tuning run."""
        scores = {}
        for trial, specs in self._reevaluation_specs(variant, ranked):
            values = [trial.values[-1], *(self._val_acc(spec) for spec in specs)]
            scores[trial.folder.name] = [v for v in values if v is not None]
        return scores

    def _reevaluated(self) -> dict[str, dict[str, list[float]]]:
        """`reevaluated` of every tuned variant that has finished tuning runs."""
        scores = {}
        for variant in (v for v in self.variants if v.space):
            try:
                scores[variant.name] = self.reevaluated(variant)
            except NotTunedError:  # the configuration it starts from is not tuned yet
                continue
        return scores

    def _ranked(self, variant: Variant) -> list:
        """The variant's complete tuning runs, best last-epoch val/acc first."""
        complete = [t for t in self.trials_of(variant) if t.status == "complete" and t.values]
        return sorted(complete, key=lambda t: (t.values[-1], t.folder.name), reverse=True)

    def _reevaluation_specs(self, variant: Variant, ranked: list | None = None) -> list:
        """(trial, the run driver's dicts of its re-evaluations (stage "reeval": val only, all
        epochs, no ASHA; seeds from REEVAL_SEED), for the variant's best complete trials
        (the best one alone, with none, when the study re-evaluates nothing) — and its first
        trial, the configuration it started from (`start_point`), wherever that ranks: the pick
        is then never below it on the same seeds."""
        ranked = self._ranked(variant) if ranked is None else ranked
        top, seeds = self.study.reevaluation(self.quick)
        first = REEVAL_SEED + self.config.train.seed
        chosen = ranked[: max(top, 1)]
        start = self._start_trial(variant) if top and seeds else None
        chosen += [t for t in ranked[len(chosen) :] if t.folder.name == start]
        return [
            (
                trial,
                [
                    {
                        **self.tuning_spec(variant),
                        **trial.params,
                        "train.seed": seed,
                        "stage": REEVAL,
                        "progress": False,
                    }
                    for seed in range(first, first + seeds)
                ],
            )
            for trial in chosen
        ]

    def _start_trial(self, variant: Variant) -> str | None:
        """The folder name of the variant's tuning run at its `start_point`; None without one."""
        start = self.start_point(variant, tune=False)
        return None if start is None else tuning_folder({**self.tuning_spec(variant), **start}).name

    def _val_acc(self, spec: Mapping[str, Any]) -> float | None:
        """A finished re-evaluation's last val/acc (0 for a diverged one), None before it ends."""
        run = read_run(resolve_run(spec)[2])
        if run is None or run.status not in ("complete", "diverged"):
            return None
        return run.value(METRIC) if run.status == "complete" else 0.0

    def reevaluations_left(self, variant: Variant) -> list[dict[str, Any]]:
        """The variant's re-evaluation runs not finished yet (their driver dicts)."""
        groups = self._reevaluation_specs(variant)
        return [spec for _, specs in groups for spec in specs if self._val_acc(spec) is None]

    def reevaluate(self, variant: Variant) -> None:
        """Train the variant's best complete trials again with more seeds (`reevaluation`), as
        the final runs train (`train_runs`); a finished one is not trained again."""
        runs = {}
        for spec in self.reevaluations_left(variant):
            name = resolve_run(spec)[2].name
            runs[name] = spec
            log.info("%s: re-evaluating %s (seed %d)", self.study.name, name, spec["train.seed"])
        with contextlib.closing(self.train_runs(runs, drop_checkpoints)) as ended:
            for name, _, diverged in ended:
                if diverged:  # recorded in its run folder; counts as val acc 0
                    log.warning("%s: re-evaluation %s diverged: %s", self.study.name, name,
                                diverged)  # fmt: skip

    def reevaluation_records(self) -> dict[str, list[RunRecord]]:
        """Each tuned variant's re-evaluation runs that exist."""
        records = {}
        for variant in (v for v in self.variants if v.space):
            try:
                specs = [s for _, group in self._reevaluation_specs(variant) for s in group]
            except NotTunedError:
                specs = []
            runs = [read_run(resolve_run(spec)[2]) for spec in specs]
            records[variant.name] = [run for run in runs if run is not None]
        return records

    # -- final ----------------------------------------------------------------------------------

    def base_overrides(self, variant: Variant, tune: bool = True) -> dict[str, Any]:
        """A variant's overrides before its own tuning: another study's tuned configuration
        (tuned first if absent — or, with `tune=False`, `NotTunedError`), then the variant's own."""
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
                tune=tune,
            )
        return {**base, **variant.overrides}

    def final_overrides(self, variant: Variant, tune: bool = True) -> dict[str, Any]:
        """A variant's final configuration: its base overrides and, if tuned here, its best
        (tuned and re-evaluated first if not yet — or, with `tune=False`, `NotTunedError` when
        it has no best; a best recorded before its re-evaluations is read as it is)."""
        overrides = self.base_overrides(variant, tune)
        if variant.space:
            best = self.best(variant)
            if best is None and not tune:
                raise NotTunedError(f"{self.study.name}: {variant.name!r} is not tuned yet")
            if best is None or (tune and self.reevaluations_left(variant)):
                self.run(("tune",), only=variant.name)  # its search and re-evaluations
                best = self.best(variant)
            overrides.update(best["overrides"])
        return overrides

    def best(self, variant: Variant) -> dict[str, Any] | None:
        """A variant's entry of best_config.json — if it names a finished tuning run of this
        study as it is configured now (not one of another preset, budget or older settings)."""
        entry = (read_json(self.results / BEST_CONFIG) or {}).get(variant.name)
        if entry is None:
            return None
        try:
            trials = self.trials_of(variant)
        except NotTunedError:
            return None
        finished = [t for t in trials if t.status == "complete"]
        if entry.get("run") not in {t.folder.name for t in finished} or len(trials) < self.trials:
            log.info("%s: best_config.json's %s is stale; tuning it", self.study.name, variant.name)
            return None
        return entry

    def final_specs(self, variant: Variant, tune: bool = True) -> list[dict[str, Any]]:
        """The run driver's dicts of a variant's final runs, one per seed (its configuration
        resolved once: reading another study's tuned one reads that study's trials)."""
        overrides = self.final_overrides(variant, tune)
        return [
            {
                **self.spec,
                **overrides,
                "train.seed": seed,
                "variant": variant.name,
                "stage": "final",
                "test": True,
                "progress": False,
            }
            for seed in range(self.seeds)
        ]

    def final(self) -> list[Location]:
        """Every variant's final configuration × seeds (`train_runs`), each run evaluated on test
        once; a diverged run is recorded and the others go on."""
        done: dict[tuple[str, int], Location] = {}
        runs, order = {}, []
        for variant in (v for v in self.variants if v.final):
            for seed, spec in enumerate(self.final_specs(variant)):
                order.append((variant.name, seed))
                folder = self.final_folder(spec)
                if folder != resolve_run(spec)[2]:
                    log.info("%s: final %s, seed %d is %s (the same configuration and seed)",
                             self.study.name, variant.name, seed,
                             f"{folder.parent.parent.name}/{folder.name}")  # fmt: skip
                    done[variant.name, seed] = folder
                    continue
                log.info("%s: final %s, seed %d", self.study.name, variant.name, seed)
                runs[variant.name, seed] = spec
        with contextlib.closing(self.train_runs(runs, keep_model_only)) as ended:
            for (name, seed), folder, diverged in ended:
                if diverged:  # recorded in its run folder; the others go on
                    log.warning("%s: final %s, seed %d diverged: %s", self.study.name, name,
                                seed, diverged)  # fmt: skip
                else:
                    done[name, seed] = folder
        return [done[key] for key in order if key in done]  # in variant and seed order

    def train_runs(
        self, runs: Mapping[Any, Mapping[str, Any]], finish: Callable[[Location], None]
    ) -> Iterator[tuple[Any, Location, str | None]]:
        """Train (or resume) runs given as key → run driver's dict, each with a trial's shape
        (`ikd.cluster.trial_shape`), and `finish` each finished run's folder; yields (key, its
        folder, why it diverged or None) as each ends.

        Where the cluster holds one such run at a time, on this node (a laptop, a one-node head:
        `ikd.cluster.one_at_a_time`), they train here, one after another: no worker to start
        (and torch to import) per run. Otherwise they are Ray tasks spread over the nodes as the resources allow: a run whose
        node is lost is retried elsewhere and resumes from its last checkpoint in the run
        storage; an error or Ctrl+C cancels the runs still going (each resumes next time)."""
        from ikd.cluster import init_ray, one_at_a_time, trial_shape

        init_ray()
        shape, threads = trial_shape(self.config)
        splits = self.splits()
        runs = {key: {**spec, "train.threads": threads} for key, spec in runs.items()}
        if one_at_a_time(shape):
            for key, spec in runs.items():
                yield key, *_train_run(spec, splits, finish)
            return
        import ray

        shared = ray.put(splits) if splits else None
        task = ray.remote(_train_run).options(
            num_cpus=shape["cpu"], num_gpus=shape.get("gpu", 0), max_retries=RUN_RETRIES
        )
        pending = {task.remote(spec, shared, finish): key for key, spec in runs.items()}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                raise_if_stopped()  # a Ctrl+C the garbage collector swallowed
                if not ready:
                    continue
                key = pending.pop(ready[0])
                yield key, *_result(ready[0])
        finally:
            for reference in pending:
                ray.cancel(reference, force=True)

    def final_folder(self, spec: Mapping[str, Any]) -> Location:
        """A final run's folder: its own — or, before it has started, a finished final run of
        the same configuration and seed (the same run hash) that another study under the same
        runs root has made, which it reads instead of training the same run again (Table 5's NCE
        row is Table 3's IdentityKD; so are Table 4's ResNet18 rows and Fig. 4's λ1 = 0.5,
        λ2 = 0.4 points). runs.csv lists such a run under the study that made it."""
        own = resolve_run(spec)[2]
        if (own / RUN).exists():
            return own
        suffix = own.name.split("-")[-2:]  # the run hash and seed<seed>
        root = self.runs.parent
        for study in root.iterdir() if root.exists() else ():
            final = study / "final"
            if study.name == self.study.name or not final.exists():
                continue
            for folder in final.glob(f"*-{'-'.join(suffix)}"):
                run = read_run(folder)
                if run is not None and run.status == "complete" and run.test is not None:
                    return folder
        return own

    def shared_seeds(self, variant: Variant) -> int:
        """How many of a final variant's final runs another study's will be (`final_folder`),
        known before either is trained: a variant that takes another study's final variant's
        configuration (`tuned_in`, nothing tuned here) and whose own overrides change nothing
        there — keys that study neither tunes nor sets otherwise (Table 5's NCE row, Table 4's
        ResNet18 rows, Fig. 4's λ1 = 0.5, λ2 = 0.4 points); 0 for any other."""
        if variant.tuned_in is None or variant.space:
            return 0
        study, name = variant.tuned_in
        other = StudyRun(self.path.parent / f"{study}.py", preset=self.preset,
                         overrides=self.overrides, results_root=self.results.parent,
                         quick=self.quick)  # fmt: skip
        origin = next((v for v in other.variants if v.name == name and v.final), None)
        if origin is None or other.config.data_hash() != self.config.data_hash():
            return 0
        config = apply_overrides(other.config, dict(origin.overrides)).to_dict()
        unchanged = all(
            key not in origin.space and values_of({key: None}, config)[key] == value
            for key, value in variant.overrides.items()
        )
        return min(self.seeds, other.seeds) if unchanged else 0

    def work_left(self) -> list[tuple[str, tuple[str, ...], int, int]]:
        """(stage, the students a run may train, how many runs, epochs per run) per variant with
        tuning trials, re-evaluations or final runs not finished yet (none: the study has
        trained everything)."""
        left = []
        done = self.finals()
        found = read_json(self.results / BEST_CONFIG) or {}
        for variant in self.variants:
            student = variant.overrides.get("train.student", self.config.train.student)
            searched = (variant.space or {}).get("train.student")
            choices = tuple(getattr(searched, "values", ())) or (student,)
            if variant.space:
                try:
                    count = max(0, self.trials - len(self.trials_of(variant)))
                except NotTunedError:  # the configuration it starts from is not tuned yet
                    count = self.trials
                left.append(("tune", choices, count, self.config.train.epochs))
                top, seeds = self.study.reevaluation(self.quick)
                # all of them while the search is not done (its first trial's too: it may rank
                # below the best `top`)
                later = (max(top, 1) + bool(variant.tuned_in)) * seeds
                count = later if count else len(self.reevaluations_left(variant))
                left.append(("reeval", choices, count, self.config.train.epochs))
            if variant.final:
                best = found.get(variant.name, {}).get("overrides", {}).get("train.student")
                count = self.seeds - max(len(done[variant.name]), self.shared_seeds(variant))
                left.append(
                    ("final", (best,) if best else choices, count, self.config.train.epochs)
                )
        return [entry for entry in left if entry[2] > 0]

    def up_to_date(self) -> bool:
        """Nothing left to train, and the results folder rendered from exactly these run records
        (its runs.csv is what they give now): running the study again would change nothing."""
        rendered = self.results / RUNS_TABLE
        report = "figure.md" if isinstance(self.study.report, Figure) else "table.md"
        if not all((self.results / name).exists() for name in (RUNS_TABLE, STUDY_RECORD, report)):
            return False
        records, tuning = self.final_records(), self.tuning()  # read once, for both questions
        if any(len(runs) < self.seeds for runs in _finished(records).values()) or any(
            len(runs) < self.trials or any(run.status == "interrupted" for run in runs)
            for runs in tuning.values()  # an interrupted trial: its tuning resumes it
        ):
            return False
        if any(self.reevaluations_left(v) for v in self.variants if v.space):
            return False
        return runs_table(self._records(records, tuning)) == rendered.read_text()

    # -- report ---------------------------------------------------------------------------------

    def finals(self) -> dict[str, list[RunRecord]]:
        """Each final variant's finished final runs (test evaluated), by seed; none for a
        variant whose configuration is not tuned yet. Never trains."""
        return _finished(self.final_records())

    def final_records(
        self, variants: Sequence[Variant] | None = None
    ) -> dict[str, list[RunRecord]]:
        """Each final variant's (of `variants`, default all) final run folders of its current
        configuration that exist, whatever their status (running, diverged, complete)."""
        records: dict[str, list[RunRecord]] = {}
        for variant in (v for v in variants or self.variants if v.final):
            try:
                specs = self.final_specs(variant, tune=False)
            except NotTunedError:
                specs = []
            runs = [read_run(self.final_folder(spec)) for spec in specs]
            records[variant.name] = [run for run in runs if run is not None]
        return records

    def tuning(self) -> dict[str, list[RunRecord]]:
        """Each tuned variant's tuning runs (this study's own), read."""
        tuning = {}
        for variant in (v for v in self.variants if v.space):
            try:
                trials = self.trials_of(variant)
            except NotTunedError:  # the configuration it starts from is not tuned yet
                trials = []
            tuning[variant.name] = [read_run(trial.folder) for trial in trials]
        return tuning

    @unchanging()
    def report(self) -> list[Location]:
        """Render `<results>/<study>/` from the run records (into a local copy first where it
        lies in an object store, `ikd.storage.staged`); returns the files written."""
        from ikd.report.render import Context, render

        records, tuning = self.final_records(), self.tuning()
        runs = self._records(records, tuning)
        finals = _finished(records)
        missing = {name: self.seeds - len(runs) for name, runs in finals.items()}
        for name, count in missing.items():
            if count:
                log.warning("%s: %s lacks %d final run(s)", self.study.name, name, count)
        data = self.config
        # the dataset as a run recorded it: a final run's, else a tuning run's (a study whose
        # finals have not started, as a regeneration committed on its way renders it)
        everything = [
            *(r for rs in finals.values() for r in rs),
            *(r for rs in tuning.values() for r in rs),
        ]
        first = next((run for run in everything if run is not None), None)
        context = Context(
            study=self.study,
            preset=self.preset,
            seeds=self.seeds,
            trials=self.trials,
            epochs=data.train.epochs,
            searcher=f"Optuna TPE (seed 0, its first {TPE_STARTUP} trials random)",
            scheduler=(
                f"ASHA on {METRIC} per epoch (grace {asha_grace(data.train.epochs)} epochs, "
                f"reduction factor {ASHA_REDUCTION})"
                if self.study.asha
                else "none (every trial runs all its epochs)"
            ),
            dataset={
                "data_hash": data.data_hash(),
                "synthetic": first.record["synthetic"] if first else not data.data.captures,
                "num_identities": first.record["num_identities"] if first else None,
                "seed": data.synthetic.seed,
                "split_seed": data.data.split_seed,
            },
            quick=self.quick,
            spaces={v.name: v.space for v in self.variants if v.space},
            reevaluated=self._reevaluated(),
            reevaluations=self.reevaluation_records(),
            others=self.other_finals(),
            origins={v.name: "/".join(v.tuned_in) for v in self.variants if v.tuned_in},
            diverged={
                name: sum(run.status == "diverged" for run in runs)
                for name, runs in records.items()
            },
        )
        provenance = self.provenance(runs)
        with staged(self.results) as folder:
            written = render(folder, context, finals, tuning, runs, provenance)
        return [self.results / path.relative_to(folder).as_posix() for path in written]

    def other_finals(self) -> dict[str, list[RunRecord]]:
        """The finished final runs of other studies' variants this study's table compares with
        ("<study>/<variant>", read where those studies ran; none before they have)."""
        others = {}
        names = self.study.report.elsewhere() if isinstance(self.study.report, Table) else ()
        for name in sorted(names):
            study, variant = name.split("/")
            other = StudyRun(self.path.parent / f"{study}.py", preset=self.preset,
                             overrides=self.overrides, results_root=self.results.parent,
                             quick=self.quick)  # fmt: skip
            chosen = [v for v in other.variants if v.name == variant and v.final]
            if not chosen:
                raise UserError(f"{self.study.name}: {study} has no final variant {variant!r}")
            others[name] = _finished(other.final_records(chosen))[variant]
        return others

    def _records(
        self,
        records: Mapping[str, list[RunRecord]] | None = None,
        tuning: Mapping[str, list[RunRecord]] | None = None,
    ) -> list[RunRecord]:
        """The study's run folders of this configuration, tuning runs and their re-evaluations
        first (the storage may hold other presets' or older ones: they are not its)."""
        records = self.final_records() if records is None else records
        tuning = self.tuning() if tuning is None else tuning
        runs = [run for runs in tuning.values() for run in runs]
        runs += [run for runs in self.reevaluation_records().values() for run in runs]
        return runs + [run for runs in records.values() for run in runs]

    def provenance(self, runs: Sequence[RunRecord]) -> dict[str, Any]:
        """provenance.json: the code, packages, hardware, how the study was run, its dataset
        and teacher, and the wall time of each stage."""
        folder = dataset_folder(self.config)
        manifest = folder / "manifest.json"
        record = read_json(self.results / STUDY_RECORD) or {}
        previous = (read_json(self.results / PROVENANCE) or {}).get("dataset", {})
        same = previous.get("data_hash") == self.config.data_hash()
        earlier = previous.get("manifest_sha256") if same else None
        # by weights: a rebuild that trained the same teacher again differs in its train_seconds
        teachers: dict[tuple, dict[str, Any]] = {}
        for run in runs:
            teacher = run.record.get("teacher")
            if teacher:
                key = (teacher.get("backbone_sha256"), teacher.get("classifier_sha256"))
                teachers.setdefault(key, teacher)
        return {
            "study": self.study.name,
            "artefact": self.study.artefact,
            "study_file": self._portable(str(self.path)),
            "preset": self.preset,
            "overrides": {key: self._portable(value) for key, value in self.overrides.items()},
            "quick": self.quick,
            "git": git_sha(),
            "runs_git": sorted({run.record.get("git", "unknown") for run in runs}),
            "versions": versions(),
            "hardware": hardware(),
            "commands": record.get("commands", []),
            "stage_seconds": record.get("stage_seconds", {}),
            "dataset": {
                "folder": self._portable(str(folder)),
                "data_hash": self.config.data_hash(),
                # rendered where the dataset is not (a clone): the one the runs were made with
                "manifest_sha256": sha256_file(manifest) if manifest.exists() else earlier,
                "build_seconds": (
                    round(sum((read_json(manifest) or {}).get("seconds", {}).values()), 1)
                    if manifest.exists()
                    else previous.get("build_seconds")
                    if same
                    else None
                ),
            },
            "teacher": list(teachers.values()),
            "runs": len(runs),
        }

    def summary(self, seconds: float) -> str:
        """What the study did, for the end of `ikd study`: per tuned variant its trials (how
        many ASHA stopped), compute used and best configuration; final runs; where results are."""
        from ikd.report.render import tuning_summary

        lines = [
            f"{self.study.name} ({self.study.artefact}, {self.preset} preset): {seconds:.0f} s"
        ]
        spaces = {v.name: v.space for v in self.variants if v.space}
        summary = tuning_summary(
            self.tuning(), spaces, self._reevaluated(), self.reevaluation_records()
        )
        for row in summary.to_dict("records"):
            lines.append(
                f"  tuned {row['variant']}: {row['trials']}/{self.trials} trials "
                f"({row['complete']} complete, {row['stopped']} stopped early by ASHA, "
                f"{row['diverged']} diverged), {row['trial_epochs']} trial-epochs, "
                f"{row['train_seconds']:.0f} s of training; picked: mean val acc "
                f"{row['mean_val_acc']:.4f} over {row['seeds']} seed(s) "
                f"({row['reevaluations']} re-evaluations, {row['reevaluation_seconds']:.0f} s): "
                f"{row['best_params']}"
            )
        finals = self.finals()
        done = sum(len(runs) for runs in finals.values())
        lines.append(f"  final runs: {done}/{self.seeds * len(finals)} finished")
        lines.append(f"  results: {self.results}")
        return "\n".join(lines)

    # -- record ---------------------------------------------------------------------------------

    def run(
        self,
        stages: Sequence[str],
        command: Sequence[str] | None = None,
        only: str | None = None,
    ) -> None:
        """Run `stages` in order, recording the command and each stage's wall time (summed
        over the sessions that ran it, an interrupted one included; a stage of another study
        run inside it, such as the tuning whose best configuration it reads, counts there, not
        here) in study.json. `only`: the tune stage tunes that variant alone."""
        record = read_json(self.results / STUDY_RECORD) or {}
        record.update(
            {
                "study_file": self._portable(str(self.path)),
                "preset": self.preset,
                # the roots absolute (`ikd report` may run from another folder), or relative to
                # the results root or the repository where they lie inside one (a clone
                # elsewhere reads them there)
                # the command's (with the roots), never the study's own: `from_record` reads
                # another study's tuned configuration with them
                "overrides": {
                    k: self._portable(self.overrides.get(k, v))
                    for k, v in self.spec.items()
                    if "." in k and (k in self.overrides or k not in self.study.overrides)
                },
                "quick": self.quick,
                "storage": self._portable(self.storage),
                "optuna_storage": self.optuna_storage,
            }
        )
        if tuple(stages) == STAGES and self.up_to_date():
            log.info(
                "%s: up to date (every run finished, results rendered from them)", self.study.name
            )
            return
        command = list(["ikd", *sys.argv[1:]] if command is None else command)
        command = self._portable(" ".join(command))
        if command not in record.get("commands", [])[-1:]:  # once per command, not per variant
            record["commands"] = [*record.get("commands", []), command][-20:]
        write_json(self.results / STUDY_RECORD, record)
        for stage in STAGES:
            if stage in stages:
                start = time.perf_counter()
                _INNER.append(0.0)  # the stages of studies it runs inside (a tuning it reads)
                try:
                    getattr(self, stage)(*([only] if stage == "tune" else []))
                finally:  # an interrupted session's time counts too: its finished runs are kept
                    elapsed = time.perf_counter() - start
                    own = elapsed - _INNER.pop()  # each second counted once, by its own stage
                    if _INNER:
                        _INNER[-1] += elapsed
                    record = read_json(self.results / STUDY_RECORD) or record  # a nested stage's
                    seconds = record.setdefault("stage_seconds", {})
                    seconds[stage] = round(seconds.get(stage, 0.0) + own, 1)
                    write_json(self.results / STUDY_RECORD, record)

    def _portable(self, value: Any) -> Any:
        """Paths inside the results root as `<results>/…`, inside the repository as `<repo>/…`
        (a command line token by token); anything else as it is."""
        return portable(value, _roots(self.results.parent))

    @classmethod
    def from_record(cls, results: str | Path | Location, studies: Path | None = None) -> StudyRun:
        """The study run that `<results>/<study>/study.json` records (its study file looked up
        in `studies` when it has moved)."""
        results = location(results)
        record = read_json(results / STUDY_RECORD)
        if record is None:
            raise UserError(f"{results}: no {STUDY_RECORD} (run `ikd study` on it first)")
        root = results.parent
        roots = _roots(root)
        path = Path(local(record["study_file"], roots))
        if not path.exists() and studies is not None:  # an old record's other machine's path
            path = Path(studies) / path.name
        overrides = {key: local(value, roots) for key, value in record["overrides"].items()}
        data_root = overrides.get("data.root", "")
        if "://" not in data_root and not Path(data_root).is_dir():  # another machine's path
            overrides.pop("data.root", None)  # the default
        return cls(
            path,
            preset=record["preset"],
            overrides=overrides,
            results_root=root,
            quick=record["quick"],
            storage=local(record.get("storage"), roots),
            optuna_storage=record.get("optuna_storage"),
        )


def _roots(results_root: Location) -> dict[str, Path]:
    """The folders a study record's paths are written relative to (`ikd.storage.portable`): the
    results root where it is a local folder, and the repository."""
    local_root = {RESULTS_MARK: results_root.local} if results_root.is_local else {}
    return {**local_root, REPOSITORY_MARK: REPOSITORY}


def tuned_configuration(
    path: Path,
    variant: str,
    *,
    preset: str,
    overrides: Mapping[str, Any],
    results_root: str | Path | Location,
    quick: bool,
    tune: bool = True,
) -> dict[str, Any]:
    """Another study's tuned configuration of one variant (its overrides and its best), read
    from that study's best_config.json — tuning that variant alone first where its entry is
    absent or stale (or, with `tune=False`, raising `NotTunedError`)."""
    other = StudyRun(
        path, preset=preset, overrides=overrides, results_root=results_root, quick=quick
    )
    names = {v.name: v for v in other.study.variants}
    if variant not in names:
        raise UserError(f"{path}: no variant {variant!r} (it has {list(names)})")
    return other.final_overrides(names[variant], tune)


def run_study(
    path: str | Path,
    *,
    preset: str,
    overrides: Mapping[str, Any] | None = None,
    stages: Sequence[str] = STAGES,
    results_root: str | Path | Location,
    quick: bool = False,
    storage: str | None = None,
    optuna_storage: str | None = None,
    command: Sequence[str] | None = None,
) -> StudyRun:
    """Run a study's stages in order (each idempotent); returns the study run."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise UserError(f"unknown stage(s) {sorted(unknown)}; choose from {list(STAGES)}")
    run = StudyRun(
        path,
        preset=preset,
        overrides=overrides or {},
        results_root=results_root,
        quick=quick,
        storage=storage,
        optuna_storage=optuna_storage,
    )
    run.run(stages, command)
    return run


RUN_RETRIES = 3  # a run's task (`StudyRun.train_runs`) is retried this often when its node dies


def _train_run(
    spec: Mapping[str, Any],
    splits: dict[str, Samples] | None,
    finish: Callable[[Location], None],
) -> tuple[Location, str | None]:
    """One run of `StudyRun.train_runs` (in its process or as a Ray task): trained or resumed,
    then `finish`ed. Returns its folder and, for a run that diverged, why (a DivergedError is not
    raised across processes: its record says it all)."""
    from ikd.train.driver import train_driver

    try:
        folder = train_driver({**spec, "splits": splits})
    except DivergedError as error:
        return resolve_run(spec)[2], str(error)
    finish(folder)
    return folder, None


def _result(reference: Any) -> tuple[Location, str | None]:
    """A run task's result. A user's mistake inside it (UserError) is raised as its own one
    line; a task Ray gave up on (its node lost more than RUN_RETRIES times, its process
    killed) as one line saying so; any other error with its traceback."""
    import ray

    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, UserError):
            raise error.cause from None
        raise
    except ray.exceptions.RayError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"a run failed {RUN_RETRIES + 1} times ({first}); run the same "
                        "command again to resume it from its last checkpoint") from None  # fmt: skip


def _finished(records: Mapping[str, list[RunRecord]]) -> dict[str, list[RunRecord]]:
    """The final runs that finished and read test."""
    return {
        name: [run for run in runs if run.status == "complete" and run.test is not None]
        for name, runs in records.items()
    }
