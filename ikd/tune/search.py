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
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from ikd.files import read_json, write_json
from ikd.train.data import Samples
from ikd.train.driver import resolve_run, train_driver
from ikd.train.runs import CHECKPOINTS, METRICS, RUN, DivergedError, read_metrics

log = logging.getLogger(__name__)

METRIC = "val/acc"  # what tuning maximises: the evaluated model's val accuracy
STOPPED = "stopped.json"  # in a tuning run's folder: ASHA stopped it (kept across restores)


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of an epoch's metrics (Tune flattens lists into many columns)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | bool)}


def trial(params: dict[str, Any], *, spec: Mapping[str, Any], splits: dict[str, Samples]) -> None:
    """A Tune function trainable: one tuning run in this process with the shared splits.

    A diverged run is recorded as failed by the driver (its run.json says why) and reports
    `val/acc` = 0, so ASHA and TPE learn from it instead of dropping it; the study goes on.
    """
    run = {**spec, **params, "stage": "tune", "loop": "plain", "progress": False}
    run_dir = resolve_run(run)[2]

    def report(metrics: dict[str, Any]) -> None:
        tune.report({**_scalars(metrics), "run": run_dir.name})

    stopped = read_json(run_dir / STOPPED)
    if stopped is not None:  # ASHA stopped it before a restore, which forgets ASHA's rungs
        log.info("trial %s was stopped by ASHA after epoch %d", run_dir.name, stopped["epochs"])
        for metrics in read_metrics(run_dir / METRICS):
            report(metrics)
        return
    try:
        train_driver({**run, "on_epoch": report, "splits": splits})
    except DivergedError as error:
        log.warning("trial %s diverged: %s", run_dir.name, error)
        tune.report({METRIC: 0.0, "diverged": True, "run": run_dir.name})
        return
    # A finished tuning run is never resumed: its checkpoints (~135 MB each for resnet18 with
    # Adam's state) would only fill the disk over a study's trials.
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)


def trial_with_ray_train(params: dict[str, Any], *, spec: Mapping[str, Any]) -> None:
    """A Tune function trainable running Ray Train inside (multi-worker or GPU trials): the
    trainer's own reports reach Tune (`fit_with_ray` adds `TuneReportCallback` in a trial)."""
    run = {**spec, **params, "stage": "tune", "loop": "ray", "progress": False}
    try:
        train_driver(run)
    except DivergedError as error:
        log.warning("trial %s diverged: %s", resolve_run(run)[2].name, error)
        tune.report({METRIC: 0.0, "diverged": True})


def tune_variant(
    spec: Mapping[str, Any],
    space: Mapping[str, Any],
    *,
    trials: int,
    storage: str,
    name: str,
    splits: dict[str, Samples],
    epochs: int,
    seed: int = 0,
    concurrent: int = 1,
    threads: int = 1,
    optuna_storage: str | None = None,
) -> tune.ResultGrid:
    """Tune one variant: `trials` trials of `trial`, proposed by Optuna's TPE (seeded, its first
    ten at random) over `space` (`ikd.tune.space` ranges, checked by the caller) and stopped early
    by ASHA on `val/acc` per epoch. `storage` is the Tune experiment's absolute path or URI; an
    experiment already there is restored (its finished trials kept, its searcher's history too).

    Args:
        spec: the run driver's dict every trial starts from (absolute data and runs roots: trials
            change their working directory).
        splits: the train and val splits, read once by the caller, shared with every trial
            through the object store.
        epochs: a trial's epochs (ASHA's max_t).
        concurrent, threads: trials at once and torch threads per trial (CPUs it reserves).
        optuna_storage: the RDB URL of the Optuna mirror (default: a SQLite file `optuna.db`
            beside the runs of `spec`'s study); its study is named `<study>/<name>`.
    """
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from ikd.tune.space import optuna_space

    trainable = tune.with_resources(
        tune.with_parameters(trial, spec={**spec, "train.threads": threads}, splits=splits),
        {"cpu": threads},
    )
    path = f"{storage.rstrip('/')}/{name}"
    run_dir = resolve_run({**spec, "stage": "tune", "loop": "plain"})[2]
    study = run_dir.parent.parent  # <runs_root>/<study>
    records = TrialRecords(
        run_dir.parent,
        space,
        optuna_storage or f"sqlite:///{study / 'optuna.db'}",
        f"{study.name}/{name}",
    )
    if tune.Tuner.can_restore(path):
        log.info("restoring the tuning experiment at %s", path)
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        return tuner.fit()
    searcher = OptunaSearch(
        space=optuna_space(space),
        metric=METRIC,
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10),
    )
    # stop_last_trials=False: a trial stopped at its last report would never run the code after
    # it (DESIGN.md §7), and its run would stay "running" instead of "complete".
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=epochs,
        grace_period=1,
        reduction_factor=2,
        stop_last_trials=False,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=trials,
            max_concurrent_trials=concurrent,
            reuse_actors=True,
            trial_dirname_creator=_trial_folder,
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, callbacks=[records]),
    )
    return tuner.fit()


def _trial_folder(trial: Any) -> str:
    """Tune's folder of a trial: its id, no timestamp (ikd's run folder is the record)."""
    return trial.trial_id


class TrialRecords(tune.Callback):
    """What the study driver does as trials report and end.

    - A progress line per trial and epoch: its run, the sampled values, val acc.
    - A trial ASHA stopped gets a `stopped.json` in its run folder (a restored experiment has
      forgotten ASHA's rungs: `trial` then replays the run instead of training on) and loses its
      checkpoints.
    - Every ended trial is mirrored into an Optuna study in an RDB (`storage`, e.g. a SQLite
      file), complete, pruned (stopped by ASHA) or failed (diverged), with its per-epoch val acc —
      what `optuna-dashboard` opens. OptunaSearch's own RDB storage breaks `Tuner.restore` here
      (DESIGN.md §7), so the search keeps its study in memory and this mirror is written beside.
    """

    def __init__(self, runs: Path, space: Mapping[str, Any], storage: str, study: str) -> None:
        self.runs, self.space, self.storage, self.study = Path(runs), dict(space), storage, study

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
        if run is None:
            return
        folder = self.runs / run
        record = read_json(folder / RUN) or {}
        lines = read_metrics(folder / METRICS)
        if record.get("status") == "running" and not (folder / STOPPED).exists():
            write_json(folder / STOPPED, {"by": "ASHA", "epochs": len(lines)})
            shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
            log.info("trial %s stopped by ASHA after epoch %d", run, len(lines))
        self._mirror(trial.config, run, record.get("status"), lines)

    def _mirror(self, params: Mapping[str, Any], run: str, status: str | None, lines) -> None:
        import optuna

        from ikd.tune.space import optuna_space

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


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
