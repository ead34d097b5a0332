"""The GPU path of the training loop (skipped without CUDA, the only tests allowed to skip):
uint8 batches copied pinned and converted on the device, bf16 autocast, cuDNN autotuning — on
synthetic windows, so it needs neither Ray nor a built dataset."""

import json

import pytest
import torch
from stand_ins import tiny_backbone

from ikd.config import load_config
from ikd.models.students import STUDENTS
from ikd.train.data import Samples, to_device
from ikd.train.loop import Context, train_loop
from ikd.train.runs import LocalCheckpoints

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def _samples(n: int, identities: int = 4) -> Samples:
    generator = torch.Generator().manual_seed(n)
    return Samples(
        key=torch.arange(n),
        identity=torch.arange(n) % identities,
        gait=torch.randint(0, 256, (n, 32, 32), dtype=torch.uint8, generator=generator),
        teacher_embedding=torch.nn.functional.normalize(
            torch.randn(n, 2, 512, generator=generator), dim=2
        ),
        teacher_logits=torch.randn(n, 2, identities, generator=generator),
    )


def test_batches_convert_on_the_device_to_what_the_cpu_gives_within_an_ulp():
    stored = {"spectrogram": torch.randint(0, 256, (4, 32, 32), dtype=torch.uint8)}
    on_gpu, on_cpu = to_device(stored, CUDA)["spectrogram"], to_device(stored, None)["spectrogram"]
    assert on_gpu.device.type == "cuda" and on_gpu.is_contiguous(memory_format=torch.channels_last)
    # CUDA's float division rounds differently from the CPU's in about half the pixels (H200,
    # 2026-11-26: at most 7.9e-8 relative, one float32 ulp).
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=2**-23, atol=0)


def test_the_loop_trains_on_a_gpu_under_bf16(tmp_path, monkeypatch):
    monkeypatch.setitem(STUDENTS, "resnet18", tiny_backbone)
    config = load_config(
        "smoke",
        {"train.epochs": 2, "train.batch_size": 8, "train.method": "identitykd"},
        warn=False,
    )
    status = train_loop(
        config,
        tmp_path,
        _samples(64),
        _samples(16),
        4,
        context=Context(device=CUDA, progress=False),
        reporter=LocalCheckpoints(tmp_path),
    )
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert status == "complete" and [line["epoch"] for line in lines] == [0, 1]
    assert all(torch.isfinite(torch.tensor(line["train/loss"])) for line in lines)
    assert 0 <= lines[-1]["val/acc"] <= 1 and torch.backends.cudnn.benchmark
