"""Does ASHA earn its place? Table 3's identitykd search with and without it (issue 12).

    python benchmarks/asha_budget.py [--preset laptop] [--results results/laptop]

The same trial budget, space, TPE seed and shared splits as the study's identitykd tuning
(`studies/table3_methods.py`, run by `ikd run`, whose ASHA-scheduled trials are read from the run
records), once more with every trial running all its epochs (FIFO), in the study "asha_off" beside
it. Prints the compute each used (trial-epochs, training seconds) and the best val accuracy of a
complete trial (val only: the test split is never read). Issue 12's target: ASHA within 1 point of
the full-budget best at ≤ 40 % of its compute. Finished trials are reused.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def summary(trials: list) -> tuple[int, float, float]:
    """(trial-epochs, best val acc of a complete trial, trials) of a variant's tuning runs."""
    epochs = sum(len(trial.values) for trial in trials)
    complete = [trial.values[-1] for trial in trials if trial.status == "complete" and trial.values]
    return epochs, max(complete, default=float("nan")), len(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="laptop")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from ikd.cluster import cluster_cpus, init_ray
    from ikd.tune.regenerate import study_runs
    from ikd.tune.search import trial_history, tune_variant

    results = (args.results or Path("results") / args.preset).resolve()
    run = study_runs(args.preset, {}, results, quick=False)[0]  # table3_methods
    variant = next(v for v in run.variants if v.name == "identitykd")
    with_asha = run.trials_of(variant)
    if len(with_asha) < run.trials:
        raise SystemExit(f"table3_methods' identitykd tuning has {len(with_asha)}/{run.trials} "
                         "trials; run `ikd run` (or `ikd study studies/table3_methods.py`) first")  # fmt: skip
    init_ray()
    spec = {**run.tuning_spec(variant), "study": "asha_off"}
    tune_variant(
        spec,
        variant.space,
        trials=run.trials,
        storage=str(run.runs.parent / "asha_off" / "tune-experiments"),
        name=variant.name,
        splits=run.splits(),
        epochs=run.config.train.epochs,
        threads=run.config.train.threads or cluster_cpus(),
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
