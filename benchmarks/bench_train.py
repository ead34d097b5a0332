"""Training costs: step time per method, Ray Train vs the plain loop, 2 workers vs 1.

    python benchmarks/bench_train.py steps [--batch 128] [--steps 12] [--threads 2]
    python benchmarks/bench_train.py epochs [--epochs 3]     # needs the laptop dataset built
    python benchmarks/bench_train.py layouts [--steps 8] [--threads 2]
    python benchmarks/bench_train.py compile [--steps 8] [--threads 2]
    python benchmarks/bench_train.py optimizer [--steps 12] [--threads 2]
    python benchmarks/bench_train.py checkpoints [--epochs 4] [--pairs 2] [--data-root DIR]
    python benchmarks/bench_train.py subnormal [--steps 3] [--rounds 2] [--threads 2]
    python benchmarks/bench_train.py busy [--steps 6] [--rounds 2] [--threads 2]

`steps`: fwd + bwd + Adam step of the resnet18 student on one laptop-sized batch (32² spectrograms),
for the five methods, whose teacher outputs come from the dataset; and the naive
alternative, identitykd plus a frozen InceptionResnetV1 forward on the batch's 80² faces every
step. Median of `--steps` after 3 warm-up steps, methods interleaved round-robin so drifts in the
machine's speed hit all alike.

`epochs`: the laptop preset's identitykd, one epoch = training + full-val evaluation, median epoch
seconds from metrics.jsonl (the first epoch dropped as warm-up): the plain loop in this process,
Ray Train with 1 worker at the same torch thread count, and Ray Train with 2 workers (gloo DDP,
one thread each). Prints Markdown rows for benchmarks/README.md.

`layouts`: fwd + bwd + Adam step of each student on a batch of 128 laptop spectrograms, weights
and batch in NCHW against channels-last (NHWC); median of `--steps` after a warm-up, the layouts
interleaved. `compile`: resnet18's channels-last step, eager against `torch.compile`, likewise.
`optimizer`: each student's channels-last fwd + bwd + Adam step with torch's CPU default (one
parameter tensor at a time), `foreach=True` and `fused=True`, interleaved; and each one's Adam
step alone, in CPU milliseconds of this process.

`checkpoints`: the laptop preset's identitykd final run in this process, `train.checkpoint_every_s`
0 (a checkpoint every epoch) against 3600 (the last epoch's only), interleaved in `--pairs` pairs;
wall seconds per epoch of the whole run, checkpoint writes included (metrics.jsonl's epoch seconds
stop before the write).

`subnormal`: vgg16's channels-last fwd + bwd + Adam step on a batch of 128, freshly initialised
and "collapsed" (every weight × 1e-6, as strong weight decay left a vgg16 trial: mean |w| ~5e-8),
and resnet18's fresh one, each in a fresh process with torch computing subnormal floats (its
default) and flushing them to 0 (`ikd.train.loop.subnormals_flushed`, entered before the first op);
median of `--steps` after a warm-up, `--rounds` rounds interleaved.

`busy`: resnet18's step as `subnormal` times it (fresh, flushed), in a fresh process with
libgomp's OMP_WAIT_POLICY unset (its threads spin at each barrier before they sleep) and PASSIVE
(they sleep at once); alone, and beside a second process that runs the same steps with torch's
defaults all along (a machine busy with other torch work: two thread teams on the cores).
Median of `--steps` after a warm-up, `--rounds` rounds of the four cases interleaved; and the
share of its threads' CPU the timed process had over its steps, as `ikd run`'s estimate measures
it to say whether another process kept the machine busy.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def steps(batch: int, count: int, threads: int) -> None:
    import torch
    from facenet_pytorch import InceptionResnetV1

    from ikd.config import load_config
    from ikd.methods import build_method
    from ikd.models.teacher import standardize

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n = 36
    data = {
        "spectrogram": torch.rand(batch, 3, 32, 32),
        "identity": torch.randint(n, (batch,)),
        "teacher_embedding": torch.nn.functional.normalize(torch.randn(batch, 512), dim=1),
        "teacher_logits": torch.randn(batch, n),
    }
    faces = torch.randint(0, 256, (batch, 3, 80, 80), dtype=torch.uint8)
    teacher = InceptionResnetV1(classify=False).eval().requires_grad_(False)
    runs = {}
    for name in (
        "baseline",
        "vanilla_kd",
        "cfkd",
        "mkd",
        "identitykd",
        "identitykd + teacher forward",
    ):
        method = build_method(
            load_config("laptop", [f"train.method={name.split()[0]}"], warn=False), n
        )
        optimizer = torch.optim.Adam(method.trainable().parameters(), lr=1e-4)
        runs[name] = (method.train(), optimizer, name.endswith("forward"))

    def step(method, optimizer, naive: bool) -> float:
        start = time.perf_counter()
        batch_data = data
        if naive:
            with torch.no_grad():
                embedding = teacher(standardize(faces.float()))
            batch_data = {**data, "teacher_embedding": embedding}
        loss = method(batch_data)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(count + 3):
        for name, run in runs.items():
            seconds = step(*run)
            if round_ >= 3:
                times[name].append(seconds)
    base = statistics.median(times["baseline"])
    print(f"batch {batch} × 3×32², resnet18, {threads} torch threads, median of {count} steps\n")
    print("| method | step (s) | vs baseline |\n|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.2f}× |")


def epochs(count: int) -> None:
    import logging

    from ikd.cluster import init_ray
    from ikd.train.driver import train_driver
    from ikd.train.runs import METRICS

    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench_train_"))
    common = {
        "preset": "laptop",
        "progress": False,
        "train.runs_root": str(root),
        "train.method": "identitykd",
        "train.epochs": count,
        "train.lr_milestones": "[]",
    }

    def median_epoch(run_dir: Path) -> float:
        lines = (run_dir / METRICS).read_text().splitlines()
        return statistics.median(json.loads(line)["seconds"] for line in lines[1:])

    results = {}
    plain = train_driver({**common, "study": "plain", "loop": "plain", "train.threads": 2})
    results["plain loop, 2 threads"] = median_epoch(plain)
    init_ray(2)
    for label, workers, threads in (
        ("Ray Train, 1 worker, 2 threads", 1, 2),
        ("Ray Train, 2 workers, 1 thread each", 2, 1),
    ):
        extra = {"study": f"ray-{workers}", "train.workers": workers, "train.threads": threads}
        results[label] = median_epoch(train_driver({**common, "loop": "ray", **extra}))
    base = results["plain loop, 2 threads"]
    print(f"laptop identitykd, median epoch of {count - 1} (train + full val)\n")
    print("| loop | epoch (s) | vs plain |\n|---|---|---|")
    for label, seconds in results.items():
        print(f"| {label} | {seconds:.1f} | {seconds / base:.2f}× |")


def adam_step(net, batch, optimizer) -> float:
    """Seconds of one fwd + bwd + Adam step."""
    start = time.perf_counter()
    optimizer.zero_grad()
    net(batch).mean().backward()
    optimizer.step()
    return time.perf_counter() - start


def layouts(count: int, threads: int) -> None:
    import torch

    from ikd.models.students import STUDENTS

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print("| student | NCHW step (s) | channels-last step (s) | ratio |\n|---|---|---|---|")
    for name, build in STUDENTS.items():
        runs = {}
        for layout in (torch.contiguous_format, torch.channels_last):
            net = build()[0].to(memory_format=layout)
            batch = torch.rand(128, 3, 32, 32).contiguous(memory_format=layout)
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
            runs[layout] = (net, batch, optimizer, [])
        for _ in range(count + 1):  # interleaved; the first round warms up
            for net, batch, optimizer, times in runs.values():
                times.append(adam_step(net, batch, optimizer))
        nchw, nhwc = (statistics.median(run[3][1:]) for run in runs.values())
        print(f"| {name} | {nchw:.3f} | {nhwc:.3f} | {nhwc / nchw:.2f}× |")


def compiled(count: int, threads: int) -> None:
    """resnet18's channels-last step eager against `torch.compile` (inductor, default mode) of
    the same module, interleaved after the compile's own warm-up steps."""
    import torch

    from ikd.models.students import STUDENTS

    torch.set_num_threads(threads)
    runs = {}
    for kind in ("eager", "compiled"):
        torch.manual_seed(0)
        net = STUDENTS["resnet18"]()[0].to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
        runs[kind] = (torch.compile(net) if kind == "compiled" else net, optimizer, [])
    batch = torch.rand(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    net, optimizer, _ = runs["compiled"]
    # the compile happens in the first steps (forward, then backward)
    warm = sum(adam_step(net, batch, optimizer) for _ in range(3))
    for _ in range(count + 1):
        for net, optimizer, times in runs.values():
            times.append(adam_step(net, batch, optimizer))
    eager, fast = (statistics.median(run[2][1:]) for run in runs.values())
    print(
        f"\n| resnet18, channels-last | eager step (s) | torch.compile step (s) | ratio | compile "
        f"(s) |\n|---|---|---|---|---|\n| | {eager:.3f} | {fast:.3f} | {fast / eager:.2f}× "
        f"| {warm:.0f} |"
    )


def optimizers(count: int, threads: int) -> None:
    import torch

    from ikd.models.students import STUDENTS

    torch.set_num_threads(threads)
    kinds = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    print("| student | " + " | ".join(f"{k} step (s)" for k in kinds) + " | fused vs default "
          "| Adam alone, CPU ms: " + " / ".join(kinds) + " |")  # fmt: skip
    print("|---" * (len(kinds) + 3) + "|")
    batch = torch.rand(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    for name, build in STUDENTS.items():
        runs = {}
        for kind, options in kinds.items():
            torch.manual_seed(0)
            net = build()[0].to(memory_format=torch.channels_last)
            runs[kind] = (net, torch.optim.Adam(net.parameters(), lr=1e-4, **options), [], [])
        for _ in range(count + 1):  # interleaved; the first round warms up
            for net, optimizer, times, alone in runs.values():
                times.append(adam_step(net, batch, optimizer))
                start = time.process_time()
                optimizer.step()  # the same gradients again: the optimizer's own cost
                alone.append(1000 * (time.process_time() - start))
        step = {kind: statistics.median(run[2][1:]) for kind, run in runs.items()}
        adam = {kind: statistics.median(run[3][1:]) for kind, run in runs.items()}
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in step.values())
              + f" | {step['fused'] / step['default']:.2f}× | "
              + " / ".join(f"{v:.1f}" for v in adam.values()) + " |")  # fmt: skip


def checkpoints(count: int, pairs: int, data_root: str | None) -> None:
    import logging

    from ikd.train.driver import train_driver

    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench_checkpoints_"))
    common = {"preset": "laptop", "progress": False, "loop": "plain", "train.threads": 2,
              "train.runs_root": str(root), "train.method": "identitykd", "train.epochs": count,
              "train.lr_milestones": "[]",
              **({"data.root": data_root} if data_root else {})}  # fmt: skip
    seconds: dict[float, list[float]] = {0.0: [], 3600.0: []}
    for pair in range(pairs):
        for every in seconds:
            start = time.perf_counter()
            train_driver(
                {**common, "study": f"every{every:g}-{pair}", "train.checkpoint_every_s": every}
            )
            seconds[every].append((time.perf_counter() - start) / count)
    print(
        f"laptop identitykd final run, {count} epochs, wall per epoch, {pairs} interleaved pairs\n"
    )
    print("| train.checkpoint_every_s | per epoch (s) | vs every epoch |\n|---|---|---|")
    base = statistics.median(seconds[0.0])
    for every, values in seconds.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {every:g} | {median:.2f} ({runs}) | {median / base:.3f}× |")


SUBNORMAL_STEP = """
import contextlib, json, statistics, sys, time
import torch
from ikd.train.loop import subnormals_flushed
student, collapsed, flush, steps, threads = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
flushed = subnormals_flushed() if flush else contextlib.nullcontext()
flushed.__enter__()  # kept for the process, as a trial actor has it
torch.set_num_threads(threads)
torch.manual_seed(0)
from ikd.models.students import STUDENTS
net = STUDENTS[student]()[0].to(memory_format=torch.channels_last)
if collapsed:
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.endswith("weight") and parameter.dim() > 1:
                parameter.mul_(1e-6)
batch = torch.rand(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)
times, cpu = [], []
for _ in range(steps + 1):
    start, start_cpu = time.perf_counter(), time.process_time()
    optimizer.zero_grad()
    net(batch).mean().backward()
    optimizer.step()
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
share = sum(cpu[1:]) / (sum(times[1:]) * threads)  # as ikd run's estimate measures it
print(json.dumps([statistics.median(times[1:]), share]))
"""


def subnormal(count: int, rounds: int, threads: int) -> None:
    import subprocess
    import sys

    # resnet18's batch norm rescales collapsed weights' outputs: only vgg16 (no norm) collapses
    states = {"vgg16": (False, True), "resnet18": (False,)}
    cases = [(s, c, f) for s, collapsed in states.items() for c in collapsed for f in (False, True)]
    times: dict[tuple, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for student, collapsed, flush in cases:
            args = [student, str(int(collapsed)), str(int(flush)), str(count), str(threads)]
            done = subprocess.run([sys.executable, "-c", SUBNORMAL_STEP, *args], check=True,
                                  capture_output=True, text=True)  # fmt: skip
            times[(student, collapsed, flush)].append(json.loads(done.stdout)[0])
    print("| student | weights | step, subnormals computed (s) | flushed to 0 (s) | ratio |")
    print("|---|---|---|---|---|")
    for student, collapsed_states in states.items():
        for collapsed in collapsed_states:
            slow, fast = (statistics.median(times[(student, collapsed, f)]) for f in (False, True))
            state = "collapsed (× 1e-6)" if collapsed else "fresh"
            print(f"| {student} | {state} | {slow:.2f} | {fast:.2f} | {fast / slow:.2f}× |")


def busy(count: int, rounds: int, threads: int) -> None:
    import os
    import subprocess
    import sys

    step = [sys.executable, "-c", SUBNORMAL_STEP, "resnet18", "0", "1"]
    plain = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    cases = [(policy, beside) for beside in (False, True) for policy in ("", "PASSIVE")]
    times: dict[tuple, list[float]] = {case: [] for case in cases}
    shares: dict[tuple, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for policy, beside in cases:
            other = None
            if beside:  # the other work: the same steps with torch's defaults, until killed
                other = subprocess.Popen([*step, "100000", str(threads)], env=plain,
                                         stdout=subprocess.DEVNULL)  # fmt: skip
                time.sleep(5)  # its import and first steps
            env = {**plain, "OMP_WAIT_POLICY": policy} if policy else plain
            try:
                done = subprocess.run([*step, str(count), str(threads)], env=env, check=True,
                                      capture_output=True, text=True)  # fmt: skip
            finally:
                if other is not None:
                    other.kill()
                    other.wait()
            step_time, share = json.loads(done.stdout)
            times[(policy, beside)].append(step_time)
            shares[(policy, beside)].append(share)
    print("| machine | OMP_WAIT_POLICY unset (s) | PASSIVE (s) | ratio | CPU share, unset "
          "| CPU share, PASSIVE |\n|---|---|---|---|---|---|")  # fmt: skip
    for beside in (False, True):
        spin, passive = (statistics.median(times[(p, beside)]) for p in ("", "PASSIVE"))
        held = (statistics.median(shares[(p, beside)]) for p in ("", "PASSIVE"))
        machine = "beside another torch process" if beside else "alone"
        print(f"| {machine} | {spin:.3f} | {passive:.3f} | {passive / spin:.2f}× | "
              + " | ".join(f"{share:.0%}" for share in held) + " |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    step_parser = commands.add_parser("steps")
    step_parser.add_argument("--batch", type=int, default=128)
    step_parser.add_argument("--steps", type=int, default=12)
    step_parser.add_argument("--threads", type=int, default=2)
    epoch_parser = commands.add_parser("epochs")
    epoch_parser.add_argument("--epochs", type=int, default=3)
    layout_parser = commands.add_parser("layouts")
    layout_parser.add_argument("--steps", type=int, default=8)
    layout_parser.add_argument("--threads", type=int, default=2)
    compile_parser = commands.add_parser("compile")
    compile_parser.add_argument("--steps", type=int, default=8)
    compile_parser.add_argument("--threads", type=int, default=2)
    optimizer_parser = commands.add_parser("optimizer")
    optimizer_parser.add_argument("--steps", type=int, default=12)
    optimizer_parser.add_argument("--threads", type=int, default=2)
    checkpoint_parser = commands.add_parser("checkpoints")
    checkpoint_parser.add_argument("--epochs", type=int, default=4)
    checkpoint_parser.add_argument("--pairs", type=int, default=2)
    checkpoint_parser.add_argument("--data-root", help="where the laptop dataset is built")
    subnormal_parser = commands.add_parser("subnormal")
    subnormal_parser.add_argument("--steps", type=int, default=3)
    subnormal_parser.add_argument("--rounds", type=int, default=2)
    subnormal_parser.add_argument("--threads", type=int, default=2)
    busy_parser = commands.add_parser("busy")
    busy_parser.add_argument("--steps", type=int, default=6)
    busy_parser.add_argument("--rounds", type=int, default=2)
    busy_parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.command == "busy":
        busy(args.steps, args.rounds, args.threads)
    elif args.command == "subnormal":
        subnormal(args.steps, args.rounds, args.threads)
    elif args.command == "checkpoints":
        checkpoints(args.epochs, args.pairs, args.data_root)
    elif args.command == "steps":
        steps(args.batch, args.steps, args.threads)
    elif args.command == "layouts":
        layouts(args.steps, args.threads)
    elif args.command == "compile":
        compiled(args.steps, args.threads)
    elif args.command == "optimizer":
        optimizers(args.steps, args.threads)
    else:
        epochs(args.epochs)


if __name__ == "__main__":
    main()
