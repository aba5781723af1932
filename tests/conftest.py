"""Shared fixtures."""

from __future__ import annotations

import pytest

from perfforge.engines.analytical.calibration import load_calibration


@pytest.fixture(scope="session")
def cal():
    return load_calibration("default")
