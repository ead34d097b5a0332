"""How many final seeds a compared pair needs, and whether more test walks would buy more.

    python benchmarks/power.py [--results results/laptop] [--half-width 1.0] [--boot 2000]

For every compared pair of Table 3 and Table 5 (`Table.compare`), from the committed final runs'
test predictions (`test_predictions.parquet`, a row per test window), a seed's paired
difference of test ACC is modelled as d_s = Δ + t_s + c + u_s:

- t_s, training noise (initialisation, data order): only more seeds average it away;
- c + u_s, the evaluation's own noise, from which walks happen to be in the test split: c is
  shared by every seed (they are all tested on the same walks), u_s differs between seeds
  (each seed's models miss other walks). Both shrink as 1/k with k× the test walks per identity.

A cluster bootstrap of the test split (each identity's test walks drawn with replacement, one
draw applied to every run of the pair) estimates var(c + u) — the variance of one seed's
difference — and var(c + ū) — that of the seeds' mean difference —, hence var(u) and var(c);
var(t) is the spread of d_s over seeds less var(u). The interval a table prints is a t-interval
over seeds, whose width comes from var(t) + var(u)/k; var(c)/k is what no number of seeds
removes (the test split's own luck, reported beside it).

Variances are pooled over the pairs (each pair's spread over 3 seeds has 2 degrees of freedom).
Prints Markdown for benchmarks/README.md and studies/README.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats

from ikd.report.records import RunRecord
from ikd.train.runs import TEST_PREDICTIONS
from ikd.tune.stages import StudyRun

PAIRED = ("table3_methods", "table5_contrast")


def walk_counts(run: RunRecord) -> pd.DataFrame:
    """A final run's test split per walk: right windows and windows, indexed (identity, walk)."""
    path = run.folder / TEST_PREDICTIONS
    frame = pq.read_table(path.path, filesystem=path.fs).to_pandas()
    right = np.stack(frame["logits"].to_numpy()).argmax(axis=1) == frame["identity"].to_numpy()
    frame = frame.assign(right=right.astype(float))
    return frame.groupby(["identity", "walk"])["right"].agg(["sum", "count"])


def pair_noise(
    a: list[pd.DataFrame], b: list[pd.DataFrame], draws: int, rng: np.random.Generator
) -> dict[str, float]:
    """A pair's per-seed differences (points) and the bootstrap variances of one seed's
    difference and of the seeds' mean difference. `a[s]`, `b[s]`: seed s's `walk_counts`."""
    index = a[0].index
    identities = index.get_level_values(0).to_numpy()
    groups = [np.flatnonzero(identities == i) for i in np.unique(identities)]
    right = np.stack([x.loc[index, "sum"].to_numpy() - y.loc[index, "sum"].to_numpy()
                      for x, y in zip(a, b, strict=True)])  # fmt: skip
    count = a[0].loc[index, "count"].to_numpy()
    observed = 100 * right.sum(axis=1) / count.sum()
    each = np.empty((draws, len(a)))
    for d in range(draws):
        rows = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        each[d] = 100 * right[:, rows].sum(axis=1) / count[rows].sum()
    return {
        "differences": observed,
        "single": float(each.var(axis=0, ddof=1).mean()),
        "mean": float(each.mean(axis=1).var(ddof=1)),
        "walks": int(pd.Series(identities).value_counts().median()),
    }


def seeds_needed(variance: float, half_width: float, cap: int = 1000) -> int:
    """The fewest seeds n ≥ 2 whose 95 % t-interval of a mean has half-width ≤ `half_width`."""
    for n in range(2, cap + 1):
        if stats.t.ppf(0.975, n - 1) * math.sqrt(variance / n) <= half_width:
            return n
    return cap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/laptop"))
    parser.add_argument("--half-width", type=float, default=1.0)
    parser.add_argument("--boot", type=int, default=2000)
    parser.add_argument("--cap", type=int, default=15, help="the most seeds a study may run")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    rows = []
    for name in PAIRED:
        if not (args.results / name / "study.json").exists():  # a regeneration not there yet
            print(f"({name}: not run yet in {args.results})\n")
            continue
        run = StudyRun.from_record(args.results.resolve() / name)
        finals = run.finals()
        for a, b in run.study.report.compare:
            runs = {side: {r.seed: walk_counts(r) for r in finals[side]} for side in (a, b)}
            seeds = sorted(set(runs[a]) & set(runs[b]))
            if len(seeds) < 2:  # no spread to measure yet
                print(f"({name}: {a} − {b} has {len(seeds)} paired seed(s) so far)\n")
                continue
            noise = pair_noise([runs[a][s] for s in seeds], [runs[b][s] for s in seeds],
                               args.boot, rng)  # fmt: skip
            n = len(seeds)
            seed_specific = max(noise["single"] - noise["mean"], 0.0) * n / (n - 1)
            rows.append(
                {
                    "pair": f"{name}: {a} − {b}",
                    "n": n,
                    "mean": float(noise["differences"].mean()),
                    "spread": float(noise["differences"].var(ddof=1)),
                    "u": seed_specific,
                    "c": max(noise["single"] - seed_specific, 0.0),
                    "walks": noise["walks"],
                }
            )
    table = pd.DataFrame(rows)
    freedom = (table["n"] - 1).sum()
    spread = float((table["spread"] * (table["n"] - 1)).sum() / freedom)
    u, c = float(table["u"].mean()), float(table["c"].mean())
    t = max(spread - u, 0.0)
    walks = int(table["walks"].median())

    print("| pair | n | mean difference | std over seeds | evaluation std: per seed (u) | "
          "shared (c) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in table.to_dict("records"):
        print(f"| {r['pair']} | {r['n']} | {r['mean']:+.2f} | {math.sqrt(r['spread']):.2f} "
              f"| {math.sqrt(r['u']):.2f} | {math.sqrt(r['c']):.2f} |")  # fmt: skip
    print()
    print(f"Pooled (points²): spread of a seed's paired difference {spread:.2f} (std "
          f"{math.sqrt(spread):.2f}) = training {t:.2f} + the evaluation's per-seed part {u:.2f} "
          f"({100 * u / spread:.0f} %); the evaluation's shared part {c:.2f} (std "
          f"{math.sqrt(c):.2f}), which no number of seeds removes. Test walks per identity "
          f"today: {walks}.")  # fmt: skip
    print()
    print(f"| test walks per identity | std of a seed's difference | seeds for ±{args.half_width} "
          f"| half-width at {args.cap} seeds | shared evaluation std |")  # fmt: skip
    print("|---|---|---|---|---|")
    for k in (1, 2, 3, 4, 6):
        variance = t + u / k
        half = stats.t.ppf(0.975, args.cap - 1) * math.sqrt(variance / args.cap)
        print(f"| {walks * k} | {math.sqrt(variance):.2f} | {seeds_needed(variance, args.half_width)} "
              f"| {half:.2f} | {math.sqrt(c / k):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
