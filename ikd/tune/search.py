"""Ray Tune over one study variant: Optuna's TPE (seeded) proposes, ASHA stops, on `val/acc`.

A trial is one tuning-stage run of the run driver (`train_driver`, stage "tune": the test split
is refused to it), so its run folder holds the same records as `ikd train`'s and reports read
tuning trials and final runs alike. Every epoch's metrics reach Tune through the driver's
`on_epoch` hook (a resumed or finished run replays its epochs first, so Tune's iteration count
stays the epoch).

Execution shapes, measured (`benchmarks/bench_tune.py overhead`: smoke preset, identitykd, 2
epochs, 4 trials one at a time, 2-core machine, 2026-11-25): `trial` runs the plain loop in the
trial's own process, with the train and val splits read once by the study driver and handed to
every trial through Ray's object store (`tune.with_parameters`) — 1.8 s of overhead per trial
(start-up, hand-off, reporting, checkpoints); `trial_with_ray_train` runs Ray Train inside the
trial (Ray's Train V2 pattern: the trainer reports to Tune through `TuneReportCallback`, and
each trial re-reads its splits into Ray Data) — 22.3 s per trial. One-worker trials use `trial`;
the Ray Train shape stays for multi-worker or GPU trials, where the training dwarfs it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from ikd.errors import raise_if_stopped
from ikd.storage import Location, location, read_json, write_json
from ikd.train.data import Samples
from ikd.train.driver import train_driver
from ikd.train.runs import (
    METRIC,
    METRICS,
    RUN,
    STOPPED,
    DivergedError,
    drop_checkpoints,
    read_metrics,
    run_status,
)
from ikd.tune.trials import (
    ASHA_REDUCTION,
    TPE_STARTUP,
    Trial,
    asha_grace,
    trial_history,
    tuning_folder,
)

log = logging.getLogger(__name__)


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of an epoch's metrics (Tune flattens lists into many columns)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | bool)}


def trial(params: dict[str, Any], *, spec: Mapping[str, Any], splits: dict[str, Samples]) -> None:
    """A Tune function trainable: one tuning run in this process with the shared splits.

    A diverged run is recorded as failed by the driver (its run.json says why) and reports
    `val/acc` = 0, so ASHA and TPE learn from it instead of dropping it; the study goes on.
    """
    run_dir = tuning_folder({**spec, **params})
    trial_in_process(
        params,
        spec=spec,
        splits=splits,
        report=lambda metrics: tune.report({**_scalars(metrics), "run": run_dir.name}),
    )


def trial_in_process(
    params: Mapping[str, Any],
    *,
    spec: Mapping[str, Any],
    splits: dict[str, Samples],
    report: Callable[[dict[str, Any]], None] = lambda metrics: None,
) -> None:
    """One tuning run through the run driver, each epoch's metrics to `report`: what `trial`
    runs inside Tune, and what continues an interrupted trial outside it."""
    run = {"loop": "plain", **spec, **params, "stage": "tune", "progress": False}
    run_dir = tuning_folder(run)

    stopped = read_json(run_dir / STOPPED)
    if stopped is not None:  # ASHA stopped it before; the searcher proposed the same values again
        log.info("trial %s was stopped by ASHA after epoch %d", run_dir.name, stopped["epochs"])
        for metrics in read_metrics(run_dir / METRICS):
            report(metrics)
        return
    try:
        if run["loop"] == "plain":
            train_driver({**run, "on_epoch": report, "splits": splits})
        else:  # a Ray Train trial continued outside Tune: its epochs once it has finished
            train_driver(run)
            for metrics in read_metrics(run_dir / METRICS):
                report(metrics)
    except DivergedError as error:
        log.warning("trial %s diverged: %s", run_dir.name, error)
        report({METRIC: 0.0, "diverged": True})
        return
    drop_checkpoints(run_dir)


def trial_with_ray_train(params: dict[str, Any], *, spec: Mapping[str, Any]) -> None:
    """A Tune function trainable running Ray Train inside (multi-worker or GPU trials): the
    trainer's own reports reach Tune (`fit_with_ray` adds `TuneReportCallback` in a trial)."""
    run = {**spec, **params, "stage": "tune", "loop": "ray", "progress": False}
    run_dir = tuning_folder(run)
    if (run_dir / STOPPED).exists() or run_status(run_dir) == "complete":  # proposed again
        for metrics in read_metrics(run_dir / METRICS):
            tune.report({**_scalars(metrics), "run": run_dir.name})
        return
    try:
        train_driver(run)
    except DivergedError as error:
        log.warning("trial %s diverged: %s", run_dir.name, error)
        tune.report({METRIC: 0.0, "diverged": True})
        return
    drop_checkpoints(run_dir)


def tune_variant(
    spec: Mapping[str, Any],
    space: Mapping[str, Any],
    *,
    trials: int,
    storage: str | Location,
    name: str,
    splits: dict[str, Samples] | None,
    epochs: int,
    resources: Mapping[str, float],
    threads: int = 0,
    seed: int = 0,
    concurrent: int = 1,
    optuna_storage: str | None = None,
    asha: bool = True,
    first: Mapping[str, Any] | None = None,
) -> tune.ResultGrid | None:
    """Tune one variant: `trials` trials of `trial`, proposed by Optuna's TPE (seeded, its first
    ten at random) over `space` (`ikd.space` ranges, checked by the caller) and stopped early
    by ASHA on `val/acc` per epoch.

    Resuming is done from the run folders, not from Tune's state (which a killed driver may have
    left behind its trials): a trial that was interrupted is first continued in this process with
    its own parameters (its run resumes from its last checkpoint); every finished trial —
    complete, stopped by ASHA, diverged — is told to the searcher; and only the rest of the budget
    is proposed. A trial ASHA stopped stays stopped. Returns the new trials' results (None when
    the budget was already spent).

    Args:
        spec: the run driver's dict every trial starts from (absolute data and runs roots: trials
            change their working directory).
        storage: where Tune keeps its experiments (absolute path or URI, `ikd.storage`).
        splits: the train and val splits, read once by the caller, shared with every trial
            through the object store (None: each trial reads them from the dataset's storage;
            always for Ray Train trials, `"loop": "ray"` in `spec`).
        epochs: a trial's epochs (ASHA's max_t).
        resources, threads: Tune's resources per trial and its torch threads (0: Ray Train's
            share), `ikd.cluster.trial_shape`.
        concurrent: trials at once.
        optuna_storage: the RDB URL of the Optuna mirror (default: a SQLite file `optuna.db`
            beside the runs of `spec`'s study; in an object store a local working copy of it,
            written back after each trial); its study is named `<study>/<name>`.
        asha: stop trials early with ASHA (False: every trial runs all its epochs — what ASHA
            is measured against, `benchmarks/asha_budget.py`).
        first: a point of `space` the search tries first (Optuna's enqueued trial, through
            OptunaSearch's `points_to_evaluate`), unless a finished trial already has it: the
            configuration a variant starts from, so its best is never below it.
    """
    import optuna
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from ikd.space import optuna_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created/used" lines
    spec, storage = {**spec, "train.threads": threads}, location(storage)
    ray_train = spec.get("loop") == "ray"
    runs = tuning_folder(spec).parent
    records = TrialRecords(
        runs,
        space,
        optuna_storage or _optuna_file(runs.parent),
        f"{runs.parent.name}/{name}",
        # the mirror's copy in the object store, written back after each trial (the default's)
        None if optuna_storage or runs.parent.is_local else runs.parent / OPTUNA_FILE,
    )
    try:  # a local working copy of a mirror in an object store goes when the search ends
        for interrupted in (
            t for t in trial_history(runs, name, space, spec) if t.status == "interrupted"
        ):
            log.info("continuing the interrupted trial %s", interrupted.folder.name)
            trial_in_process(interrupted.params, spec=spec, splits=splits)
            records.ended(interrupted.params, interrupted.folder.name)
        finished = trial_history(runs, name, space, spec)
        for done in finished:  # a fresh clone's mirror learns the committed trials first
            records.ended(done.params, done.folder.name)
        if len(finished) >= trials:
            log.info("%s: all %d trials are finished", name, trials)
            return None
        done = {t.folder.name for t in finished}
        points = (
            [dict(first)] if first and tuning_folder({**spec, **first}).name not in done else []
        )
        searcher = OptunaSearch(
            space=optuna_space(space),
            points_to_evaluate=points or None,
            metric=METRIC,
            mode="max",
            # Seeded by the history too: a resumed search must not draw the first start's random
            # points again (they would name the same run folders, and the budget would shrink).
            sampler=optuna.samplers.TPESampler(
                seed=seed + len(finished), n_startup_trials=TPE_STARTUP
            ),
        )
        for done in finished:
            searcher.add_evaluated_point(
                done.params,
                done.values[-1] if done.values else 0.0,
                error=done.status == "diverged",
                pruned=done.status == "stopped",
                intermediate_values=done.values,
            )
        scheduler = asha_scheduler(epochs, finished) if asha else FIFOScheduler()
        # Quiet Tune and Optuna: no experiment box or TensorBoard hint (Tune's legacy output is
        # silent at verbose=0), no "study created" lines; TrialRecords logs a line per trial epoch.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        # Ctrl+C stops the whole job (`ikd: interrupted`; the same command resumes). Tune's own
        # handler would end only this variant's search, print a Tuner.restore hint that does not
        # apply here, and let the study go on with the next variant.
        os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
        trainable = (
            tune.with_parameters(trial_with_ray_train, spec=spec)
            if ray_train
            else tune.with_parameters(trial, spec=spec, splits=splits)
        )
        tuner = tune.Tuner(
            tune.with_resources(trainable, dict(resources)),
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="max",
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=trials - len(finished),
                max_concurrent_trials=concurrent,
                reuse_actors=True,
                trial_dirname_creator=_trial_folder,
            ),
            run_config=tune.RunConfig(
                name=f"{name}-after-{len(finished)}",  # one experiment per (re)start
                storage_path=storage.path,
                storage_filesystem=storage.ray_filesystem,
                # a trial whose process or node dies starts again (elsewhere): its run resumes
                # from its last checkpoint and replays its epochs to Tune (ASHA keeps its rungs)
                failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
                verbose=0,
                callbacks=[records],
            ),
        )
        return tuner.fit()
    finally:
        records.close()


def asha_scheduler(epochs: int, finished: Sequence[Trial]) -> Any:
    """ASHA over trials of `epochs` epochs, its rungs holding what the variant's finished trials
    scored there, as an uninterrupted search's would: Tune's restore keeps no rungs (DESIGN.md
    §7), and a search resumed with empty ones let its first trials past them unranked (a vgg16
    at chance ran all 10 epochs, ~35 min). So where the search was interrupted no longer
    decides which trials it stops."""
    from ray.tune.schedulers import ASHAScheduler

    scheduler = ASHAScheduler(
        time_attr="training_iteration",  # one per epoch: a resumed run replays its epochs
        max_t=epochs,
        grace_period=asha_grace(epochs),
        reduction_factor=ASHA_REDUCTION,
        # a trial stopped at its last report would never run the code after it (DESIGN.md §7),
        # and its run would stay "running" instead of "complete"
        stop_last_trials=False,
    )
    for bracket in scheduler._brackets:  # Ray 2.60's bookkeeping: (milestone, {trial: value})
        for milestone, recorded in bracket._rungs:
            for trial in finished:
                if len(trial.values) >= milestone:
                    recorded[f"finished:{trial.folder.name}"] = trial.values[int(milestone) - 1]
    return scheduler


OPTUNA_FILE = "optuna.db"
TRIAL_RETRIES = 3  # restarts of a trial whose process or node died


def _optuna_file(study_runs: Location) -> str:
    """The SQLite URL of a study's Optuna mirror: beside its runs on a file system. SQLite
    cannot live in an object store: there a local working copy of the store's `optuna.db`
    (fetched now, written back after each trial by `TrialRecords`), in a temporary folder."""
    if study_runs.is_local:
        return f"sqlite:///{study_runs / OPTUNA_FILE}"
    path = Path(tempfile.mkdtemp(prefix="ikd-optuna-")) / OPTUNA_FILE
    if (study_runs / OPTUNA_FILE).exists():
        path.write_bytes((study_runs / OPTUNA_FILE).read_bytes())
    return f"sqlite:///{path}"


def _trial_folder(trial: Any) -> str:
    """Tune's folder of a trial: its id, no timestamp (ikd's run folder is the record)."""
    return trial.trial_id


class TrialRecords(tune.Callback):
    """What the study driver does as trials report and end.

    - A progress line per trial and epoch: its run, the sampled values, val acc.
    - A trial ASHA stopped gets a `stopped.json` in its run folder (so a resumed study counts it
      as finished, and never trains it on) and loses its checkpoints.
    - Every ended trial is mirrored into an Optuna study in an RDB (`storage`, e.g. a SQLite
      file), complete, pruned (stopped by ASHA) or failed (diverged), with its per-epoch val acc —
      what `optuna-dashboard` opens. OptunaSearch's own RDB storage breaks `Tuner.restore` here
      (DESIGN.md §7), so the search keeps its study in memory and this mirror is written beside.
      A mirror drawn over another space than the search's is dropped and mirrored anew.
    """

    def __init__(
        self,
        runs: Location,
        space: Mapping[str, Any],
        storage: str,
        study: str,
        copy: Location | None = None,
    ) -> None:
        self.runs, self.space, self.storage, self.study = runs, dict(space), storage, study
        self.copy = copy  # where a local SQLite mirror is written back to (an object store)
        self._forget_another_space()

    @property
    def _sqlite(self) -> Path | None:
        """The mirror's SQLite file (None for another RDB)."""
        path = self.storage.removeprefix("sqlite:///")
        return None if path == self.storage else Path(path)

    def _forget_another_space(self) -> None:
        """A mirror whose trials were drawn over another space (a range or a choice changed
        since) is dropped, to be mirrored again from the run records: Optuna refuses a trial
        whose choices differ from its study's, and a search counts only the trials inside its
        space (`trial_history`)."""
        import optuna

        from ikd.space import optuna_space

        if self._sqlite is not None and not self._sqlite.exists():  # a first search: no mirror yet
            return
        try:
            study = optuna.load_study(study_name=self.study, storage=self.storage)
        except KeyError:  # no such study yet
            return
        space = optuna_space(self.space)
        if any(t.distributions != space for t in study.get_trials(deepcopy=False)):
            log.info(
                "%s: the Optuna mirror was drawn over another space; mirroring anew", self.study
            )
            optuna.delete_study(study_name=self.study, storage=self.storage)

    def on_step_end(self, iteration, trials, **info) -> None:
        raise_if_stopped()  # a Ctrl+C the garbage collector swallowed (ikd.errors.stop)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        values = ", ".join(f"{key}={_short(trial.config.get(key))}" for key in self.space)
        log.info(
            "trial %s (%s) epoch %d: val acc %.4f",
            result.get("run", trial.trial_id),
            values,
            result.get("training_iteration", 0),
            result.get(METRIC, float("nan")),
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        run = (trial.last_result or {}).get("run")
        if run is not None:
            self.ended(trial.config, run)

    def ended(self, params: Mapping[str, Any], run: str) -> None:
        """A trial's run ended: mark it if ASHA stopped it, and mirror it into Optuna."""
        folder = self.runs / run
        record = read_json(folder / RUN) or {}
        lines = read_metrics(folder / METRICS)
        if record.get("status") == "running" and not (folder / STOPPED).exists():
            write_json(folder / STOPPED, {"by": "ASHA", "epochs": len(lines)})
            drop_checkpoints(folder)
            log.info("trial %s stopped by ASHA after epoch %d", run, len(lines))
        self._mirror(params, run, record.get("status"), lines)

    def _mirror(self, params: Mapping[str, Any], run: str, status: str | None, lines) -> None:
        import optuna

        from ikd.space import optuna_space

        study = optuna.create_study(
            storage=self.storage, study_name=self.study, direction="maximize", load_if_exists=True
        )
        if any(t.user_attrs.get("run") == run for t in study.get_trials(deepcopy=False)):
            return
        state = {
            "complete": optuna.trial.TrialState.COMPLETE,
            "diverged": optuna.trial.TrialState.FAIL,
        }.get(status, optuna.trial.TrialState.PRUNED)
        study.add_trial(
            optuna.trial.create_trial(
                params={key: params[key] for key in self.space},
                distributions=optuna_space(self.space),
                value=lines[-1][METRIC] if state == optuna.trial.TrialState.COMPLETE else None,
                intermediate_values={m["epoch"]: m[METRIC] for m in lines},
                user_attrs={"run": run},
                state=state,
            )
        )
        if self.copy is not None:
            self.copy.write_bytes(self._sqlite.read_bytes())

    def close(self) -> None:
        """Remove the local working copy of a mirror kept in an object store (written back
        after each trial)."""
        if self.copy is not None:
            shutil.rmtree(self._sqlite.parent, ignore_errors=True)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
