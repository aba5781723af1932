"""Adapters that drive external tools (ASTRA-sim, ...) from perfforge's own descriptions."""
