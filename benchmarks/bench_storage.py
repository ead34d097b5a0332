"""What writing whole costs (ikd.storage): a resnet18 checkpoint with Adam's state written
through the storage layer (the folder's old checkpoint removed, `state.pt` through `.part`
renamed locally or serialised in memory and written as one object elsewhere, then `epoch.json`)
against ikd's earlier local-only way (`torch.save` into a `.part` folder renamed over the old
one), and the paper preset's 200-epoch metrics.jsonl rewritten whole every epoch against appended
— side by side, in one run, on the local disk, in fsspec's in-memory filesystem through
pyarrow, and on an S3 API (moto's server, in this process); with `--dataset`, a built
dataset's train and val splits read locally and from the bucket (issue 24).

    python benchmarks/bench_storage.py [--repeats 5] [--dataset datasets/smoke-<hash>]
"""

from __future__ import annotations

import argparse
import contextlib
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
    parser.add_argument(
        "--dataset", help="a built dataset folder: its splits read locally and from S3"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    net = Student.from_name("resnet18", 36)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 3, 32, 32))[1].sum().backward()
    optimizer.step()  # Adam's two moments: the checkpoint a resuming run needs
    state = {"epoch": 3, "method": net.state_dict(), "optimizer": optimizer.state_dict()}
    line = {"epoch": 0, "val/acc": 0.5, "val/per_identity": [0.5] * 36, "train/loss": 1.0}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
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
        stores = [("local disk", location(tmp)),
                  ("in-memory via pyarrow", location(f"memory:///bench-{os.getpid()}"))]  # fmt: skip
        s3 = stack.enter_context(_s3_bucket())
        stores.append(("S3 API, moto's server", location(s3)))
        for name, root in stores:
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
        if args.dataset:
            reads = _dataset_reads(location(args.dataset), location(s3), args.repeats)
    print(f"resnet18 + Adam checkpoint: {size / 1e6:.1f} MB; median of {args.repeats}\n")
    print("| write | seconds |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    if args.dataset:
        print(f"\nThe train and val splits of {args.dataset} read as a run reads them:\n")
        print("| read | seconds | MB | MB/s |")
        print("|---|---|---|---|")
        for name, seconds, megabytes in reads:
            print(f"| {name} | {seconds:.3f} | {megabytes:.1f} | {megabytes / seconds:.0f} |")
        rate = reads[-1][2] / reads[-1][1]
        print(
            f"\nAt that rate the paper preset's dataset (~{PAPER_DATA_GB} GB of views) takes "
            f"{PAPER_DATA_GB * 1e3 / rate / 60:.1f} min per worker to read, once per run (a run "
            "holds its splits in memory for all its epochs)."
        )


PAPER_DATA_GB = 15  # the paper preset's views on disk (ikd/data/dataset.py)


@contextlib.contextmanager
def _s3_bucket():
    """A bucket on moto's S3 server in this process, reached through the environment."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL_S3=f"http://{host}:{port}")  # fmt: skip
    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"]).create_bucket(
        Bucket="ikd-bench"
    )
    try:
        yield "s3://ikd-bench/storage"
    finally:
        server.stop()


def _dataset_reads(dataset, s3, repeats: int) -> list[tuple[str, float, float]]:
    """Reading a built dataset's train and val splits (`Samples.from_dataset`, what each run or
    Ray Train worker does with resources.data=storage) from the local disk and from the bucket."""
    import pyarrow.fs as pafs

    from ikd.data.dataset import open_dataset
    from ikd.train.data import Samples

    copy = s3 / "datasets" / dataset.name
    pafs.copy_files(dataset.path, copy.path, destination_filesystem=copy.fs)
    rows = []
    for name, folder in (("local disk", dataset), ("S3 API, moto's server", copy)):
        opened = open_dataset(folder)
        megabytes = (folder / "data").size() / 1e6  # the views' Parquet: what a split read opens

        def read(opened=opened):
            return [Samples.from_dataset(opened, split) for split in ("train", "val")]

        rows.append((f"splits ({name})", _seconds(read, repeats), megabytes))
    return rows


if __name__ == "__main__":
    main()
