"""What re-evaluating a search's best trials buys (issue 23 item 3), measured on a study's runs.

    python benchmarks/reevaluation.py [--results results/laptop] [--study table3_methods]
                                      [--seeds 5]

A tuned variant's configuration is the best mean val ACC over 3 seeds among its best 3
complete trials (`Study.reevaluate`), not the single trial with the best val ACC of one seed.
Per tuned variant this prints:

- val, on the seeds that picked: both picks' mean val ACC over the same 3 seeds (the tuning
  run's and its 2 re-evaluations'; the pick wins there by construction), and the single-seed
  pick's own seed-0 val ACC — how much of its lead was one seed's luck;
- where the picks differ, the single-seed pick's configuration is trained as a final run on the
  first `--seeds` final seeds (stage final, study `<study>-single_seed_pick`: its run folders
  sit beside the study's, kept as the measurement's records), then on seeds the pick was not
  chosen by: both configurations' val ACC on final seeds 1… (seed 0 is the tuning run's), and
  their test ACC, paired by seed (mean difference and 95 % t-interval);
- compute: the re-evaluation runs' training seconds against the search's;
- whether the pick by the re-evaluation seeds alone (the tuning seed, which chose the trials
  re-evaluated, left out) is the same configuration.

Finished runs are reused (the command resumes); prints Markdown for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from ikd.report.records import read_run
from ikd.report.stats import paired_difference, pick_by_mean
from ikd.storage import read_json
from ikd.train.driver import train_driver
from ikd.train.runs import DivergedError, keep_model_only, resolve_run
from ikd.tune.stages import BEST_CONFIG, StudyRun

log = logging.getLogger("reevaluation")


def single_seed_finals(run: StudyRun, variant, params: dict, seeds: int) -> list:
    """The single-seed pick's final runs (`RunRecord`s) on the first `seeds` seeds, trained
    where missing."""
    records = []
    for spec in run.final_specs(variant, tune=False)[:seeds]:
        spec = {**spec, **params, "study": f"{run.study.name}-single_seed_pick"}
        folder = resolve_run(spec)[2]
        record = read_run(folder)
        if record is None or record.test is None:
            log.info("training %s", folder.name)
            try:
                keep_model_only(train_driver({**spec, "splits": run.splits()}))
            except DivergedError:
                continue
            record = read_run(folder)
        records.append(record)
    return records


def by_seed(records, key: str, first: int = 0) -> dict[int, float]:
    """A metric (%) of final runs by seed, from seed `first` on."""
    return {r.seed: 100 * r.value(key) for r in records if r.seed >= first}


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results/laptop"))
    parser.add_argument("--study", default="table3_methods")
    parser.add_argument("--seeds", type=int, default=5, help="final seeds of the single pick")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    run = StudyRun.from_record(args.results / args.study)
    best = read_json(run.results / BEST_CONFIG) or {}
    finals = run.finals()
    tuning = run.tuning()
    reevaluations = run.reevaluation_records()
    rows = []
    for variant in (v for v in run.variants if v.space):
        entry = best.get(variant.name, {})
        if "reevaluated" not in entry:
            log.warning("%s: not re-evaluated (a tree from before issue 23)", variant.name)
            continue
        scores, pick, single = entry["reevaluated"], entry["run"], entry["single_seed_pick"]
        means = {name: 100 * mean(values) for name, values in scores.items()}
        fresh = {name: values[1:] for name, values in scores.items() if len(values) > 1}
        row = {
            "variant": variant.name,
            "same": pick == single,
            "fresh_same": pick_by_mean(fresh) == pick if fresh else None,
            "pick_val": means[pick],
            "single_val": means[single],
            "single_seed0": 100 * scores[single][0],
            "search_s": sum(r.train_seconds for r in tuning[variant.name]),
            "reeval_s": sum(r.train_seconds for r in reevaluations[variant.name]),
        }
        if pick != single:
            params = next(t.params for t in run.trials_of(variant) if t.folder.name == single)
            others = single_seed_finals(run, variant, params, args.seeds)
            mine = [r for r in finals[variant.name] if r.seed < args.seeds]
            difference = paired_difference(
                "pick", "single", by_seed(mine, "test/acc"), by_seed(others, "test/acc")
            )
            row.update(test=difference.mean, low=difference.low, high=difference.high,
                       n=difference.n, final_val=mean(by_seed(mine, "val/acc", 1).values()),
                       single_final_val=mean(by_seed(others, "val/acc", 1).values()))  # fmt: skip
        rows.append(row)

    print(f"## Re-evaluation on {args.study} ({args.results})\n")
    print("| variant | picks | selection val, pick (%) | selection val, single-seed pick (%) | "
          "its seed-0 val (%) | final val seeds 1…, pick / single-seed pick (%) | test ACC, "
          "pick − single-seed pick (points, 95 % CI, n) | search s | re-evaluation s | "
          "pick by the re-evaluation seeds alone |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        final_val = (
            f"{row['final_val']:.2f} / {row['single_final_val']:.2f}" if "final_val" in row else "—"
        )
        test = (
            "— (the same configuration)"
            if row["same"]
            else f"{row['test']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}], n = {row['n']}"
            if not math.isnan(row.get("test", math.nan))
            else "—"
        )
        print(
            f"| {row['variant']} | {'same' if row['same'] else 'differ'} | {row['pick_val']:.2f} | "
            f"{row['single_val']:.2f} | {row['single_seed0']:.2f} | {final_val} | {test} | "
            f"{row['search_s']:.0f} | {row['reeval_s']:.0f} | "
            f"{ {True: 'same', False: 'differ', None: '—'}[row['fresh_same']] } |"
        )
    search = sum(r["search_s"] for r in rows)
    reeval = sum(r["reeval_s"] for r in rows)
    if search:
        print(f"\nRe-evaluation: {reeval:.0f} s of training against the searches' {search:.0f} s "
              f"({reeval / search:.0%}).")  # fmt: skip


if __name__ == "__main__":
    main()
