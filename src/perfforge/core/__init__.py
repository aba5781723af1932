"""Core utilities shared by every part of perfforge: units, errors, registries, dtypes."""
