"""What the KD target looks like on the laptop preset, and what a second worker changes.

    python benchmarks/kd_target.py [--runs-root DIR] [--out FILE.md]

Three tuning-stage runs (val only; the test split is never read) on the laptop dataset (built
first with `ikd data build`), seed 0, the paper's method settings, each through Ray Train:
baseline and identitykd with 1 worker, identitykd with 2 workers. Prints, per epoch, identitykd's
composer training accuracy (`train/fused_acc`) and CE, the fraction of samples whose eq. 14 hinge
is active (T = 1), its evaluated and live val accuracy beside the baseline's, and the 2-worker
run's val accuracy; then how far the 1- and 2-worker runs differ, beside what another seed (1
worker) changes. Finished runs are reused, so a
second call only prints.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

RUNS = {
    "baseline-1w": {"train.method": "baseline", "train.workers": 1},
    "identitykd-1w": {"train.method": "identitykd", "train.workers": 1},
    "identitykd-2w": {"train.method": "identitykd", "train.workers": 2},
    # what another seed changes, for scale
    "identitykd-1w-seed1": {"train.method": "identitykd", "train.workers": 1, "train.seed": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-root", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, help="also write the Markdown tables here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from ikd.train.driver import train_driver
    from ikd.train.runs import METRICS, read_metrics

    metrics = {}
    for name, overrides in RUNS.items():
        spec = {"preset": "laptop", "study": "kd_target", "stage": "tune", "variant": name}
        run_dir = train_driver(
            {**spec, **overrides, "train.runs_root": str(args.runs_root.resolve())}
        )
        metrics[name] = read_metrics(run_dir / METRICS)

    base, one, two = metrics["baseline-1w"], metrics["identitykd-1w"], metrics["identitykd-2w"]
    seed = metrics["identitykd-1w-seed1"]
    lines = [
        "| epoch | lr | identitykd fused_acc | composer CE | hinge active | identitykd val acc"
        " (live) | FAWA epochs | baseline val acc | identitykd 2 workers val acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b, i, w in zip(base, one, two, strict=True):
        lines.append(
            f"| {i['epoch'] + 1} | {i['lr']:.0e} | {i['train/fused_acc']:.3f} | "
            f"{i['train/loss/composer_ce']:.3f} | {i['train/hinge_active']:.3f} | "
            f"{i['val/acc']:.3f} ({i['val/live_acc']:.3f}) | {i['fawa/epochs']} | "
            f"{b['val/acc']:.3f} | {w['val/acc']:.3f} |"
        )
    a, b, c = one[-1], two[-1], seed[-1]
    keys = ["val/acc", "val/worst_acc", "train/loss", "train/acc"]
    lines += [
        "",
        "| identitykd, last epoch | 1 worker | 2 workers | difference | 1 worker, seed 1 |"
        " difference |",
        "|---|---|---|---|---|---|",
        *(
            f"| {k} | {a[k]:.4f} | {b[k]:.4f} | {b[k] - a[k]:+.4f} | {c[k]:.4f} | "
            f"{c[k] - a[k]:+.4f} |"
            for k in keys
        ),
        f"| seconds per epoch (median) | {_median(one):.0f} | {_median(two):.0f} | | "
        f"{_median(seed):.0f} | |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _median(lines: list[dict]) -> float:
    seconds = sorted(line["seconds"] for line in lines)
    return seconds[len(seconds) // 2]


if __name__ == "__main__":
    main()
