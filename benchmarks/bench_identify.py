"""`ikd identify` latency per 4-second capture, warm, and throughput on a folder (issue 13).

    python benchmarks/bench_identify.py [--threads 2] [--repeats 5] [--captures 8]

For the laptop preset and the paper's radar and 256² images: one synthetic walk written as a
DCA1000 capture (the exact ADC path), an exported-format model (`ikd.deploy`, a random-weight
resnet18 student: latency does not depend on the weights) with the default window budget, and
the stages of one decision timed apart — reading the .bin, the range FFT over the walker's band,
the DSP (clutter, tracking, STFT, windows, images), the student and the open-set score on the
chosen windows (`--score`, default mahalanobis, against a gallery of 36 people fitted on random
embeddings: its cost does not depend on them) — median of `--repeats` after a warm-up; the score
alone is timed apart too. Then `GaitModel.identify` over a folder of `--captures` captures.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--captures", type=int, default=8)
    parser.add_argument("--score", default="mahalanobis", help="the model's open-set score")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"{args.threads} torch threads; median of {args.repeats} after a warm-up; "
          f"open-set score {args.score}\n")  # fmt: skip
    print("| preset | windows used / walk | read .bin | range FFT | DSP | student + score | score "
          "alone | total |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    rates = {}
    for preset in ("laptop", "paper"):
        with tempfile.TemporaryDirectory(prefix=f"identify-{preset}-") as folder:
            rates[preset] = _preset(preset, Path(folder), args)
    print()
    for preset, (count, seconds) in rates.items():
        print(
            f"{preset}: a folder of {count} captures in {seconds:.2f} s — "
            f"{count / seconds:.1f} captures/s, {4 * count / seconds:.1f}× real time"
        )


def _preset(preset: str, folder: Path, args: argparse.Namespace) -> tuple[int, float]:
    """Print the preset's row; return (captures, seconds) of identifying the folder."""

    import numpy as np

    from ikd.config import apply_overrides, load_config
    from ikd.data.export import simulate_captures
    from ikd.deploy import GaitModel, to_gait
    from ikd.models.students import Student
    from ikd.openset import Gallery, capture_scores
    from ikd.radar.captures import read_metadata
    from ikd.radar.dca1000 import read_bin
    from ikd.radar.dsp import (
        num_windows,
        range_band,
        range_fft,
        spectrogram_windows,
        walk_spectrogram,
    )

    config = load_config(preset, warn=False)
    one = apply_overrides(
        config, {"synthetic.num_identities": 2, "synthetic.walks_per_identity": 1}
    )
    simulate_captures(one, folder, webcam=False, progress=False, identities=range(args.captures))
    names = [f"id{i:03d}" for i in range(36)]
    student = Student.from_name("resnet18", len(names))
    model = GaitModel.trace(student, config, names, 8, folder / "model.pt")
    rng = np.random.default_rng(0)
    model.gallery = Gallery.fit(
        rng.normal(size=(36 * 64, 512)), np.repeat(np.arange(36), 64), names
    )
    model.score = args.score
    size = config.dsp.image_size
    radar, captures = read_metadata(folder)
    entry = captures[0]
    path = folder / entry["file"]
    bins = range_band(radar, config.dsp)
    times: dict[str, list[float]] = {"read": [], "fft": [], "dsp": [], "student": []}
    score_alone: list[float] = []
    for repeat in range(args.repeats + 1):
        start = time.perf_counter()
        cube = read_bin(
            path, entry["num_frames"], radar.num_chirps, radar.num_rx, radar.num_samples
        )
        read = time.perf_counter()
        profiles = range_fft(cube, bins)
        fft = time.perf_counter()
        images, _ = spectrogram_windows(
            walk_spectrogram(profiles, radar, config.dsp), radar, config.dsp, most=model.max_windows
        )
        gait = to_gait(images)
        dsp = time.perf_counter()
        model.decide(str(path), gait)
        done = time.perf_counter()
        logits, embeddings = model.outputs(gait)
        scored = time.perf_counter()
        capture_scores(logits, embeddings, model.gallery)
        alone = time.perf_counter() - scored
        if repeat:
            for name, seconds in zip(
                times, (read - start, fft - read, dsp - fft, done - dsp), strict=True
            ):
                times[name].append(seconds)
            score_alone.append(alone)
    median = {name: statistics.median(values) for name, values in times.items()}
    walk = num_windows(entry["num_frames"], config.dsp)
    print(
        f"| {preset} ({size}²) | {len(gait)} / {walk} | "
        + " | ".join(f"{median[name]:.3f} s" for name in times)
        + f" | {statistics.median(score_alone):.4f} s | **{sum(median.values()):.3f} s** |"
    )
    model.identify([folder])  # warm
    start = time.perf_counter()
    decisions = list(model.identify([folder]))
    return len(decisions), time.perf_counter() - start


if __name__ == "__main__":
    main()
