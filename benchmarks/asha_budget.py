"""Does ASHA earn its place? Table 3's identitykd search with and without it (issue 12).

    python benchmarks/asha_budget.py [--preset laptop] [--results results/laptop]

The same trial budget, space, TPE seed and shared splits as the study's identitykd tuning
(`studies/table3_methods.py`, run by `ikd run`, whose ASHA-scheduled trials are read from the run
records), once more with every trial running all its epochs (FIFO), in the study "asha_off" beside
it. Prints the compute each used (trial-epochs, training seconds) and the best val accuracy of a
complete trial (val only: the test split is never read). Issue 12's target: ASHA within 1 point of
the full-budget best at ≤ 40 % of its compute. Finished trials are reused.

    python benchmarks/asha_budget.py --replay

replays ASHA's rule (Ray's asynchronous successive halving: at a rung, a trial stops when its
val acc is below the (1 − 1/η) quantile of those recorded there before it) on the FIFO arm's 20
full curves for a grid of grace periods and reduction factors η: mean share of the trial-epochs,
mean gap to the best final val acc, and how often the gap is ≤ 1 point — over 500 orders of the
trials and over 1000 bootstrap resamples of them. A replay keeps the trials fixed: in a real run
TPE would propose differently after a stop. It is how `ikd.tune.search.asha_grace` was chosen.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
from pathlib import Path

import numpy as np


def summary(trials: list) -> tuple[int, float, float]:
    """(trial-epochs, best val acc of a complete trial, trials) of a variant's tuning runs."""
    epochs = sum(len(trial.values) for trial in trials)
    complete = [trial.values[-1] for trial in trials if trial.status == "complete" and trial.values]
    return epochs, max(complete, default=float("nan")), len(trials)


def successive_halving(curves: list[list[float]], grace: int, eta: int) -> tuple[int, float]:
    """(trial-epochs, best final val acc of a trial not stopped) of Ray's ASHA rule run over
    `curves` in order, one trial at a time, max_t their length."""
    epochs = len(curves[0])
    rungs: dict[int, list[float]] = {}
    milestone = grace
    while milestone <= epochs:
        rungs[milestone] = []
        milestone *= eta
    used, kept = 0, []
    for curve in curves:
        for epoch, value in enumerate(curve, 1):
            used += 1
            recorded = rungs.get(epoch)
            if recorded is None:
                continue
            cutoff = np.nanpercentile(recorded, (1 - 1 / eta) * 100) if recorded else None
            recorded.append(value)
            if cutoff is not None and value < cutoff:
                break
        else:
            kept.append(curve[-1])
    return used, max(kept, default=float("nan"))


def replay(curves: list[list[float]]) -> None:
    rng = random.Random(0)
    samples = {
        "orders": [rng.sample(curves, len(curves)) for _ in range(500)],
        "bootstrap": [[rng.choice(curves) for _ in curves] for _ in range(1000)],
    }
    print("| grace | η | " + " | ".join(
        f"{kind}: share, mean gap (pt), P(gap ≤ 1 pt)" for kind in samples
    ) + " |")  # fmt: skip
    print("|---|---|" + "---|" * len(samples))
    for grace in range(1, len(curves[0]) // 2 + 2):
        for eta in (2, 3, 4):
            cells = []
            for drawn in samples.values():
                shares, gaps = [], []
                for curves_ in drawn:
                    used, best = successive_halving(curves_, grace, eta)
                    shares.append(used / sum(map(len, curves_)))
                    gaps.append(100 * (max(c[-1] for c in curves_) - best))
                within = sum(gap <= 1 for gap in gaps) / len(gaps)
                cells.append(
                    f"{statistics.mean(shares):.0%}, {statistics.mean(gaps):.2f}, {within:.2f}"
                )
            print(f"| {grace} | {eta} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="laptop")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--replay", action="store_true", help="replay ASHA on the FIFO curves")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from ikd.cluster import init_ray, trial_shape
    from ikd.tune.regenerate import study_runs
    from ikd.tune.search import trial_history, tune_variant

    results = (args.results or Path("results") / args.preset).resolve()
    run = study_runs(args.preset, {}, results, quick=False)[0]  # table3_methods
    variant = next(v for v in run.variants if v.name == "identitykd")
    spec = {**run.tuning_spec(variant), "study": "asha_off"}
    if args.replay:
        fifo = trial_history(
            run.runs.parent / "asha_off" / "tune", variant.name, variant.space, spec
        )
        if len(fifo) < run.trials or any(t.status != "complete" for t in fifo):
            raise SystemExit("the FIFO arm is not finished: run this script without --replay first")
        replay([t.values for t in fifo])
        return
    with_asha = run.trials_of(variant)
    if len(with_asha) < run.trials:
        raise SystemExit(f"table3_methods' identitykd tuning has {len(with_asha)}/{run.trials} "
                         "trials; run `ikd run` (or `ikd study studies/table3_methods.py`) first")  # fmt: skip
    init_ray()
    resources, threads = trial_shape(run.config)
    tune_variant(
        spec,
        variant.space,
        trials=run.trials,
        storage=str(run.runs.parent / "asha_off" / "tune-experiments"),
        name=variant.name,
        splits=run.splits(),
        epochs=run.config.train.epochs,
        resources=resources,
        threads=threads,
        asha=False,
    )
    without = trial_history(
        run.runs.parent / "asha_off" / "tune", variant.name, variant.space, spec
    )
    (e1, best1, n1), (e0, best0, n0) = summary(with_asha), summary(without)
    print("| scheduler | trials | trial-epochs | share of FIFO's | best val ACC |")
    print("|---|---|---|---|---|")
    print(f"| ASHA | {n1} | {e1} | {e1 / e0:.0%} | {best1:.4f} |")
    print(f"| none (FIFO) | {n0} | {e0} | 100% | {best0:.4f} |")
    met = best0 - best1 <= 0.01 and e1 <= 0.4 * e0
    print(f"\nASHA within 1 point of the full-budget best at ≤ 40 % of its compute: {met}")


if __name__ == "__main__":
    main()
