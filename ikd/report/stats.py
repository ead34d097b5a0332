"""The statistics of a report: mean ± std over seeds, the paired difference of two variants
with its 95 % t-interval, and walk-level accuracy from per-window predictions.

Torch-free (numpy, scipy, pandas), so golden tests can feed it hand-written records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

CONFIDENCE = 0.95


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (n − 1), n) of the finite values; NaN where undefined."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    mean = float(np.mean(finite)) if n else math.nan
    std = float(np.std(finite, ddof=1)) if n > 1 else math.nan
    return mean, std, n


@dataclass(frozen=True)
class Difference:
    """a − b over the seeds both have: the mean and its 95 % t-interval."""

    a: str
    b: str
    mean: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        if self.n < 2:
            return "too few paired seeds for an interval"
        if self.low <= 0 <= self.high:
            return "within seed noise"
        return f"{self.a} better" if self.low > 0 else f"{self.b} better"


def paired_difference(
    a: str, b: str, values_a: Mapping[int, float], values_b: Mapping[int, float]
) -> Difference:
    """The paired difference a − b over the seeds both variants ran with a finite value (seed s
    of a against seed s of b: the same seed gives both the same data order), with the two-sided 95 % interval of its
    mean from Student's t with n − 1 degrees of freedom."""
    seeds = sorted(
        s
        for s in set(values_a) & set(values_b)
        if math.isfinite(values_a[s]) and math.isfinite(values_b[s])
    )
    differences = np.array([values_a[s] - values_b[s] for s in seeds], dtype=float)
    n = len(differences)
    if n == 0:
        return Difference(a, b, math.nan, math.nan, math.nan, 0)
    mean = float(differences.mean())
    if n < 2:
        return Difference(a, b, mean, math.nan, math.nan, n)
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, n - 1) * differences.std(ddof=1) / math.sqrt(n))
    return Difference(a, b, mean, mean - half, mean + half, n)


def unpaired_difference(
    a: str, b: str, here: tuple[float, float, int], there: tuple[float, float, int]
) -> Difference:
    """a − b of two independent sets of seeds, each given as (mean, sample std, n): the
    difference of the means with Welch's two-sided 95 % t-interval (Welch–Satterthwaite degrees
    of freedom) — for runs that share seeds but not a teacher (another machine's regeneration),
    so seed s here is no pair for seed s there."""
    (mean_a, std_a, n_a), (mean_b, std_b, n_b) = here, there
    n = min(n_a, n_b)
    mean = mean_a - mean_b
    if n < 2 or not all(math.isfinite(v) for v in (mean_a, mean_b, std_a, std_b)):
        return Difference(a, b, mean, math.nan, math.nan, n)
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    if va + vb == 0:
        return Difference(a, b, mean, mean, mean, n)
    freedom = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, freedom) * math.sqrt(va + vb))
    return Difference(a, b, mean, mean - half, mean + half, n)


def walk_accuracy(predictions: pd.DataFrame) -> tuple[float, int]:
    """(accuracy, walks) with each walk's windows voted into one decision.

    `predictions` has a row per window: `identity`, `walk` (a walk is the pair), `logits`. A walk
    predicts the identity most of its windows predict; a tie goes to the tied identity with the
    larger summed log-probability over the walk's windows."""
    if predictions.empty:
        return math.nan, 0
    logits = np.stack(predictions["logits"].to_numpy()).astype(np.float64)
    log_probabilities = special.log_softmax(logits, axis=1)
    votes = np.eye(logits.shape[1])[logits.argmax(axis=1)]
    frame = pd.DataFrame({"identity": predictions["identity"], "walk": predictions["walk"]})
    correct = 0
    groups = frame.groupby(["identity", "walk"], sort=True).indices
    for (identity, _), rows in groups.items():
        count = votes[rows].sum(axis=0)
        tied = count == count.max()
        score = np.where(tied, log_probabilities[rows].sum(axis=0), -np.inf)
        correct += int(score.argmax() == identity)
    return correct / len(groups), len(groups)
