"""What the laptop regeneration cost, read from its records (issue 12).

    python benchmarks/regeneration.py [results/laptop] [--against OTHER]

Per study `ikd run` ran into a results tree: its stages' wall time (study.json, summed over the
sessions that ran them, an interrupted one included), its trials and final runs, and a trial's
wall time split into training and the rest (`ikd.report.overview.costs`, the table the results'
README ends with); the total; and, once the regeneration has ended, each `ikd run`'s estimate
of the time left against what it then took (`estimate_lines`, from estimates.json). Times are only as clean as the machine was quiet while the
regeneration ran; the median resnet18 epoch beside each study says how fast the machine was.

`--against OTHER`: every table's and figure's test ACC beside another regeneration's of the same
preset, with the difference's Welch interval and a verdict (`ikd.report.compare`, what `ikd run`
ends with on a machine whose teacher differs from the committed one) — e.g. two tuning paths (a
resumed search reseeds TPE and starts ASHA's rungs empty: studies/README.md), so the differences
show how much the results move with the path, beside their seed noise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ikd.report.compare import compare_trees
from ikd.report.overview import cost_table, costs, estimate_lines
from ikd.tune.regenerate import ORDER


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default="results/laptop", type=Path)
    parser.add_argument("--against", type=Path, help="another regeneration's results tree")
    args = parser.parse_args()
    frame = costs(args.results)
    if frame.empty:
        parser.error(f"{args.results}: no rendered study (run `ikd run` first)")
    print("\n".join([*cost_table(frame), "", *estimate_lines(args.results)]))
    if args.against is not None:
        frame = compare_trees(args.results, args.against, ORDER)
        print("\n" + frame.to_string(index=False, float_format="%.2f"))


if __name__ == "__main__":
    main()
