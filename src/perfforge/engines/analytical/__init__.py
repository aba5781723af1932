"""Analytical roofline engine with shape-aware efficiency."""

from perfforge.engines.analytical.engine import AnalyticalEngine

__all__ = ["AnalyticalEngine"]
