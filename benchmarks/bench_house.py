"""What the house costs before any work: importing the config, the whole test suite, and what a
resumed `ikd run` reads before it trains anything.

    python benchmarks/bench_house.py import [--tree OLD] [--repeats 7]   # `from ikd.config import Config; Config()`
    python benchmarks/bench_house.py suite [--tree OLD]                  # `python -m pytest -q`, wall
    python benchmarks/bench_house.py resume [--tree OLD] [--results results/laptop] [--repeats 3]
    python benchmarks/bench_house.py report [--tree OLD] [--results results/laptop] [--repeats 3]

Each measurement runs in a fresh process for this checkout and, with `--tree`, for another
checkout of ikd (e.g. a `git worktree` of an older commit, put first on PYTHONPATH), interleaved
so that drifts in the machine's speed hit both alike. `import`: median wall seconds of
`--repeats` runs. `suite`: one run of the README's test command per tree, one after the other.
`resume`: median wall seconds of counting what a results tree has left (`ikd run`'s estimate
and progress lines: every study's finished trials and final runs, resolved from the records).
`report`: median wall seconds of `ikd report` on a copy of the results tree (every table, figure
and the overview rendered again from the records).
Prints Markdown rows for benchmarks/README.md.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
IMPORT = "from ikd.config import Config; Config()"
RESUME = """
import json, sys
from pathlib import Path
from ikd.tune.regenerate import ORDER, remaining, study_runs
results = Path(sys.argv[1])
record = json.loads((results / ORDER[0] / "study.json").read_text())
overrides = {k: v for k, v in record["overrides"].items() if k != "train.runs_root"}
print(remaining(study_runs(record["preset"], overrides, results, record["quick"])))
"""


def _run(tree: Path, args: list[str]) -> float:
    """Wall seconds of `python ARGS` with `tree`'s ikd first on the path, run from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:  # said, and timed still: one flaky test need not lose a suite run
        tail = result.stdout.decode()[-2000:] + result.stderr.decode()[-2000:]
        print(f"{tree}: python {' '.join(args)} failed (exit {result.returncode}):\n{tail}")
    return seconds


def measure(trees: dict[str, Path], args: list[str], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(repeats):
        for label, tree in trees.items():
            times[label].append(_run(tree, args))
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["import", "suite", "resume", "report"])
    parser.add_argument("--tree", type=Path, default=None, help="another ikd checkout")
    parser.add_argument("--repeats", type=int, help="runs per tree (import: 7, others: 3)")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "laptop")
    args = parser.parse_args()
    trees = {"this checkout": HERE}
    if args.tree is not None:
        trees = {f"{args.tree}": args.tree.resolve(), **trees}
    if args.what == "import":
        args.repeats = args.repeats or 7
        results = measure(trees, ["-c", IMPORT], args.repeats)
        print(f"`{IMPORT}`, median of {args.repeats} fresh processes\n")
    elif args.what == "resume":
        args.repeats = args.repeats or 3
        results = measure(trees, ["-c", RESUME, str(args.results.resolve())], args.repeats)
        print(f"counting what {args.results} has left, median of {args.repeats} fresh processes\n")
    elif args.what == "report":
        args.repeats = args.repeats or 3
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / args.results.name
            shutil.copytree(args.results, copy)
            results = measure(trees, ["-m", "ikd", "report", "--results", str(copy)], args.repeats)
        print(f"`ikd report` on a copy of {args.results}, median of {args.repeats} runs\n")
    else:
        results = measure(trees, ["-m", "pytest", "-q", "-p", "no:cacheprovider"], 1)
        print("`python -m pytest -q`, one run each, wall\n")
    base = next(iter(results.values()))
    print("| tree | seconds | ratio |\n|---|---|---|")
    for label, seconds in results.items():
        print(f"| {label} | {seconds:.2f} | {seconds / base:.2f}× |")


if __name__ == "__main__":
    main()
