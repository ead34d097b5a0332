"""What writing whole costs (ikd.storage): a resnet18 checkpoint with Adam's state written
through the storage layer (the folder's old checkpoint removed, `state.pt` through `.part`
renamed locally or serialised in memory and written as one object elsewhere, then `epoch.json`)
against ikd's earlier local-only way (`torch.save` into a `.part` folder renamed over the old
one), and the paper preset's 200-epoch metrics.jsonl rewritten whole every epoch against appended
— side by side, in one run, on the local disk and in fsspec's in-memory filesystem through
pyarrow.

    python benchmarks/bench_storage.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ikd.models.students import Student
from ikd.storage import location
from ikd.train.runs import load_state, write_metrics, write_state


def _seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rewritten(root, line: dict) -> None:
    lines = [{**line, "epoch": epoch} for epoch in range(200)]
    for epoch in range(200):
        write_metrics(root / "metrics.jsonl", lines[: epoch + 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    net = Student.from_name("resnet18", 36)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 3, 32, 32))[1].sum().backward()
    optimizer.step()  # Adam's two moments: the checkpoint a resuming run needs
    state = {"epoch": 3, "method": net.state_dict(), "optimizer": optimizer.state_dict()}
    line = {"epoch": 0, "val/acc": 0.5, "val/per_identity": [0.5] * 36, "train/loss": 1.0}
    with tempfile.TemporaryDirectory() as tmp:
        size = 0

        def folder_renamed() -> None:  # ikd before the storage layer (LocalCheckpoints)
            nonlocal size
            target, partial = Path(tmp) / "old", Path(tmp) / "old.part"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            torch.save(state, partial / "state.pt")
            (partial / "epoch.json").write_text(json.dumps({"epoch": 3}))
            size = (partial / "state.pt").stat().st_size
            shutil.rmtree(target, ignore_errors=True)
            os.replace(partial, target)

        def whole(root) -> None:  # LocalCheckpoints now
            (root / "ckpt").remove()
            write_state(state, root / "ckpt")

        def appended() -> None:
            path = Path(tmp) / "appended.jsonl"
            path.unlink(missing_ok=True)
            for epoch in range(200):
                with path.open("a") as handle:
                    handle.write(json.dumps({**line, "epoch": epoch}) + "\n")

        rows = [
            ("checkpoint, a .part folder renamed (before)", _seconds(folder_renamed, args.repeats)),
            ("metrics.jsonl, 200 epochs appended", _seconds(appended, args.repeats)),
        ]
        for name, root in (("local disk", location(tmp)), ("in-memory via pyarrow", None)):
            root = root or location(f"memory:///bench-{os.getpid()}")
            rows.append(
                (
                    f"checkpoint, whole ({name})",
                    _seconds(lambda root=root: whole(root), args.repeats),
                )
            )
            rows.append(
                (
                    f"checkpoint, read back ({name})",
                    _seconds(lambda root=root: load_state(root / "ckpt"), args.repeats),
                )
            )
            rows.append(
                (
                    f"metrics.jsonl, rewritten whole each of 200 epochs ({name})",
                    _seconds(lambda root=root: _rewritten(root, line), args.repeats),
                )
            )
            root.remove()
    print(f"resnet18 + Adam checkpoint: {size / 1e6:.1f} MB; median of {args.repeats}\n")
    print("| write | seconds |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
