"""Radar benchmark: simulate + DSP of one 4 s walk, fast vs exact path, one thread.

    python benchmarks/bench_radar.py [--repeats 7]

Reports core-seconds (process CPU time with every BLAS/OpenMP pool at one thread; median of
`--repeats` runs) split into scene (kinematics and scatterer returns), synthesis, and DSP
(clutter removal, STFT, gait windows → images), for the paper's radar settings and the laptop
preset, plus the peak memory (tracemalloc) of simulating one walk on each path. Prints a
Markdown table for benchmarks/README.md.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from ikd.config import Config, load_config  # noqa: E402
from ikd.radar import dsp  # noqa: E402
from ikd.radar.scene import draw_identity, draw_walk  # noqa: E402
from ikd.radar.simulate import synthesize_adc, synthesize_range_profiles, walk_scene  # noqa: E402


def one_walk(config: Config, exact: bool, identity: int = 1, walk: int = 0) -> dict[str, float]:
    """Core-seconds of each stage for one walk."""
    radar, bins = config.radar, dsp.range_band(config.radar, config.dsp)
    rng = np.random.default_rng(0)
    times = {}
    start = time.process_time()
    scene = walk_scene(
        draw_identity(0, identity), draw_walk(0, identity, walk), radar, config.num_frames
    )
    times["scene"] = time.process_time() - start
    start = time.process_time()
    if exact:
        profiles = dsp.range_fft(synthesize_adc(scene, radar, rng), bins)
    else:
        profiles = synthesize_range_profiles(scene, radar, bins, rng)
    times["synthesis"] = time.process_time() - start
    start = time.process_time()
    images, _ = dsp.spectrogram_windows(
        dsp.walk_spectrogram(profiles, radar, config.dsp), radar, config.dsp
    )
    np.ascontiguousarray(images)  # materialise the three channels, as a dataset writer would
    times["dsp"] = time.process_time() - start
    times["total"] = sum(times.values())
    return times


def median_times(config: Config, exact: bool, repeats: int) -> dict[str, float]:
    one_walk(config, exact)  # warm-up: imports, FFT plans, allocator
    runs = [one_walk(config, exact, identity=i % 4, walk=i % 2) for i in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def peak_memory_mb(config: Config, exact: bool) -> float:
    radar, bins = config.radar, dsp.range_band(config.radar, config.dsp)
    tracemalloc.start()
    scene = walk_scene(draw_identity(0, 1), draw_walk(0, 1, 0), radar, config.num_frames)
    if exact:
        dsp.range_fft(synthesize_adc(scene, radar, np.random.default_rng(0)), bins)
    else:
        synthesize_range_profiles(scene, radar, bins, np.random.default_rng(0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    paper, laptop = load_config("paper", warn=False), load_config("laptop", warn=False)
    rows = [
        ("paper radar, fast path", paper, False, args.repeats),
        ("paper radar, exact path", paper, True, max(3, args.repeats // 3)),
        ("laptop preset, fast path", laptop, False, args.repeats),
    ]
    print(
        f"one {paper.synthetic.walk_duration_s:g} s walk ({paper.num_frames} frames), 1 thread, median core-seconds\n"
    )
    print("| setting | scene | synthesis | DSP → windows | total | peak memory, simulate |")
    print("|---|---|---|---|---|---|")
    for label, config, exact, repeats in rows:
        t = median_times(config, exact, repeats)
        memory = peak_memory_mb(config, exact)
        print(
            f"| {label} (n={repeats}) | {t['scene']:.3f} | {t['synthesis']:.3f} | {t['dsp']:.3f} "
            f"| **{t['total']:.3f}** | {memory:.0f} MiB |"
        )
    windows = dsp.num_windows(paper.num_frames, paper.dsp)
    print(
        f"\npaper: {paper.radar.num_chirps} chirps × {paper.radar.num_rx} rx, "
        f"{windows} windows of {paper.dsp.image_size}²; laptop: {laptop.radar.num_chirps} chirps, "
        f"{dsp.num_windows(laptop.num_frames, laptop.dsp)} windows of "
        f"{laptop.dsp.image_size}²"
    )


if __name__ == "__main__":
    main()
