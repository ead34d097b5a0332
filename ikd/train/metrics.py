"""Classification metrics on a whole split, from a confusion matrix summed over DDP ranks.

ACC, macro recall and macro F1 (macro: the unweighted mean over the identities present in the
split), per-identity accuracy (= recall) and worst-identity accuracy (Fig. 4's "worst class").
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist


def confusion(predicted: torch.Tensor, labels: torch.Tensor, num_identities: int) -> torch.Tensor:
    """(B,), (B,) → (N, N) int64 counts: rows true identity, columns predicted."""
    flat = labels.to(torch.long) * num_identities + predicted.to(torch.long)
    return torch.bincount(flat.cpu(), minlength=num_identities**2).reshape(
        num_identities, num_identities
    )


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over DDP ranks (a no-op without a process group); returns a CPU tensor."""
    if dist.is_available() and dist.is_initialized():
        device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
        reduced = tensor.to(device).clone()
        dist.all_reduce(reduced)
        return reduced.cpu()
    return tensor


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart per rank within an
    epoch; DDP syncs them only at the next forward), so all ranks evaluate one model — the one
    rank 0 checkpoints. A no-op without a process group."""
    if dist.is_available() and dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def per_identity_accuracy(matrix: torch.Tensor) -> torch.Tensor:
    """(N, N) confusion → (N,) float64 recall per identity, NaN where an identity has no sample."""
    support = matrix.sum(dim=1).to(torch.float64)
    correct = torch.diagonal(matrix).to(torch.float64)
    return torch.where(support > 0, correct / support.clamp(min=1), torch.nan)


def summarize(matrix: torch.Tensor, prefix: str) -> dict[str, Any]:
    """Metrics of one split as `<prefix>acc`, `recall`, `f1`, `worst_acc`, `per_identity`,
    `samples` (prefix e.g. "val/", or "val/live_" for the live student's)."""
    matrix = matrix.to(torch.float64)
    total = matrix.sum()
    recall = per_identity_accuracy(matrix)
    present = ~torch.isnan(recall)
    predicted = matrix.sum(dim=0)
    precision = torch.diagonal(matrix) / predicted.clamp(min=1)
    f1 = torch.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros(())
    )

    def mean(values: torch.Tensor) -> float:
        return float(values[present].mean()) if present.any() else math.nan

    return {
        f"{prefix}acc": float(torch.diagonal(matrix).sum() / total) if total else math.nan,
        f"{prefix}recall": mean(recall),
        f"{prefix}f1": mean(f1),
        f"{prefix}worst_acc": float(recall[present].min()) if present.any() else math.nan,
        f"{prefix}per_identity": [None if math.isnan(v) else round(v, 6) for v in recall.tolist()],
        f"{prefix}samples": int(total),
    }
