"""What the laptop regeneration cost, read from its records (issue 12).

    python benchmarks/regeneration.py [results/laptop] [--against OTHER]

Per study `ikd run` ran into a results tree: its stages' wall time (study.json, summed over the
sessions that ran them, an interrupted one included), its trials and final runs, and a trial's
wall time split into training and the rest (`ikd.report.overview.costs`, the table the results'
README ends with); the total. Times are only as clean as the machine was quiet while the
regeneration ran; the median resnet18 epoch beside each study says how fast the machine was.

`--against OTHER`: every table's and figure's test ACC (and worst-identity ACC) beside another
regeneration's of the same preset — two tuning paths (a resumed search reseeds TPE and starts
ASHA's rungs empty: studies/README.md), so the differences show how much the results move with
the path, beside their seed std.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ikd.report.overview import cost_table, costs

COLUMNS = ("acc", "worst_acc")


def compare(ours: Path, other: Path) -> list[str]:
    """Markdown rows: per study and variant, mean ± std over seeds here and in `other`, and the
    difference of the means."""
    lines = [
        "| study | variant | ACC here | ACC other | Δ | worst ACC here | worst ACC other | Δ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted([*ours.glob("*/table.csv"), *ours.glob("*/figure.csv")]):
        there = other / path.parent.name / path.name
        if not there.exists():
            continue
        a, b = (pd.read_csv(p).set_index("variant") for p in (path, there))
        for variant in a.index.intersection(b.index):
            cells = []
            for column in COLUMNS:
                x, y = a.loc[variant], b.loc[variant]
                cells += [
                    f"{x[f'{column}_mean']:.2f} ± {x[f'{column}_std']:.2f}",
                    f"{y[f'{column}_mean']:.2f} ± {y[f'{column}_std']:.2f}",
                    f"{x[f'{column}_mean'] - y[f'{column}_mean']:+.2f}",
                ]
            lines.append(f"| {path.parent.name} | {variant} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default="results/laptop", type=Path)
    parser.add_argument("--against", type=Path, help="another regeneration's results tree")
    args = parser.parse_args()
    frame = costs(args.results)
    if frame.empty:
        parser.error(f"{args.results}: no rendered study (run `ikd run` first)")
    print("\n".join(cost_table(frame)))
    if args.against is not None:
        print("\n" + "\n".join(compare(args.results, args.against)))


if __name__ == "__main__":
    main()
