"""What the laptop regeneration cost, read from its records (issue 12).

    python benchmarks/regeneration.py [results/laptop]

Per study `ikd run` ran into a results tree: its stages' wall time (study.json, summed over the
sessions that ran them, an interrupted one included), its trials and final runs, and a trial's
wall time split into training and the rest (`ikd.report.overview.costs`, the table the results'
README ends with); the total. Times are only as clean as the machine was quiet while the
regeneration ran; the median resnet18 epoch beside each study says how fast the machine was.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ikd.report.overview import cost_table, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default="results/laptop", type=Path)
    args = parser.parse_args()
    frame = costs(args.results)
    if frame.empty:
        parser.error(f"{args.results}: no rendered study (run `ikd run` first)")
    print("\n".join(cost_table(frame)))


if __name__ == "__main__":
    main()
