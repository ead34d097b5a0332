"""Whether weight decay matters for Table 4's students (issue 23 item 4: "each student gets its own
learning rate (and weight decay, if it matters)"), measured on the picked configurations' seeds.

    python benchmarks/weight_decay.py [--results results/laptop] [--trials RUN …]
                                      [--decays 1e-4 1e-3] [--seeds 3]

A tuning run's configuration (`--trials`: run folders under `<results>/runs`; by default
MobileNet's and EfficientNet's IdentityKD picks of Table 4's first search, over the lr alone
with no decay, 2026-12-06) trains again on val with Adam's L2 weight decay (torch's
`weight_decay`: the paper's optimizer with decay added), on the tuning seed and the
re-evaluation seeds, and is compared seed by seed with the runs of the same configuration
without decay: the tuning run and its re-evaluations beside it where they exist (the plain loop
is deterministic on one machine: decay 0 here would repeat them), else trained here. Those picks
were chosen by their first 3 seeds, which favours no decay by a little. Each decay gets the
paired difference's 95 % interval and the report's verdict word (`Difference.verdict`).

The runs set `train.weight_decay` (0, the default, is left out of the run hash: a decay-0 run
is named as the pick's own), live under study `<study>-weight_decay` and are kept as the
measurement's records. Finished runs are reused (the command resumes); prints Markdown for
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from ikd.report.records import read_run
from ikd.report.stats import paired_difference
from ikd.train.driver import train_driver
from ikd.train.runs import DivergedError, drop_checkpoints, resolve_run
from ikd.tune.stages import REEVAL_SEED, RUNS, StudyRun

log = logging.getLogger("weight_decay")
# Table 4's IdentityKD picks of its first search, over the lr alone (Table 3's range), 2026-12-06
# (studies/table4_students.py: moved aside but for its start trial, MobileNet's pick)
PICKS = (
    "table4_students/tune/identitykd-mobilenet-3bb3414f7f4e-seed0",
    "table4_students-first_lr_search/tune/identitykd-efficientnet-e24eb484c0b5-seed0",
)


def decayed_val(run: StudyRun, spec: dict, decay: float) -> float:
    """Last-epoch val ACC of `spec` trained with weight decay `decay` (0 if it diverged)."""
    spec = {**spec, "train.weight_decay": decay, "study": f"{run.study.name}-weight_decay"}
    folder = resolve_run(spec)[2]
    record = read_run(folder)
    if record is None or record.status not in ("complete", "diverged"):
        log.info("training %s with weight decay %g", folder.name, decay)
        with contextlib.suppress(DivergedError):  # recorded in its run folder: val ACC 0
            drop_checkpoints(train_driver({**spec, "splits": run.splits()}))
        record = read_run(folder)
    return record.value("val/acc") if record.status == "complete" else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results/laptop"))
    parser.add_argument("--study", default="table4_students")
    parser.add_argument("--trials", nargs="+", default=list(PICKS), help="tuning runs to measure")
    parser.add_argument("--decays", nargs="+", type=float, default=[1e-4, 1e-3])
    parser.add_argument("--seeds", type=int, default=3, help="paired seeds per decay")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    run = StudyRun.from_record(args.results / args.study)
    variants = {v.name: v for v in run.variants}
    first = REEVAL_SEED + run.config.train.seed
    seeds = [run.config.train.seed, *range(first, first + args.seeds - 1)]
    rows = []
    for path in args.trials:
        tuning = read_run(args.results / RUNS / path)
        if tuning is None or tuning.status != "complete":
            raise SystemExit(f"{args.results / RUNS / path}: not a complete tuning run")
        variant = variants[tuning.variant]
        specs = [
            {**run.tuning_spec(variant), "train.lr": tuning.param("train.lr"), "train.seed": seed,
             "stage": "reeval", "progress": False}
            for seed in seeds
        ]  # fmt: skip
        own = [read_run(tuning.folder.parent.parent / "reeval" / resolve_run(s)[2].name) for s in specs[1:]]  # fmt: skip
        plain = [tuning.value("val/acc")] + [
            r.value("val/acc") if r is not None and r.status == "complete" else decayed_val(run, s, 0.0)
            for r, s in zip(own, specs[1:], strict=True)
        ]  # fmt: skip
        for decay in args.decays:
            decayed = [decayed_val(run, spec, decay) for spec in specs]
            difference = paired_difference(
                "decay", "none", {s: 100 * v for s, v in zip(seeds, decayed, strict=True)},
                {s: 100 * v for s, v in zip(seeds, plain, strict=True)},
            )  # fmt: skip
            student = variant.name.split("-")[1]
            rows.append((student, tuning.param("train.lr"), decay, plain, decayed, difference))

    print(f"## Weight decay on {args.study}'s configurations ({args.results})\n")
    print("| student | lr | weight decay | val ACC without, per seed (%) | with (%) | "
          "with − without (points, 95 % CI, n) | seeds where decay wins | verdict |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for student, lr, decay, plain, decayed, d in rows:
        print(
            f"| {student} | {lr:.2e} | {decay:g} | {' '.join(f'{100 * v:.1f}' for v in plain)} | "
            f"{' '.join(f'{100 * v:.1f}' for v in decayed)} | {d.mean:+.2f} "
            f"[{d.low:+.2f}, {d.high:+.2f}], n = {d.n} | {d.wins:.0%} | {d.verdict} |"
        )


if __name__ == "__main__":
    main()
