"""Is the dataset build reproducible? Builds of one preset under different conditions, compared
stage by stage (issue 22).

    python benchmarks/build_determinism.py [--preset laptop] [--out benchmarks/out/determinism]
        [--conditions same,again,threads1,avx2,portable]
    python benchmarks/build_determinism.py --views-cost   # what the fixed-size forward costs
    python benchmarks/build_determinism.py --describe datasets/laptop-<hash>   # a build's bits
    python benchmarks/build_determinism.py --step-cost [--out DIR]   # teacher steps: seconds, bits

Each condition builds the preset's dataset from scratch in a subprocess, into a data root of its
own, with `ikd data build`:

- `same`, `again`: this machine as it is, twice (two builds on one machine);
- `threads1`: one CPU for Ray and one torch thread (OMP_NUM_THREADS=1: the teacher trains
  single-threaded) — another thread count;
- `avx2`: torch's and oneDNN's kernels capped at AVX2 and numpy's dispatch without AVX-512
  (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, NPY_DISABLE_CPU_FEATURES) — the nearest thing to
  another CPU on one machine (an AVX2-only x86 CPU picks these kernels itself);
- `portable`: `avx2`, with MKL's reproducible branch that every x86 vendor runs
  (MKL_CBWR=COMPATIBLE), numpy's OpenBLAS at its AVX2 kernels (OPENBLAS_CORETYPE=Haswell) and 2
  torch threads pinned — what a build would set to give the same bits on every AVX2 machine, if
  any setting can: each result names its CPU, so records from two machines can be set side by
  side.

Then per condition: a digest of every stage's content in key order (pairs: spectrograms, faces,
labels; views: teacher embeddings and logits), the teacher's weights' hashes, its face accuracy
and the stage times; and whether each equals the `same` build's. A JSON record goes to --out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads

from ikd.config import load_config
from ikd.data import schema
from ikd.data.dataset import dataset_folder
from ikd.provenance import hardware

AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy 2.4 dispatches to these above AVX2 (X86_V3)
CONDITIONS = {
    "same": ({}, 2),
    "again": ({}, 2),
    "threads1": ({"OMP_NUM_THREADS": "1"}, 1),
    "avx2": (
        {
            "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
            "NPY_DISABLE_CPU_FEATURES": AVX512,
        },
        2,
    ),
    # Every kernel family pinned to what any AVX2 machine runs, and the threads to 2: whether two
    # different CPUs then agree is what this condition is for (run it on each, compare records).
    "portable": (
        {
            "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
            "NPY_DISABLE_CPU_FEATURES": AVX512,
            # MKL's reproducible branch: on a non-Intel CPU MKL takes none but COMPATIBLE (SSE2)
            # and runs AUTO for the rest (measured: "CNR:AUTO,STRICT" for AVX2 on an AMD EPYC)
            "MKL_CBWR": "COMPATIBLE,STRICT",
            "OPENBLAS_CORETYPE": "Haswell",  # numpy's BLAS: AVX2 kernels, not SkylakeX's
            "OMP_NUM_THREADS": "2",
        },
        2,
    ),
}


def digest(folder: Path, columns: list[str]) -> str:
    """SHA-256 (16 hex) of `columns` of a Parquet folder's good rows, in key order."""
    table = pads.dataset(folder, format="parquet").to_table(columns=[schema.KEY, *columns])
    table = table.sort_by(schema.KEY)
    hasher = hashlib.sha256()
    for column in [schema.KEY, *columns]:
        for chunk in table.column(column).chunks:
            for buffer in chunk.buffers():
                if buffer is not None:
                    hasher.update(buffer)
    return hasher.hexdigest()[:16]


def build(name: str, preset: str, out: Path) -> dict:
    env_extra, cpus = CONDITIONS[name]
    root = out / name / "datasets"
    command = [sys.executable, "-m", "ikd", "data", "build", "--preset", preset,
               "--num-cpus", str(cpus), f"data.root={root}"]  # fmt: skip
    start = time.perf_counter()
    with open(out / name / "build.log", "w") as log:
        # a local Ray of its own, whatever `ray start` this machine recorded (a test's head)
        env = {**os.environ, "RAY_ADDRESS": "local", **env_extra}
        subprocess.run(command, env=env, stdout=log, stderr=log, check=True)
    seconds = time.perf_counter() - start
    config = load_config(preset, [f"data.root={root}"], warn=False)
    return {
        "condition": name,
        "environment": env_extra,
        "num_cpus": cpus,
        "wall_seconds": round(seconds, 1),
        "cpu": hardware()["cpu"],  # the CPU that built it
        **describe(Path(dataset_folder(config).path)),
    }


def describe(folder: Path) -> dict:
    """A built dataset's bits, stage by stage (its manifest does not name the CPU that built it)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    teacher = manifest["teacher"]
    return {
        "stage_seconds": manifest["seconds"],
        "pairs": digest(folder / "pairs", [schema.SPECTROGRAM, schema.FACE, schema.SPLIT]),
        "backbone_sha256": teacher["backbone_sha256"],
        "classifier_sha256": teacher["classifier_sha256"],
        "face_accuracy_val": teacher["face_accuracy_val"],
        "views": digest(folder / "data", [schema.TEACHER_EMBEDDING, schema.TEACHER_LOGITS]),
    }


def views_cost(repeats: int = 5, rows: int = 32, views: int = 4, size: int = 80) -> None:
    """The views stage's forward pass, one thread, a batch of `rows` faces × `views` views (what
    a Ray Data batch holds at the laptop preset): all K·B images at once (before) against
    fixed chunks of `TeacherViews.CHUNK` (now), interleaved; median seconds per batch."""
    import statistics

    import torch
    from facenet_pytorch import InceptionResnetV1

    from ikd.data.views import TeacherViews

    torch.set_num_threads(1)
    model = InceptionResnetV1(pretrained=None, classify=False).eval()
    images = torch.randn(rows * views, 3, size, size)
    chunk = TeacherViews.CHUNK
    ways = {
        "one forward of K·B images (before)": lambda: model(images),
        f"chunks of {chunk} (now)": lambda: torch.cat([model(c) for c in images.split(chunk)]),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    with torch.no_grad():
        model(images[:chunk])  # warm-up
        for _ in range(repeats):
            for name, forward in ways.items():
                start = time.perf_counter()
                forward()
                times[name].append(time.perf_counter() - start)
    first = statistics.median(next(iter(times.values())))
    print("| forward | s per batch | ratio |\n|---|---|---|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):.2f} | {statistics.median(values) / first:.2f}× |"
        )


def teacher_steps(steps: int = 4, batch: int = 64, size: int = 80) -> None:
    """`steps` Adam steps of a fresh InceptionResnetV1 (seed 0) on fixed random faces, in this
    process: one JSON line with the median time of the steps after the first (a warm-up) and
    a hash of the weights and of an eval forward — a one-minute proxy of the teacher's bits, to
    set beside another CPU's."""
    import statistics

    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.backends.mkldnn.enabled = os.environ.get("IKD_ONEDNN", "1") == "1"
    torch.manual_seed(0)
    model = InceptionResnetV1(pretrained=None, classify=True, num_classes=36)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    faces = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
    labels = torch.randint(0, 36, (batch,), generator=generator)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(faces), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    weights = hashlib.sha256()
    for parameter in model.parameters():
        weights.update(parameter.detach().numpy().tobytes())
    with torch.no_grad():
        forward = model.eval()(faces[:32]).numpy().tobytes()
    print(json.dumps({
        "step_seconds": round(statistics.median(times[1:]), 2),
        "weights": weights.hexdigest()[:12],
        "forward": hashlib.sha256(forward).hexdigest()[:12],
    }))  # fmt: skip


def step_cost() -> list[dict]:
    """`teacher_steps` as this machine is, under `portable`, and each with oneDNN off (torch's
    own convolutions), each in a fresh process (the settings act at import)."""
    print("| condition | oneDNN | s per step | weights | forward |\n|---|---|---|---|---|")
    rows = []
    for name in ("same", "portable"):
        for onednn in ("1", "0"):
            env = {**os.environ, **CONDITIONS[name][0], "IKD_ONEDNN": onednn}
            command = [sys.executable, str(Path(__file__).resolve()), "--teacher-steps"]
            out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True)
            rows.append({"condition": name, "cpu": hardware()["cpu"], "onednn": onednn == "1",
                         **json.loads(out.stdout.strip().splitlines()[-1])})  # fmt: skip
            row = rows[-1]
            print(f"| {name} | {'on' if row['onednn'] else 'off'} | {row['step_seconds']} | "
                  f"{row['weights']} | {row['forward']} |", flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="laptop")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/determinism"))
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--views-cost", action="store_true", help="time the views' forward only")
    parser.add_argument("--describe", type=Path, help="print an existing build's record only")
    parser.add_argument("--step-cost", action="store_true", help="teacher steps per condition")
    parser.add_argument("--teacher-steps", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.views_cost:
        views_cost()
        return
    if args.teacher_steps:  # one condition of --step-cost, in its own process
        teacher_steps()
        return
    if args.step_cost:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "step_cost.json").write_text(json.dumps(step_cost(), indent=2))
        return
    if args.describe:
        print(json.dumps({"described_on": hardware()["cpu"], **describe(args.describe)}, indent=2))
        return
    results = []
    for name in args.conditions.split(","):
        (args.out / name).mkdir(parents=True, exist_ok=True)
        results.append(build(name, args.preset, args.out.resolve()))
        print(json.dumps(results[-1]), flush=True)
    first = results[0]
    keys = ("pairs", "backbone_sha256", "classifier_sha256", "views")
    print("| condition | wall (s) | " + " | ".join(keys) + " | face acc |")
    print("|---|---|" + "---|" * len(keys) + "---|")
    for result in results:
        same = [
            ("same" if result[k] == first[k] else "differs") + f" ({result[k][:8]})" for k in keys
        ]
        print(f"| {result['condition']} | {result['wall_seconds']:.0f} | " + " | ".join(same)
              + f" | {result['face_accuracy_val']} |")  # fmt: skip
    (args.out / "determinism.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
