"""Ray Data throughput of the simulate + DSP stage with 1 vs 2 CPUs, and the laptop build.

    python benchmarks/bench_data.py [--walks 48] [--repeats 3]

Each CPU count runs in a fresh process with a local Ray of that size (`init_ray`, so with the
pipeline's Ray Data settings); the stage (the fast-path simulation and DSP of `--walks`
laptop-preset walks → gait windows, in 16 blocks) runs once to warm up (worker processes,
imports), then `--repeats` times; the median samples (gait windows) per second is
reported. Prints a Markdown table for benchmarks/README.md.
"""

import argparse
import json
import subprocess
import sys
import time


def child(cpus: int, walks: int, repeats: int) -> None:
    import numpy as np
    import ray

    from ikd.cluster import init_ray
    from ikd.config import load_config
    from ikd.radar.captures import walk_windows_batch

    init_ray(cpus)  # the pipeline's own Ray and Ray Data settings
    ray.data.DataContext.get_current().enable_progress_bars = False
    config = load_config("laptop", warn=False)
    items = [{"identity": i % 36, "walk": i // 36} for i in range(walks)]

    def run() -> float:
        start = time.perf_counter()
        dataset = ray.data.from_items(items, override_num_blocks=16).map_batches(
            walk_windows_batch, fn_kwargs={"config": config}, batch_size=1, batch_format="numpy"
        )
        rows = dataset.materialize().count()
        return rows / (time.perf_counter() - start)

    run()  # warm-up
    rates = [run() for _ in range(repeats)]
    print(json.dumps({"cpus": cpus, "rates": rates, "median": float(np.median(rates))}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--walks", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.walks, args.repeats)
        return
    results = {}
    for cpus in (1, 2):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(cpus),
                "--walks",
                str(args.walks),
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[cpus] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"Ray Data, simulate + DSP of {args.walks} laptop walks, median of {args.repeats} (warm Ray)\n"
    )
    print("| CPUs | samples/s (runs) | median |")
    print("|---|---|---|")
    for cpus, result in results.items():
        runs = ", ".join(f"{r:.1f}" for r in result["rates"])
        print(f"| {cpus} | {runs} | **{result['median']:.1f}** |")
    print(f"\nspeed-up 2 vs 1 CPU: **{results[2]['median'] / results[1]['median']:.2f}×**")


if __name__ == "__main__":
    main()
