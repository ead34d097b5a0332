"""Per-epoch metrics of a 3-epoch smoke run of every method, to check that a refactor changed nothing.

    python benchmarks/smoke_runs.py record OUT.json [--root DIR]   # build (or reuse) + train + record
    python benchmarks/smoke_runs.py compare A.json B.json          # identical except timing fields?

Each case runs in-process (one thread) for 3 epochs with an lr milestone after epoch 2, the
identity-wise warm-up ending inside the run and FAWA engaging, so the per-identity updates, the
weight average and the schedule all act. The smoke dataset is built under `--root` once
(teacher trained) and reused; the runs are trained anew each time. Records hold every metric
of every epoch except `seconds`.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

COMMON = {
    "train.epochs": 3,
    "train.lr_milestones": "[2]",
    "train.batch_size": 8,
    "train.threads": 1,
    "teacher.source": "trained",
}
CASES = {
    "baseline": {"train.method": "baseline"},
    "vanilla_kd": {"train.method": "vanilla_kd"},
    "vanilla_kd-identity_wise": {
        "train.method": "vanilla_kd",
        "vanilla_kd.identity_wise": True,
        "vanilla_kd.warmup_epochs": 1,
    },
    "cfkd": {"train.method": "cfkd"},
    "mkd": {"train.method": "mkd"},
    "identitykd": {
        "train.method": "identitykd",
        "identitykd.warmup_epochs": 1,
        "identitykd.fawa_threshold": 0.0,
        "identitykd.tau": 0.1,
    },
    "identitykd-kl": {
        "train.method": "identitykd",
        "identitykd.contrast": "kl",
        "identitykd.warmup_epochs": 2,
        "identitykd.fawa_threshold": 0.3,
    },
}


def record(out: Path, root: Path) -> None:
    from ikd.cluster import init_ray
    from ikd.config import load_config
    from ikd.data.pipeline import build_dataset
    from ikd.train.driver import train_driver
    from ikd.train.runs import METRICS

    common = {**COMMON, "data.root": str(root / "datasets"), "train.runs_root": str(root / "runs")}
    shutil.rmtree(root / "runs", ignore_errors=True)  # trained here, not a finished run confirmed
    init_ray(2)
    build_dataset(load_config("smoke", common, warn=False), progress=False)
    result = {}
    for name, overrides in CASES.items():
        start = time.perf_counter()
        spec = {"preset": "smoke", "loop": "plain", "progress": False, "variant": name}
        run_dir = train_driver({**spec, **common, **overrides})
        lines = [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines()]
        result[name] = [{k: v for k, v in line.items() if k != "seconds"} for line in lines]
        seconds = time.perf_counter() - start
        print(f"{name}: {seconds:.1f} s, val acc {[m['val/acc'] for m in lines]}")
    out.write_text(json.dumps(result, indent=1, sort_keys=True))


def compare(a: Path, b: Path) -> int:
    first, second = json.loads(a.read_text()), json.loads(b.read_text())
    same = True
    for name in sorted(set(first) | set(second)):
        if first.get(name) == second.get(name):
            print(f"{name}: identical ({len(first[name])} epochs)")
        else:
            same = False
            print(f"{name}: DIFFERENT")
    return 0 if same else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("out", type=Path)
    rec.add_argument("--root", type=Path, default=Path("/tmp/ikd-smoke-runs"))
    cmp = commands.add_parser("compare")
    cmp.add_argument("a", type=Path)
    cmp.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args.out, args.root.resolve())
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
