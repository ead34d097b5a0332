"""What the paper preset costs: a training step at 256² × batch 128, per epoch, per regeneration.

    python benchmarks/paper_cost.py step [--device cpu|cuda] [--batch 128] [--steps 20] [--json F]
    python benchmarks/paper_cost.py loop [--device cuda] [--windows 16384] [--image 256]
    python benchmarks/paper_cost.py estimate STEP.json [STEP.json ...] [--results results/laptop]

`step` (needs torch and torchvision only, so it runs on a bare GPU machine from the repository
root): for each student and for baseline and identitykd (the cheapest and the dearest loss), the
fwd + bwd + Adam step of the paper preset's method on a synthetic batch of 256² spectrograms
(channels-last, as training holds them), with the loop's per-step sync (the finite-loss check),
in fp32 and — on CUDA — under bf16 autocast; median of `--steps` after warm-up. Also the
student's forward throughput for evaluation (twice the batch, no grad), and the FLOPs of one fwd + bwd
per sample (3 × the forward's, counted by torch's FlopCounterMode: convolutions and matrix
products, 2 per multiply-add).

`loop`: the real training loop (`ikd.train.loop.train_loop`, identitykd, resnet18) for a few
epochs on synthetic windows (random uint8 spectrograms and teacher outputs, paper sizes by
default) on `--device`: epoch seconds (training + val evaluation) with the batches converted on the
host as before issue 13 in fp32, converted on the device in fp32, and converted on the device
under bf16 autocast (CUDA only), the last epoch's median over `--epochs`.

`estimate`: the paper regeneration — every study's tuning trials and final runs at the paper
preset (200 epochs each; trials × epochs is the no-early-stopping bound, and the bound times the
share of trial-epochs ASHA ran in the laptop regeneration) — priced per device from the step
files: an epoch is the paper preset's training windows at the step's samples/s plus its val
windows at the forward's. Prints Markdown for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

STUDENTS = ("resnet18", "mobilenet", "efficientnet", "vgg16")
METHODS = ("baseline", "identitykd")
IDENTITIES = 36


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _flops_per_sample(method, batch: dict) -> float:
    """3 × the forward's FLOPs: the backward costs about twice the forward. torch's counter is
    used for the forward only; its convolution backward ignores groups (it counted mobilenet_v2's
    backward at 224² as 19× its forward, efficientnet_b0's as 41×)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        method(batch)
    return 3 * counter.get_total_flops() / len(batch["identity"])


def step(
    device_name: str, batch_size: int, steps: int, students: list[str], methods: list[str]
) -> list[dict]:
    import torch

    from ikd.config import load_config
    from ikd.methods import build_method

    device = torch.device(device_name)
    torch.backends.cudnn.benchmark = True
    precisions = ("fp32", "bf16") if device.type == "cuda" else ("fp32",)
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {label}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    generator = torch.Generator().manual_seed(0)

    def data(n: int, size: int) -> dict:
        return {
            "spectrogram": torch.rand(n, 3, size, size, generator=generator)
            .to(device)
            .contiguous(memory_format=torch.channels_last),
            "identity": torch.randint(IDENTITIES, (n,), generator=generator).to(device),
            "teacher_embedding": torch.nn.functional.normalize(
                torch.randn(n, 512, generator=generator), dim=1
            ).to(device),
            "teacher_logits": torch.randn(n, IDENTITIES, generator=generator).to(device),
        }

    inputs = _input_ms(device, batch_size, load_config("paper", [], warn=False).dsp.image_size)
    print("input path per batch: " + ", ".join(f"{k} {v:.1f} ms" for k, v in inputs.items()))
    rows = []
    warmup = 3 if device.type == "cuda" else 1  # cudnn.benchmark tries kernels in the first steps
    for student in students:
        for name in methods:
            config = load_config(
                "paper", [f"train.method={name}", f"train.student={student}"], warn=False
            )
            size = config.dsp.image_size
            method = build_method(config, IDENTITIES).to(device).train()
            flops = _flops_per_sample(method, data(2, size))
            optimizer = torch.optim.Adam(method.trainable().parameters(), lr=config.train.lr)
            batch = data(batch_size, size)
            for precision in precisions:
                autocast = torch.autocast(
                    device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
                )
                times = []
                for i in range(steps + warmup):
                    _sync(device)
                    start = time.perf_counter()
                    with autocast:
                        loss = method(batch)["loss"]
                    if not bool(torch.isfinite(loss)):  # the loop's check: one sync per step
                        raise RuntimeError(f"{student}/{name}: loss {float(loss)}")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    _sync(device)
                    if i >= warmup:
                        times.append(time.perf_counter() - start)
                seconds = statistics.median(times)
                forward = _forward_rate(
                    method.net.student, data(2 * batch_size, size), autocast, device
                )
                row = {
                    "device": label,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "student": student,
                    "method": name,
                    "precision": precision,
                    "image": size,
                    "batch": batch_size,
                    "step_ms": 1000 * seconds,
                    "samples_per_s": batch_size / seconds,
                    "eval_samples_per_s": forward,
                    "gflop_per_sample": flops / 1e9,
                    "tflop_per_s": flops * batch_size / seconds / 1e12,
                    **{f"input_ms_{k}": v for k, v in inputs.items()},
                }
                rows.append(row)
                print(
                    f"{student:12s} {name:10s} {precision}: {row['step_ms']:8.1f} ms/step, "
                    f"{row['samples_per_s']:8.1f} samples/s, eval {forward:8.1f} samples/s, "
                    f"{row['gflop_per_sample']:.1f} GFLOP/sample, {row['tflop_per_s']:.2f} TFLOP/s",
                    flush=True,
                )
            del method, optimizer, batch
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def _forward_rate(student, batch: dict, autocast, device, repeats: int = 5) -> float:
    import torch

    student.eval()
    times = []
    with torch.no_grad(), autocast:
        for i in range(repeats + 2):
            _sync(device)
            start = time.perf_counter()
            student(batch["spectrogram"])
            _sync(device)
            if i >= 2:
                times.append(time.perf_counter() - start)
    student.train()
    return len(batch["identity"]) / statistics.median(times)


def _input_ms(device, batch_size: int, size: int, repeats: int = 10) -> dict[str, float]:
    """A batch's way from the stored uint8 windows to the device, median ms: as the loop does it
    today ("host": float, 3 channels and channels-last on the CPU, then copied), and copying the
    uint8 (pinned) and converting on the device ("device")."""
    import torch

    stored = torch.randint(0, 256, (4 * batch_size, size, size), dtype=torch.uint8)
    index = torch.randperm(len(stored))[:batch_size]

    def host():
        batch = (stored[index].float() / 255.0)[:, None].expand(-1, 3, -1, -1)
        return batch.contiguous(memory_format=torch.channels_last).to(device)

    def on_device():
        raw = stored[index]
        if device.type == "cuda":
            raw = raw.pin_memory()
        raw = raw.to(device, non_blocking=True)
        batch = (raw.float() / 255.0)[:, None].expand(-1, 3, -1, -1)
        return batch.contiguous(memory_format=torch.channels_last)

    result = {}
    for name, make in (("host", host), ("device", on_device)):
        times = []
        for i in range(repeats + 2):
            _sync(device)
            start = time.perf_counter()
            make()
            _sync(device)
            if i >= 2:
                times.append(time.perf_counter() - start)
        result[name] = 1000 * statistics.median(times)
    return result


def loop(device_name: str, windows: int, image: int, epochs: int) -> list[dict]:
    import tempfile
    from unittest import mock

    import torch

    import ikd.train.data as data
    import ikd.train.loop as training
    from ikd.config import load_config
    from ikd.train.runs import LocalCheckpoints

    device = torch.device(device_name)
    generator = torch.Generator().manual_seed(0)

    def samples(n: int) -> data.Samples:
        identity = torch.randint(IDENTITIES, (n,), generator=generator)
        embedding = torch.nn.functional.normalize(
            torch.randn(n, 4, 512, generator=generator), dim=2
        )
        return data.Samples(
            key=torch.arange(n),
            identity=identity,
            gait=torch.randint(0, 256, (n, image, image), dtype=torch.uint8, generator=generator),
            teacher_embedding=embedding,
            teacher_logits=torch.randn(n, 4, IDENTITIES, generator=generator),
        )

    train, val = samples(windows), samples(windows // 8)
    config = load_config(
        "paper", {"train.epochs": epochs, "train.lr_milestones": (epochs - 1,)}, warn=False
    )
    convert = data.to_device

    def on_host(stored: dict, device_: torch.device | None) -> dict:  # before issue 13
        return {k: v.to(device_) for k, v in convert(stored, None).items()}

    shapes = [("host, fp32", on_host, False), ("device, fp32", convert, False)]
    if device.type == "cuda":
        shapes.append(("device, bf16", convert, True))
    rows = []
    for name, to_device, bf16 in shapes:
        with (
            tempfile.TemporaryDirectory() as folder,
            mock.patch.object(data, "to_device", to_device),
            mock.patch.object(training, "autocast", _autocast(bf16)),
        ):
            run_dir = Path(folder)
            training.train_loop(
                config, run_dir, train, val, IDENTITIES,
                context=training.Context(device=device, progress=False),
                reporter=LocalCheckpoints(run_dir),
            )  # fmt: skip
            lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
        seconds = statistics.median(line["seconds"] for line in lines[1:] or lines)
        rows.append({"shape": name, "epoch_s": seconds, "samples_per_s": windows / seconds,
                     "train_loss": lines[-1]["train/loss"], "val_acc": lines[-1]["val/acc"]})  # fmt: skip
        print(
            f"{name}: {seconds:.2f} s per epoch of {windows} + {windows // 8} windows at "
            f"{image}² ({windows / seconds:.0f} training windows/s), last train loss "
            f"{lines[-1]['train/loss']:.3f}",
            flush=True,
        )
    return rows


def _autocast(bf16: bool):
    import torch

    return lambda device: torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"
    )


def _windows() -> dict[str, int]:
    """Gait windows per split at the paper preset (before pairs without a face are dropped)."""
    from ikd.config import load_config
    from ikd.data.splits import assign_splits
    from ikd.radar.dsp import num_windows

    config = load_config("paper", [], warn=False)
    per_walk = num_windows(config.num_frames, config.dsp)
    walks = [
        (identity, walk)
        for identity in range(config.synthetic.num_identities)
        for walk in range(config.synthetic.walks_per_identity)
    ]
    counts: dict[str, int] = {}
    for split in assign_splits(walks, config.data).values():
        counts[split] = counts.get(split, 0) + per_walk
    return counts


def _asha_share(results: Path) -> float | None:
    """Trial-epochs ASHA ran over trials × epochs, across the laptop regeneration's tuning."""
    from ikd.tune.regenerate import study_runs

    ran = budget = 0
    for run in study_runs("laptop", {}, results.resolve(), quick=False):
        for variant in (v for v in run.variants if v.space):
            trials = run.trials_of(variant)
            ran += sum(len(trial.values) for trial in trials)
            budget += len(trials) * run.config.train.epochs
    return ran / budget if budget else None


def estimate(files: list[Path], results: Path) -> None:
    from ikd.tune.regenerate import study_runs

    rows = [row for file in files for row in json.loads(file.read_text())]
    windows = _windows()
    share = _asha_share(results)
    # (student, method) → epochs to run: trials × epochs (no early stop) and final seeds × epochs
    work: dict[tuple[str, str], list[int]] = {}
    runs = study_runs("paper", {}, Path("/nonexistent-results"), quick=False)
    epochs = runs[0].config.train.epochs
    for run in runs:
        for variant in run.variants:
            config = run.config.train
            key = (
                variant.overrides.get("train.student", config.student),
                variant.overrides.get("train.method", config.method),
            )
            tuned, final = work.setdefault(key, [0, 0])
            work[key] = [
                tuned + (run.trials * epochs if variant.space else 0),
                final + (run.seeds * epochs if variant.final else 0),
            ]
    tuned_epochs = sum(w[0] for w in work.values())
    final_epochs = sum(w[1] for w in work.values())
    flops = next(r["gflop_per_sample"] for r in rows if r["student"] == "resnet18") * 1e9
    print(
        f"Paper preset: {windows['train']} training and {windows['val']} val windows per epoch "
        f"({flops * windows['train'] / 1e15:.2f} PFLOP of resnet18 fwd + bwd per epoch); "
        f"{epochs} epochs per run; {tuned_epochs} tuning trial-epochs (no early stopping) + "
        f"{final_epochs} final-run epochs."
    )
    if share is not None:
        print(f"ASHA ran {share:.0%} of the trial-epochs in the laptop regeneration.")
    print()
    print("| device | precision | resnet18 identitykd s/epoch | regeneration, no early stop | "
          "with ASHA's laptop share |")  # fmt: skip
    print("|---|---|---|---|---|")
    for (device, precision), measured in _group(rows).items():
        hours = [0.0, 0.0]
        for (student, method), (tuned, final) in work.items():
            seconds = _epoch_seconds(measured, student, method, windows)
            hours[0] += (tuned + final) * seconds / 3600
            hours[1] += (tuned * (share or 1.0) + final) * seconds / 3600
        reference = _epoch_seconds(measured, "resnet18", "identitykd", windows)
        asha = f"{hours[1]:,.0f} h" if share is not None else "—"
        print(f"| {device} | {precision} | {reference:,.0f} | {hours[0]:,.0f} h | {asha} |")


def _group(rows: list[dict]) -> dict[tuple[str, str], dict[tuple[str, str], dict]]:
    """(device, precision) → (student, method) → row. On CUDA also "+ host input": the step plus
    the loop's batch preparation on the CPU today, not overlapped (an upper bound)."""
    grouped: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
    for row in rows:
        cpu = row["device"] == "cpu"
        device = f"cpu ({row['threads']} threads)" if cpu else row["device"]
        grouped.setdefault((device, row["precision"]), {})[row["student"], row["method"]] = row
        if not cpu:
            seconds = row["step_ms"] / 1000 + row["input_ms_host"] / 1000
            slower = {**row, "samples_per_s": row["batch"] / seconds}
            key = (device, f"{row['precision']} + host input")
            grouped.setdefault(key, {})[row["student"], row["method"]] = slower
    return grouped


def _epoch_seconds(measured: dict, student: str, method: str, windows: dict[str, int]) -> float:
    """Training windows at the step's rate + val windows at the forward's. The KD methods are
    priced as identitykd (their losses cost next to nothing beside the student), and as the
    baseline where identitykd was not measured."""
    for name in ("baseline" if method == "baseline" else "identitykd", "baseline"):
        row = measured.get((student, name))
        if row is not None:
            train = windows["train"] / row["samples_per_s"]
            return train + windows["val"] / row["eval_samples_per_s"]
    raise SystemExit(f"no measured step of {student}: run `paper_cost.py step` for it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("step", help="time the paper preset's training step")
    one.add_argument("--device", default="cpu")
    one.add_argument("--batch", type=int, default=128)
    one.add_argument("--steps", type=int, default=20)
    one.add_argument("--students", nargs="+", default=list(STUDENTS), choices=STUDENTS)
    one.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    one.add_argument("--json", type=Path, default=None, help="write the rows here")
    real = commands.add_parser("loop", help="time the training loop's epochs")
    real.add_argument("--device", default="cpu")
    real.add_argument("--windows", type=int, default=16384)
    real.add_argument("--image", type=int, default=256)
    real.add_argument("--epochs", type=int, default=3)
    real.add_argument("--json", type=Path, default=None)
    whole = commands.add_parser("estimate", help="price the paper regeneration from step files")
    whole.add_argument("files", nargs="+", type=Path)
    whole.add_argument("--results", type=Path, default=Path("results/laptop"))
    args = parser.parse_args()
    if args.command in ("step", "loop"):
        if args.command == "step":
            rows = step(args.device, args.batch, args.steps, args.students, args.methods)
        else:
            rows = loop(args.device, args.windows, args.image, args.epochs)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    else:
        estimate(args.files, args.results)


if __name__ == "__main__":
    main()
