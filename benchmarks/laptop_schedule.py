"""Does the laptop preset's lr schedule let a trial finish training? (issue 12)

    python benchmarks/laptop_schedule.py [--runs-root DIR] [--out FILE.md]

Tuning-stage runs (val only) on the laptop dataset, the plain loop with every core (what a study
trial runs), seed 0, paper defaults for each method: baseline and identitykd under MultiStepLR
with the laptop preset's milestones (6, 8), with one drop at 8, and with none (constant lr), 10
epochs each. Prints val accuracy per epoch, identitykd's composer training accuracy
(`train/fused_acc`) and the seconds per epoch. Finished runs are reused.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

SCHEDULES = {"(6, 8)": (6, 8), "(8,)": (8,), "constant": ()}
METHODS = ("baseline", "identitykd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-root", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, help="also write the Markdown tables here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from ikd.train.driver import train_driver
    from ikd.train.runs import METRICS, read_metrics

    curves = {}
    for method in METHODS:
        for name, milestones in SCHEDULES.items():
            spec = {
                "preset": "laptop",
                "study": "laptop_schedule",
                "stage": "tune",
                "loop": "plain",
                "progress": False,
                "variant": f"{method}-{name.strip('(),').replace(', ', '-') or 'constant'}",
                "train.method": method,
                "train.lr_milestones": milestones,
                "train.runs_root": str(args.runs_root.resolve()),
            }
            curves[(method, name)] = read_metrics(train_driver(spec) / METRICS)

    header = "| epoch | " + " | ".join(f"{m} {s}" for m, s in curves) + " |"
    lines = [
        "val ACC per epoch (identitykd: its composer's train accuracy in brackets):",
        "",
        header,
        "|---|" + "---|" * len(curves),
    ]
    for epoch in range(max(len(c) for c in curves.values())):
        cells = []
        for (method, _), curve in curves.items():
            line = curve[epoch]
            cell = f"{line['val/acc']:.3f}"
            if method == "identitykd":
                cell += f" ({line['train/fused_acc']:.2f})"
            cells.append(cell)
        lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    seconds = [
        sorted(line["seconds"] for line in curve)[len(curve) // 2] for curve in curves.values()
    ]
    lines.append("| s/epoch (median) | " + " | ".join(f"{s:.1f}" for s in seconds) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
