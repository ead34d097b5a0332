"""Each method's hyperparameters: one frozen dataclass per method, defined once, torch-free.

A method's `Params` (ikd/methods/) and its config section are the same class, so every symbol has
one default, here: `identitykd.tau`, `vanilla_kd.temperature`, `cfkd.temperature`, `mkd.margin`, …
(README "Settings" lists every key). Pieces two methods share — eqs. 12–13's identity-wise margins
and weights — are a small dataclass both sections inherit, so their keys stay flat
(`identitykd.lambda1`, `vanilla_kd.lambda1`). Values are the paper's (§3.4, §4.1) where it gives
them; DESIGN.md §5 says where it does not and what we chose.

Nothing here imports torch or a method module: `from ikd.config import Config` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ikd.errors import require

CONTRASTS = ("nce", "kl")


@dataclass(frozen=True)
class Section:
    """Base of the method sections: validation names the section (`section`) in its messages."""

    section: ClassVar[str] = ""
    # The version of the method's code (ikd/methods/): bump it when the loss changes, so runs of
    # the old code get another run hash and a resumed study does not reuse them (train/runs.py
    # `run_hash`). Here rather than on the method, so that reading run records needs no torch.
    version: ClassVar[int] = 1

    def __post_init__(self) -> None:
        """Subclasses check their own fields, then call this (cooperative, for the mixins)."""

    def _non_negative(self, *names: str) -> None:
        for name in names:
            require(getattr(self, name) >= 0, f"{self.section}.{name} must be ≥ 0")

    def _positive(self, *names: str) -> None:
        for name in names:
            require(getattr(self, name) > 0, f"{self.section}.{name} must be > 0")


@dataclass(frozen=True)
class WeightAveragingParams(Section):
    """CFA's fairness-aware weight averaging (FAWA; Wei et al. CVPR 2023), a switch of every method
    so a table can show each with and without it: an EMA of the student over the epochs whose
    worst-identity val accuracy reaches the threshold; evaluation uses it once an epoch entered.

    The decay is per kept epoch, so its default is tied to an epoch budget: CFA's 0.88 is for its
    200-epoch runs (the paper preset), where the average's horizon 1/(1 − 0.88) ≈ 8 epochs is 4 %
    of the run. Presets with fewer epochs set their own (`ikd.config.PRESETS` says why)."""

    fawa: bool = False  # evaluate (and deploy) the weight average instead of the live student
    fawa_decay: float = 0.88  # EMA decay per kept epoch (CFA's, for a 200-epoch budget)
    fawa_threshold: float = 0.2  # … keeping epochs whose worst-identity val accuracy ≥ this

    def __post_init__(self) -> None:
        require(0 <= self.fawa_decay < 1, f"{self.section}.fawa_decay must lie in [0, 1)")
        super().__post_init__()


@dataclass(frozen=True)
class IdentityWiseParams(Section):
    """Eqs. 12–14 (CFA's class-wise calibration): after the warm-up, identity i's previous-epoch
    training accuracy A_i sets its margin m_i = (λ1 + A_i)·m0 and KD weight β_i = (λ2 + A_i)·β0,
    and eq. 14 mixes CE with the hinge max(0, KL_i − m_i) at weight β_i.

    KL_i is on CFA's (TRADES') scale: class distributions at temperature 1 with no T² factor,
    weighed against CE by β (β0 = 6), the scale eq. 14 borrows β and the margin from
    (`kd_temperature` changes T, and multiplies by T²). m0 = 8/255 is CFA's L∞ attack budget,
    which the paper transplants as a KL margin: the hinge may rarely bite, so its activity is
    logged (`hinge_active`).
    Ablations: β0 = 0 leaves eq. 14 = the student's CE (no KD, CE kept at full weight), as does
    any epoch before `kd_start_epoch` (a warm-up for the KD target)."""

    lambda1: float = 0.5  # λ1: margin scaling (eq. 12)
    lambda2: float = 0.4  # λ2: regularisation scaling (eq. 13)
    margin0: float = 8 / 255  # m0, CFA's base margin
    beta0: float = 6.0  # β0, CFA's base regularisation weight; 0: no KD, CE alone
    warmup_epochs: int = 5  # m, β first set after this many epochs (0 and 1: after the first)
    kd_temperature: float = 1.0  # T of eq. 14's KL (CFA's scale: 1, so T² = 1)
    kd_start_epoch: int = 0  # eq. 14's KD part has weight 0 (β = 0) before this epoch (0-based)

    def __post_init__(self) -> None:
        self._non_negative(
            "lambda1", "lambda2", "margin0", "beta0", "warmup_epochs", "kd_start_epoch"
        )
        self._positive("kd_temperature")
        super().__post_init__()


@dataclass(frozen=True)
class BaselineParams(WeightAveragingParams):
    """Cross-entropy alone: only the weight-averaging switch (and `train.*`)."""

    section: ClassVar[str] = "baseline"
    version: ClassVar[int] = 1


@dataclass(frozen=True)
class VanillaKDParams(IdentityWiseParams, WeightAveragingParams):
    """Hinton et al. 2015; with `identity_wise`, eq. 14's margins and weights instead of α (Fig. 4)."""

    section: ClassVar[str] = "vanilla_kd"
    version: ClassVar[int] = 2
    alpha: float = 1.0  # α: weight of T²·KL (plain form)
    temperature: float = 4.0  # T of the plain form (Hinton's, with T²); eq. 14 uses kd_temperature
    identity_wise: bool = False  # eq. 14 with the teacher's logits as target (Fig. 4)

    def __post_init__(self) -> None:
        self._non_negative("alpha")
        self._positive("temperature")
        super().__post_init__()


@dataclass(frozen=True)
class CFKDParams(WeightAveragingParams):
    """Chen et al. CVPR 2021 (CCL, `yanbeic/CCL`)."""

    section: ClassVar[str] = "cfkd"
    version: ClassVar[int] = 2
    temperature: float = 0.1  # contrast temperature (CCL's image setting)

    def __post_init__(self) -> None:
        self._positive("temperature")
        super().__post_init__()


@dataclass(frozen=True)
class MKDParams(WeightAveragingParams):
    """After Jin et al. AAAI 2023: a reconstruction (no public code; DESIGN.md §5)."""

    section: ClassVar[str] = "mkd"
    version: ClassVar[int] = 2
    alpha: float = 1.0  # weight of the margin loss
    margin: float = 0.2  # cosine margin other identities' teacher embeddings must stay under

    def __post_init__(self) -> None:
        self._non_negative("alpha")
        require(-1 <= self.margin <= 1, "mkd.margin must lie in [-1, 1]")
        super().__post_init__()


@dataclass(frozen=True)
class IdentityKDParams(IdentityWiseParams, WeightAveragingParams):
    """Shan et al. 2024, eqs. 6–15, plus CFA's fairness-aware weight averaging (FAWA)."""

    section: ClassVar[str] = "identitykd"
    version: ClassVar[int] = 2
    gamma: float = 0.8  # γ: weight of L_st against L_sp in L_cs (eq. 11)
    tau: float = 5.0  # τ: contrast temperature as printed (DESIGN.md §5 says why it is tuned)
    contrast: str = "nce"  # L_cs as eqs. 9–10 (nce) or its KL variant (Table 5)
    delta1: float = 1.0  # δ1: weight of L_cs (eq. 15); 0: no L_cs
    delta2: float = 1.0  # δ2: weight of L_KD (eq. 15), which holds the student's CE: 0 drops CE too
    fawa: bool = True  # the paper's contribution 2: on for identitykd

    def __post_init__(self) -> None:
        require(0 <= self.gamma <= 1, "identitykd.gamma must lie in [0, 1]")
        self._positive("tau")
        self._non_negative("delta1", "delta2")
        require(
            self.contrast in CONTRASTS,
            f"identitykd.contrast={self.contrast!r}; choose from {list(CONTRASTS)}",
        )
        super().__post_init__()


# Method name → its Params: the one list of method names the config validates against
# (ikd.methods.METHODS holds the same names; a test checks it).
PARAMS: dict[str, type[Section]] = {
    "baseline": BaselineParams,
    "vanilla_kd": VanillaKDParams,
    "cfkd": CFKDParams,
    "mkd": MKDParams,
    "identitykd": IdentityKDParams,
}
