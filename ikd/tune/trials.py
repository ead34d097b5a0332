"""A variant's tuning runs as their folders record them, and the search's fixed settings — what
a report reads without Ray (`ikd.tune.search` runs the search itself)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ikd.space import inside, values_of
from ikd.storage import Location, read_json
from ikd.train.runs import METRIC, METRICS, RUN, read_metrics, resolve_run, run_status

ASHA_REDUCTION = 3  # a trial goes on past a rung while in the top third recorded there


def asha_grace(epochs: int) -> int:
    """ASHA's first rung: half a trial's epochs (laptop: one rung, after epoch 5 of 10).

    Measured on Table 3's identitykd search (benchmarks/asha_budget.py, benchmarks/README.md):
    a rung after epoch 1 ranks chance-level val accuracies (1/36) and stopped the trials that
    would have been best (best val 0.864 against 0.938 without early stopping); replayed on the
    20 full curves, grace 5 with reduction factor 3 kept the full-budget best within 0.05 points
    on average at 71 % of its trial-epochs, grace 1–4 lost 1–4 points."""
    return max(1, epochs // 2)


def asha_share(epochs: int, trials: int) -> float:
    """The share of its trials' epochs a search of `trials` trials is expected to run under
    ASHA: every trial reaches the first rung, and goes on past a rung while in the top
    1/ASHA_REDUCTION of the results recorded there so far — for the k-th trial to reach it
    (one trial at a time; the rungs start empty, also after a resume), ⌈k/r⌉ of k. Laptop, 10
    epochs (one rung, at 5): 0.71 of 20 trials (Table 3's committed searches ran 0.695), 0.74
    of 10."""
    rungs, rung = [], asha_grace(epochs)
    while rung < epochs:
        rungs.append(rung)
        rung *= ASHA_REDUCTION
    ends = [*rungs, epochs]
    n = max(trials, 1)
    go_on = sum(math.ceil(k / ASHA_REDUCTION) / k for k in range(1, n + 1)) / n
    expected = ends[0] + sum((ends[i + 1] - ends[i]) * go_on ** (i + 1) for i in range(len(rungs)))
    return expected / epochs


TPE_STARTUP = 10  # TPE's first trials are random


@dataclass(frozen=True)
class Trial:
    """A tuning run of a variant as its run folder records it."""

    folder: Location
    params: dict[str, Any]
    status: str  # "complete", "stopped" (by ASHA), "diverged" or "interrupted"
    values: list[float]  # val/acc per epoch


def trial_history(
    runs: Location, variant: str, space: Mapping[str, Any], spec: Mapping[str, Any] | None = None
) -> list[Trial]:
    """Every tuning run of `variant` under `runs` (<runs_root>/<study>/tune), read from its
    folder — the truth a study resumes from (Tune's own state may lag a killed driver). With
    the tuning's run `spec`, only the runs it would have made (their folder is the one `spec`
    plus their parameters names: another preset's or data's runs of the variant are not its).
    A run outside `space` (one of a search over another range) is not part of this search: its
    folder stays, but it is neither counted, nor told to the searcher, nor picked. Inside
    `unchanging`, each history is read once."""
    if _HISTORIES is None:
        return _read_history(runs, variant, space, spec)
    key = json.dumps([str(runs), variant, space, spec], sort_keys=True, default=repr)
    if key not in _HISTORIES:
        _HISTORIES[key] = _read_history(runs, variant, space, spec)
    return list(_HISTORIES[key])


_HISTORIES: dict[str, list[Trial]] | None = None  # `trial_history`'s answers, in `unchanging`


@contextlib.contextmanager
def unchanging() -> Iterator[None]:
    """While no run folder changes (a report renders them): `trial_history` reads each variant's
    runs once. A report resolves every study's configurations, and each the configurations of the
    studies it reads (Table 3's, for every other), through the same histories: the laptop tree's
    two studies read them 189 times."""
    global _HISTORIES
    outer = _HISTORIES
    _HISTORIES = {} if outer is None else outer
    try:
        yield
    finally:
        _HISTORIES = outer


def _read_history(
    runs: Location, variant: str, space: Mapping[str, Any], spec: Mapping[str, Any] | None
) -> list[Trial]:
    history = []
    for folder in runs.glob(f"{variant}-*-seed*"):
        record, config = read_json(folder / RUN), read_json(folder / "config.json")
        if folder.name.rsplit("-", 2)[0] != variant or record is None or config is None:
            continue
        params = values_of(space, config)
        if not inside(space, params):
            continue
        if spec is not None and tuning_folder({**spec, **params}).name != folder.name:
            continue
        values = [line[METRIC] for line in read_metrics(folder / METRICS)]
        history.append(Trial(folder, params, run_status(folder, record), values))
    return history


def tuning_folder(spec: Mapping[str, Any]) -> Location:
    """The run folder of a tuning run of `spec` (its loop: plain unless the spec says ray)."""
    return resolve_run({"loop": "plain", **spec, "stage": "tune"})[2]
