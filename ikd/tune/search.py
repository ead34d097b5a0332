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
from collections.abc import Mapping
from typing import Any

from ray import tune

from ikd.train.data import Samples
from ikd.train.driver import resolve_run, train_driver
from ikd.train.runs import DivergedError

log = logging.getLogger(__name__)

METRIC = "val/acc"  # what tuning maximises: the evaluated model's val accuracy


def _scalars(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of an epoch's metrics (Tune flattens lists into many columns)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | bool)}


def trial(params: dict[str, Any], *, spec: Mapping[str, Any], splits: dict[str, Samples]) -> None:
    """A Tune function trainable: one tuning run in this process with the shared splits.

    A diverged run is recorded as failed by the driver (its run.json says why) and reports
    `val/acc` = 0, so ASHA and TPE learn from it instead of dropping it; the study goes on.
    """
    run = {**spec, **params, "stage": "tune", "loop": "plain", "progress": False}
    name = resolve_run(run)[2].name

    def report(metrics: dict[str, Any]) -> None:
        tune.report({**_scalars(metrics), "run": name})

    try:
        train_driver({**run, "on_epoch": report, "splits": splits})
    except DivergedError as error:
        log.warning("trial %s diverged: %s", name, error)
        tune.report({METRIC: 0.0, "diverged": True, "run": name})


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
    if tune.Tuner.can_restore(path):
        log.info("restoring the tuning experiment at %s", path)
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True).fit()
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
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    return tuner.fit()


def _trial_folder(trial: Any) -> str:
    """Tune's folder of a trial: its id, no timestamp (ikd's run folder is the record)."""
    return trial.trial_id
