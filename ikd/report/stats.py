"""The statistics of a report: mean ± std over seeds, the paired difference of two variants
with its 95 % t-interval and a verdict in four words, the mean accuracy of the worst identities,
and walk-level accuracy from per-window predictions.

Torch-free (numpy, scipy, pandas), so golden tests can feed it hand-written records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# scipy is imported where it is used: scipy.stats alone takes ~0.6 s of CPU to import, in every
# process that reads run records (a final run's task, a trial) without computing an interval

CONFIDENCE = 0.95
# Two one-sided tests at 5 % each are the 1 − 2 × 5 % = 90 % interval lying inside ±margin.
EQUIVALENCE_CONFIDENCE = 0.90
# Points of test ACC within which two variants count as equivalent: the paper's claims are
# differences of 2–6 points, so "no difference larger than 1 point" is an answer to them.
EQUIVALENCE_MARGIN = 1.0
EQUIVALENT = f"equivalent within ±{EQUIVALENCE_MARGIN:g} point"
VERDICTS = (
    "Verdicts on a − b, paired over seeds (Student's t): *better* or *worse* when the 95 % "
    f"interval excludes 0; else *{EQUIVALENT}* when the 90 % interval lies inside "
    f"±{EQUIVALENCE_MARGIN:g} point (two one-sided tests at 5 %); else *undecided* (also with "
    'fewer than 2 paired seeds). "ahead in k of n" counts the seeds where a beat b, a tie as '
    "half."
)
WORST_PERCENT = 10  # Fig. 4's companion of the worst identity: the worst 10 % of identities


def pick_by_mean(scores: Mapping[str, Sequence[float]]) -> str:
    """Of tuning runs with their val ACC per seed, the one with the best mean (the later name
    on a tie): how a tuned variant's configuration is picked after its re-evaluation."""
    return max(scores, key=lambda run: (sum(scores[run]) / len(scores[run]), run))


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (n − 1), n) of the finite values; NaN where undefined."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    mean = float(np.mean(finite)) if n else math.nan
    std = float(np.std(finite, ddof=1)) if n > 1 else math.nan
    return mean, std, n


@dataclass(frozen=True)
class Difference:
    """a − b over the seeds both have (in the values' units: points of ACC in a report): the mean,
    its 95 % and 90 % t-intervals, and the share of those seeds where a beat b (a tie counts
    half)."""

    a: str
    b: str
    mean: float
    low: float
    high: float
    n: int
    low90: float = math.nan
    high90: float = math.nan
    wins: float = math.nan

    @property
    def verdict(self) -> str:
        """The word for a − b: better or worse when the 95 % interval excludes 0, else equivalent
        within ±1 point when the 90 % interval lies inside the margin (two one-sided tests), else
        undecided — also the word for fewer than 2 paired seeds (no interval)."""
        if self.n >= 2 and not self.low <= 0 <= self.high:
            return "better" if self.low > 0 else "worse"
        if self.n >= 2 and self.low90 > -EQUIVALENCE_MARGIN and self.high90 < EQUIVALENCE_MARGIN:
            return EQUIVALENT
        return "undecided"


def _t_interval(
    mean: float, error: float, freedom: float, confidence: float
) -> tuple[float, float]:
    from scipy import stats

    half = float(stats.t.ppf((1 + confidence) / 2, freedom) * error)
    return mean - half, mean + half


def paired_difference(
    a: str, b: str, values_a: Mapping[int, float], values_b: Mapping[int, float]
) -> Difference:
    """The paired difference a − b over the seeds both variants ran with a finite value (seed s
    of a against seed s of b: the same seed gives both the same data order), with the two-sided
    95 % and 90 % intervals of its mean from Student's t with n − 1 degrees of freedom."""
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
    wins = float(np.mean((np.sign(differences) + 1) / 2))  # a ahead: 1, a tie: 1/2, behind: 0
    if n < 2:
        return Difference(a, b, mean, math.nan, math.nan, n, wins=wins)
    error = float(differences.std(ddof=1)) / math.sqrt(n)
    low, high = _t_interval(mean, error, n - 1, CONFIDENCE)
    low90, high90 = _t_interval(mean, error, n - 1, EQUIVALENCE_CONFIDENCE)
    return Difference(a, b, mean, low, high, n, low90, high90, wins)


def unpaired_difference(
    a: str, b: str, here: tuple[float, float, int], there: tuple[float, float, int]
) -> Difference:
    """a − b of two independent sets of seeds, each given as (mean, sample std, n): the
    difference of the means with Welch's two-sided 95 % and 90 % t-intervals
    (Welch–Satterthwaite degrees of freedom) — for runs that share seeds but not a teacher
    (another machine's regeneration), so seed s here is no pair for seed s there."""
    (mean_a, std_a, n_a), (mean_b, std_b, n_b) = here, there
    n = min(n_a, n_b)
    mean = mean_a - mean_b
    if n < 2 or not all(math.isfinite(v) for v in (mean_a, mean_b, std_a, std_b)):
        return Difference(a, b, mean, math.nan, math.nan, n)
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    if va + vb == 0:
        return Difference(a, b, mean, mean, mean, n, mean, mean)
    freedom = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    error = math.sqrt(va + vb)
    low, high = _t_interval(mean, error, freedom, CONFIDENCE)
    low90, high90 = _t_interval(mean, error, freedom, EQUIVALENCE_CONFIDENCE)
    return Difference(a, b, mean, low, high, n, low90, high90)


def worst_count(identities: int, percent: int = WORST_PERCENT) -> int:
    """How many identities the worst `percent` % are: ⌈percent % of identities⌉, at least one
    (in integers: 10 % of 30 is 3, where 0.1 × 30 in floats rounds up to 4)."""
    return max(1, -(-identities * percent // 100))


def worst_accuracy(per_identity: Sequence[float | None], percent: int = WORST_PERCENT) -> float:
    """The mean accuracy of the worst `worst_count` identities among those with a test sample
    (None: none): a stabler measure of the hardest identities than the minimum alone, which
    over 36 identities of ~32 windows each moves 5–20 points from seed to seed."""
    present = sorted(v for v in per_identity if v is not None and math.isfinite(v))
    if not present:
        return math.nan
    return float(np.mean(present[: worst_count(len(present), percent)]))


def walk_accuracy(predictions: pd.DataFrame) -> tuple[float, int]:
    """(accuracy, walks) with each walk's windows voted into one decision.

    `predictions` has a row per window: `identity`, `walk` (a walk is the pair), `logits`. A walk
    predicts the identity most of its windows predict; a tie goes to the tied identity with the
    larger summed log-probability over the walk's windows."""
    if predictions.empty:
        return math.nan, 0
    logits = np.stack(predictions["logits"].to_numpy()).astype(np.float64)
    from scipy import special

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
