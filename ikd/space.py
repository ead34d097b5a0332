"""Tuning spaces: dotted config keys → ranges, checked against the config before a trial runs.

A study declares what it tunes as ``{"train.lr": LogUniform(1e-5, 1e-3), "identitykd.tau":
LogUniform(0.05, 5), "identitykd.kd_start_epoch": Integer(0, 3), …}``: the same dotted keys as
`ikd train` overrides, so a sampled configuration is an ordinary set of overrides. `check_space`
refuses an unknown key (naming the nearest), an empty or inverted range and a value the config
would refuse, each in one line. Torch-free and Ray-free; `optuna_space` converts for Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ikd.config import Config, apply_overrides, saved_value
from ikd.errors import ConfigError


@dataclass(frozen=True)
class Uniform:
    """A float in [low, high]."""

    low: float
    high: float

    def check(self, key: str) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ConfigError(f"{key}: empty or inverted range [{self.low:g}, {self.high:g}]")

    def ends(self) -> tuple[Any, ...]:
        return self.low, self.high


@dataclass(frozen=True)
class LogUniform(Uniform):
    """A float in [low, high], uniform in its logarithm (learning rates, temperatures)."""

    def check(self, key: str) -> None:
        super().check(key)
        if self.low <= 0:
            raise ConfigError(f"{key}: a log-uniform range needs low > 0, got {self.low:g}")


@dataclass(frozen=True)
class Integer:
    """An integer in [low, high], both included (epochs)."""

    low: int
    high: int

    def check(self, key: str) -> None:
        if not (isinstance(self.low, int) and isinstance(self.high, int)):
            raise ConfigError(f"{key}: integer range ends must be integers")
        if self.low > self.high:
            raise ConfigError(f"{key}: inverted range [{self.low}, {self.high}]")

    def ends(self) -> tuple[Any, ...]:
        return self.low, self.high


@dataclass(frozen=True)
class Choice:
    """One of a few values (booleans, names)."""

    values: tuple[Any, ...]

    def check(self, key: str) -> None:
        if not self.values:
            raise ConfigError(f"{key}: a choice needs at least one value")

    def ends(self) -> tuple[Any, ...]:
        return self.values


Range = Uniform | LogUniform | Integer | Choice


def check_space(space: Mapping[str, Range], base: Config) -> None:
    """Refuse an unknown key, an empty or inverted range, or an end the config refuses.

    Raises:
        ConfigError: one line naming the key (and the nearest valid key for a typo).
    """
    for key, values in space.items():
        if not isinstance(values, Range):
            raise ConfigError(
                f"{key}: {values!r} is not a range (Uniform, LogUniform, Integer, Choice)"
            )
        values.check(key)
        for end in values.ends():
            try:
                apply_overrides(base, {key: end})
            except ConfigError as error:
                raise ConfigError(f"tuning space: {error}") from None


def values_of(space: Mapping[str, Range], config: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config's values (nested, as `Config.to_dict` or a run's config.json) of the
    space's keys: the point a configuration is in the space (a key the config predates at its
    default, `saved_value`)."""
    return {key: saved_value(config, key) for key in space}


def inside(space: Mapping[str, Range], point: Mapping[str, Any]) -> bool:
    """Whether every value of `point` lies in its range of `space`."""
    for key, values in space.items():
        value = point[key]
        if isinstance(values, Choice):
            if value not in values.values:
                return False
        elif not values.low <= value <= values.high:
            return False
    return True


def optuna_space(space: Mapping[str, Range]) -> dict[str, Any]:
    """The space as Optuna distributions (what `OptunaSearch(space=…)` takes; they pickle)."""
    from optuna import distributions

    def convert(values: Range) -> Any:
        if isinstance(values, Choice):
            return distributions.CategoricalDistribution(list(values.values))
        if isinstance(values, Integer):
            return distributions.IntDistribution(values.low, values.high)
        return distributions.FloatDistribution(
            values.low, values.high, log=isinstance(values, LogUniform)
        )

    return {key: convert(values) for key, values in space.items()}
