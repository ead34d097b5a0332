"""Shared fixtures: tiny configs (tests use the smoke preset or smaller)."""

import pytest

from ikd.config import Config, load_config


@pytest.fixture
def smoke() -> Config:
    return load_config("smoke", warn=False)
